"""Keys, scopes, `viewer`, admin mutations and isolation between workspaces."""

from __future__ import annotations

import httpx

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


async def test_a_key_never_sees_or_touches_another_workspace(
    gql: GraphQL, make_tenant: MakeTenant, client: httpx.AsyncClient
) -> None:
    a, b = await make_tenant(), await make_tenant()
    response = await client.post("/events", headers=bearer(a.writer), json=SEED_EVENT)
    assert response.status_code == 201
    await a.service("payments")

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
