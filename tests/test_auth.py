"""Keys, scopes, `viewer`, admin mutations and isolation between workspaces."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from resolvers import auth
from tests.conftest import GraphQL, MakeTenant, Tenant
from tests.test_changes import SEED_EVENT, bearer, timeline_of

VIEWER = "{ viewer { name scopes workspace { id } } }"


async def test_viewer_answers_with_the_keys_workspace_name_and_scopes(
    gql: GraphQL, tenant: Tenant
) -> None:
    result = await gql(VIEWER, tenant.reader)
    assert result.data["viewer"] == {
        "name": "dashboard",
        "scopes": ["READ"],
        "workspace": {"id": tenant.workspace_id},
    }
    result = await gql(VIEWER, None)
    assert result.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    result = await gql(VIEWER, tenant.writer)
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}
    assert result.errors[0].message == "This API key lacks the 'read' scope."


@pytest.mark.settings(page_size_max=20, page_size_default=10)
async def test_viewer_tells_the_pages_this_server_takes(gql: GraphQL, tenant: Tenant) -> None:
    """The web UI keeps its lists within them (`OPSGRAPH_PAGE_SIZE_MAX` may be below the
    200 it asks for a run's calls)."""
    result = await gql("{ viewer { limits { pageSizeMax pageSizeDefault } } }", tenant.reader)
    assert result.data["viewer"]["limits"] == {"pageSizeMax": 20, "pageSizeDefault": 10}


async def test_admin_creates_and_revokes_keys(
    gql: GraphQL, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    create = """mutation { createApiKey(name: "deployer", scopes: [EVENTS_WRITE]) {
        key apiKey { id name prefix scopes } } }"""
    result = await gql(create, tenant.admin)
    created = result.data["createApiKey"]
    assert created["key"].startswith(created["apiKey"]["prefix"])
    assert created["apiKey"]["scopes"] == ["EVENTS_WRITE"]

    response = await client.post("/events", headers=bearer(created["key"]), json=SEED_EVENT)
    assert response.status_code == 201

    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) }"
    result = await gql(revoke, tenant.admin, id=created["apiKey"]["id"])
    assert result.data == {"revokeApiKey": True}
    response = await client.post("/events", headers=bearer(created["key"]), json=SEED_EVENT)
    assert response.status_code == 401

    result = await gql(create, tenant.reader)
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}

    # A key named as a routing key's actor would pose as that service on the timeline.
    posing = 'mutation { createApiKey(name: " service:api", scopes: [EVENTS_WRITE]) { key } }'
    [error] = (await gql(posing, tenant.admin)).errors
    assert error.extensions == {"code": "BAD_USER_INPUT"}
    assert error.message.startswith("name must not start with 'service:'")


async def test_services_and_their_routing_keys(gql: GraphQL, tenant: Tenant) -> None:
    create = 'mutation { createService(name: "checkout") { id name routingKey routingKeyPrefix } }'
    result = await gql(create, tenant.admin)
    service = result.data["createService"]
    assert len(service["routingKey"]) == 32
    assert service["routingKey"].startswith(service["routingKeyPrefix"])

    result = await gql(create, tenant.admin)
    assert result.errors[0].extensions == {"code": "CONFLICT"}

    result = await gql("{ services { name routingKey } }", tenant.reader)
    assert result.data["services"] == [{"name": "checkout", "routingKey": None}]


async def test_a_leaked_routing_key_is_replaced_and_refused_from_then_on(
    gql: GraphQL, tenant: Tenant, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A routing key is the only credential of `/v2/enqueue`: one leaked was valid for good,
    with no way to replace it."""
    caplog.set_level(logging.INFO, logger="opsgraph.audit")
    old = await tenant.service("checkout")
    [service] = (await gql("{ services { id } }", tenant.admin)).data["services"]
    rotate = "mutation($n: ID!) { rotateRoutingKey(id: $n) { name routingKey routingKeyPrefix } }"
    rotated = (await gql(rotate, tenant.admin, n=service["id"])).data["rotateRoutingKey"]
    assert rotated["name"] == "checkout" and len(rotated["routingKey"]) == 32
    new = rotated["routingKey"]
    assert new != old and new.startswith(rotated["routingKeyPrefix"])

    def trigger(routing_key: str) -> dict[str, Any]:
        payload = {"summary": "Disk full", "source": "db-1", "severity": "error"}
        return {"routing_key": routing_key, "event_action": "trigger", "payload": payload}

    refused = await client.post("/v2/enqueue", json=trigger(old))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "INVALID_ROUTING_KEY"
    assert (await client.post("/v2/enqueue", json=trigger(new))).status_code == 202
    assert (await gql(rotate, tenant.admin, n="svc_nowhere")).data == {"rotateRoutingKey": None}
    forbidden = await gql(rotate, tenant.writer, n=service["id"])
    assert forbidden.errors[0].extensions == {"code": "FORBIDDEN"}
    [line] = [r.getMessage() for r in caplog.records if r.name == "opsgraph.audit"]
    assert "rotated the routing key of service 'checkout'" in line


async def test_a_key_never_sees_or_touches_another_workspace(
    gql: GraphQL, make_tenant: MakeTenant, client: httpx.AsyncClient
) -> None:
    a, b = await make_tenant(), await make_tenant()
    response = await client.post("/events", headers=bearer(a.writer), json=SEED_EVENT)
    assert response.status_code == 201
    payments_key = await a.service("payments")

    assert len(await timeline_of(gql, a.reader)) == 1
    assert await timeline_of(gql, b.reader) == []
    result = await gql("{ services { name } }", b.reader)
    assert result.data["services"] == []

    # B's admin cannot revoke A's key, even knowing its id.
    keys = await gql("{ apiKeys { id name } }", a.admin)
    a_writer = next(key["id"] for key in keys.data["apiKeys"] if key["name"] == "ci-pipeline")
    result = await gql("mutation($id: ID!) { revokeApiKey(id: $id) }", b.admin, id=a_writer)
    assert result.data == {"revokeApiKey": False}
    response = await client.post("/events", headers=bearer(a.writer), json=SEED_EVENT)
    assert response.status_code == 201
    # Nor rotate A's routing key: A's stays, and B learns none.
    [payments] = (await gql("{ services { id } }", a.reader)).data["services"]
    rotate = "mutation($id: ID!) { rotateRoutingKey(id: $id) { routingKey } }"
    assert (await gql(rotate, b.admin, id=payments["id"])).data == {"rotateRoutingKey": None}
    change = {"routing_key": payments_key, "payload": {"summary": "s", "source": "x"}}
    assert (await client.post("/v2/change/enqueue", json=change)).status_code == 202


async def test_graphql_over_http_takes_the_bearer_header(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {tenant.reader}"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["name"] == "dashboard"

    response = await client.post("/graphql", json={"query": VIEWER})
    assert response.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}

    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()


async def test_a_workspace_name_is_taken_once_even_by_two_at_once(
    tenant: Tenant, database_url: str
) -> None:
    name = "team-" + secrets.token_hex(3)
    made = await asyncio.gather(
        *(auth.open_workspace(name=name) for _ in range(3)), return_exceptions=True
    )
    assert sorted(type(result).__name__ for result in made) == [
        "DuplicateName",
        "DuplicateName",
        "IssuedKey",
    ], made
    if not database_url.startswith("postgres"):
        return  # SQLite runs one transaction at a time
    # Another process creating the same name, its transaction not yet committed: this one
    # waits for it, then finds the name taken (each read none, and both inserted).
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", auth.NAME_LOCK)
            await other.execute(
                "INSERT INTO workspace (id, name, timeline_seq, policy_version, created_at)"
                " VALUES ($1, $2, 0, 0, now())",
                "ws_other_" + secrets.token_hex(4),
                "late-" + name,
            )
            creating = asyncio.ensure_future(auth.open_workspace(name="late-" + name))
            await asyncio.sleep(0.3)
            assert not creating.done()
        with pytest.raises(auth.DuplicateName):
            await asyncio.wait_for(creating, timeout=10)
    finally:
        await other.close()


@pytest.mark.parametrize(
    ("method", "path", "challenge"),
    [
        ("POST", "/events", 'Bearer realm="opsgraph"'),
        ("POST", "/api/events", 'Bearer realm="opsgraph"'),
        ("POST", "/v1/events", 'ApiKey realm="opsgraph", header="X-API-Key"'),
        (
            "GET",
            "/v1/approvals/ap_1",
            'ApiKey realm="opsgraph", header="X-API-Key", Bearer realm="opsgraph"',
        ),
    ],
)
async def test_a_401_says_how_to_present_a_key(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, challenge: str
) -> None:
    """Every 401 names the way its endpoint takes a key (`WWW-Authenticate`, which HTTP
    requires of a 401); a 403 (a key without the scope) does not."""
    for headers in ({}, {"Authorization": "Bearer og_nope", "X-API-Key": "og_nope"}):
        response = await client.request(method, path, headers=headers, json=SEED_EVENT)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == challenge
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    if method == "POST":
        key = {"Authorization": f"Bearer {tenant.reader}", "X-API-Key": tenant.reader}
        forbidden = await client.post(path, headers=key, json=SEED_EVENT)
        assert forbidden.status_code == 403 and "www-authenticate" not in forbidden.headers


async def test_a_keyless_graphql_body_too_big_to_read_says_how_to_present_a_key(
    client: httpx.AsyncClient,
) -> None:
    big = {"query": "{ __typename }", "variables": {"pad": "x" * 20_000}}
    response = await client.post("/graphql", json=big)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="opsgraph"'


async def test_each_admin_change_is_logged_with_the_key_that_made_it(
    gql: GraphQL, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """Who issued a key, revoked one, made a service or changed a policy was recorded
    nowhere: each is now one line of the `opsgraph.audit` logger naming the key."""
    caplog.set_level(logging.INFO, logger="opsgraph.audit")
    created = await gql(
        'mutation { createApiKey(name: "sneaky", scopes: [ADMIN]) { apiKey { id } } }',
        tenant.admin,
    )
    key_id = created.data["createApiKey"]["apiKey"]["id"]
    await gql("mutation($id: ID!) { revokeApiKey(id: $id) }", tenant.admin, id=key_id)
    service = await gql('mutation { createService(name: "shadow") { id } }', tenant.admin)
    policy = await gql(
        'mutation { createPolicy(input: {name: "Freeze", action: BLOCK}) { id } }', tenant.admin
    )
    policy_id = policy.data["createPolicy"]["id"]
    update = """mutation($id: ID!) {
      updatePolicy(id: $id, input: {name: "Freeze", action: ALLOW}) { id } }"""
    await gql(update, tenant.admin, id=policy_id)
    await gql("mutation($id: ID!) { deletePolicy(id: $id) }", tenant.admin, id=policy_id)
    await gql("mutation($id: ID!) { deletePolicy(id: $id) }", tenant.admin, id=policy_id)  # gone
    lines = [r.getMessage() for r in caplog.records if r.name == "opsgraph.audit"]
    assert all(line.startswith("'admin' (key key_") for line in lines), lines
    assert all(line.endswith(f", in workspace {tenant.workspace_id}") for line in lines)
    assert [line.split(") ", 1)[1].rsplit(", in workspace", 1)[0] for line in lines] == [
        f"created key 'sneaky' ({key_id}) with admin",
        f"revoked key '{key_id}'",
        f"created service 'shadow' ({service.data['createService']['id']})",
        f"created policy 'Freeze' ({policy_id})",
        f"updated policy 'Freeze' ({policy_id}) to version 2",
        f"deleted policy 'Freeze' ({policy_id})",
    ]
