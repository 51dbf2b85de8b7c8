"""Secrets: API keys and routing keys never appear in the server's logs, in error messages or
in the database (only their SHA-256 and a short visible prefix are kept), and presented keys
are checked by hash lookup plus a constant-time comparison."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from tortoise import Tortoise

from models.workspace import ApiKey, Service
from resolvers import auth
from resolvers.auth import Scope
from tests.conftest import GraphQL, Tenant
from tests.servers import Server, run_server
from tests.test_changes import SEED_EVENT
from tests.test_fuzz import drain_output

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-25T10:00:00Z"


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def fake_key() -> str:
    return "og_" + secrets.token_urlsafe(32)


def fake_routing_key() -> str:
    return "R" + secrets.token_hex(16)[1:]


def trigger(routing_key: str) -> dict[str, Any]:
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": "disk",
        "payload": {"summary": "Disk full", "source": "host-1", "severity": "critical"},
    }


def agent_event() -> dict[str, Any]:
    return {
        "eventId": "evt_" + secrets.token_hex(4),
        "runId": "run_1",
        "agentId": "agent",
        "timestamp": NOW,
        "eventType": "run.started",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A real server on SQLite with its access log on; its output is kept in full."""
    workdir = tmp_path_factory.mktemp("secrets")
    with run_server(workdir, {"OPSGRAPH_ACCESS_LOG": "true"}) as running:
        drain_output(running)
        yield running, workdir


def gql_http(server: Server, key: str, query: str, **variables: Any) -> Any:
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
    )
    return response.json()


def exercise(server: Server, writer: str, reader: str, routing_key: str) -> list[httpx.Response]:
    """Valid and invalid keys on every endpoint; returns every response."""
    url = server.url
    wrong_key, wrong_routing = fake_key(), fake_routing_key()
    responses = []
    with httpx.Client(base_url=url) as http:
        for key in (writer, wrong_key, reader):
            bearer = {"Authorization": f"Bearer {key}"}
            responses += [
                http.post("/events", json={**SEED_EVENT, "timestamp": NOW}, headers=bearer),
                http.post("/events", json={"name": 1}, headers=bearer),
                http.post("/api/events", json=trigger(routing_key), headers=bearer),
                http.post("/api/events", json=trigger(wrong_routing), headers=bearer),
                http.post("/v1/events", json=agent_event(), headers={"X-API-Key": key}),
                http.get("/v1/approvals/ap_none?wait=0", headers={"X-API-Key": key}),
                http.post("/graphql", json={"query": "{ viewer { name } }"}, headers=bearer),
                http.post(
                    "/events",
                    json=SEED_EVENT,
                    headers={"Authorization": f"Token token={key}"},
                ),
            ]
        for routing in (routing_key, wrong_routing):
            responses += [
                http.post("/v2/enqueue", json=trigger(routing)),
                http.post("/v2/enqueue", json={**trigger(routing), "event_action": "nope"}),
                http.post(
                    "/v2/change/enqueue",
                    json={"routing_key": routing, "payload": {"summary": "deploy"}},
                ),
            ]
        # A routing key written inline in a GraphQL document, failing validation.
        inline = (
            'mutation { sendIncidentEvent(input: {routingKey: "%s", eventAction: TRIGGER, '
            'dedupKey: "x", payload: {summary: "", source: "s", severity: CRITICAL}}) '
            "{ __typename } }"
        )
        for routing in (routing_key, wrong_routing):
            responses.append(
                http.post(
                    "/graphql",
                    json={"query": inline % routing},
                    headers={"Authorization": f"Bearer {writer}"},
                )
            )
    return responses


async def websocket_attempts(server: Server, keys: list[str]) -> None:
    for key in keys:
        async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
            await ws.send(json.dumps(init))
            try:
                await asyncio.wait_for(ws.recv(), timeout=5)
            except websockets.ConnectionClosed:
                pass


@pytest.mark.slow
def test_keys_never_reach_the_logs_errors_or_the_database(
    server: tuple[Server, Path],
) -> None:
    running, workdir = server
    admin = running.admin_key
    assert admin is not None
    create = 'mutation($s: [Scope!]!) { createApiKey(name: "k", scopes: $s) { key apiKey { id } } }'
    writer_key = gql_http(running, admin, create, s=["EVENTS_WRITE"])["data"]["createApiKey"]
    writer = writer_key["key"]
    reader = gql_http(running, admin, create, s=["READ"])["data"]["createApiKey"]["key"]
    service = gql_http(running, admin, 'mutation { createService(name: "db") { routingKey } }')
    routing_key = service["data"]["createService"]["routingKey"]

    responses = exercise(running, writer, reader, routing_key)
    revoked = gql_http(
        running,
        admin,
        "mutation($id: ID!) { revokeApiKey(id: $id) }",
        id=writer_key["apiKey"]["id"],
    )
    assert revoked["data"] == {"revokeApiKey": True}
    responses += exercise(running, writer, reader, routing_key)
    asyncio.run(websocket_attempts(running, [reader, writer, fake_key()]))

    secrets_used = [writer, reader, routing_key]
    statuses = {response.status_code for response in responses}
    assert {200, 201, 202, 400, 401, 403} <= statuses  # valid and refused requests both ran
    for response in responses:
        for secret in secrets_used + [admin]:
            assert secret not in response.text, (response.request.url, response.text)
        assert "Traceback" not in response.text

    running.process.terminate()
    running.process.wait(timeout=10)
    output = "".join(running.output)
    assert "POST /events" in output and "POST /v2/enqueue" in output  # the log was on
    assert output.count(admin) == 1  # printed once, on the first start, by design
    for secret in secrets_used:
        assert secret not in output
        assert secret[10:] not in output  # not even past the visible prefix

    # The database holds hashes and prefixes, never a key.
    stored = b"".join(path.read_bytes() for path in workdir.glob("opsgraph.sqlite3*"))
    for secret in secrets_used + [admin]:
        assert secret.encode() not in stored
        assert secret[10:].encode() not in stored
    assert sha256(writer).encode() in stored and sha256(routing_key).encode() in stored


async def test_keys_and_routing_keys_are_stored_as_hashes(tenant: Tenant) -> None:
    issued = await auth.create_api_key(
        workspace_id=tenant.workspace_id, name="ci", scopes=frozenset({Scope.READ})
    )
    row = await ApiKey.get(id=issued.key.id)
    assert row.key_hash == sha256(issued.secret) and len(row.key_hash) == 64
    assert row.prefix == issued.secret[:10]
    routing_key = await tenant.service("hashed")
    service = await Service.get(workspace_id=tenant.workspace_id, name="hashed")
    assert service.routing_key_hash == sha256(routing_key)
    assert service.routing_key_prefix == routing_key[:10]
    # No column of any row in any table holds a key.
    for model in Tortoise.apps["models"].values():
        for values in await model.all().values():
            text = json.dumps(values, default=str)
            assert issued.secret[10:] not in text and routing_key[10:] not in text, model


async def test_error_messages_never_echo_a_key(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    wrong, wrong_routing = fake_key(), fake_routing_key()
    responses = [
        await client.post("/events", json=SEED_EVENT, headers={"Authorization": f"Bearer {wrong}"}),
        await client.post("/v1/events", json=agent_event(), headers={"X-API-Key": wrong}),
        await client.post("/v2/enqueue", json=trigger(wrong_routing)),
        await client.post(
            "/api/events",
            json=trigger(wrong_routing),
            headers={"Authorization": f"Bearer {tenant.writer}"},
        ),
        await client.post(
            "/graphql",
            json={"query": "{ viewer { name } }"},
            headers={"Authorization": f"Bearer {wrong}"},
        ),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500 or response.json()["errors"]
        assert wrong not in response.text and wrong_routing not in response.text
        assert tenant.writer not in response.text
    send = """mutation($input: IncidentEventInput!) { sendIncidentEvent(input: $input) {
      __typename ... on InvalidRoutingKey { message } } }"""
    variables = {"eventAction": "TRIGGER", "dedupKey": "x", "routingKey": wrong_routing}
    variables["payload"] = {"summary": "s", "source": "s", "severity": "CRITICAL"}
    result = await gql(send, tenant.writer, input=variables)
    assert result.errors is None
    assert wrong_routing not in json.dumps(result.data)


def test_presented_keys_are_compared_in_constant_time() -> None:
    """Keys are found by their SHA-256 (an index lookup that reveals nothing about a stored
    key), then compared with hmac.compare_digest; no `==` ever touches a key or a hash."""
    source = (ROOT / "resolvers" / "auth.py").read_text()
    tree = ast.parse(source)
    functions = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    calls = [
        ast.unparse(node.func)
        for node in ast.walk(functions["authenticate"])
        if isinstance(node, ast.Call)
    ]
    assert "hmac.compare_digest" in calls
    sensitive = ("secret", "digest", "hash", "key")
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            assert not any(word in name for name in names for word in sensitive), ast.unparse(node)
