"""Revoked keys stop working at once: the very next HTTP request is refused, and open
WebSocket subscriptions opened with the key are ended (a revocation note on the bus reaches
every process's hub), with no further operation allowed on such a connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
import websockets

from opsgraph.bus import Bus
from opsgraph.settings import Settings
from resolvers import auth
from resolvers.auth import Scope
from schema.context import Context
from tests.conftest import Tenant, memory_bus
from tests.servers import OPSGRAPH, Server, postgres_database, run_server
from tests.test_changes import SEED_EVENT, bearer
from tests.test_live import post

TIMELINE = "subscription { timeline { summary } }"
PENDING = "subscription { pendingApprovals { kind } }"
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) }"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=100) as live:
        yield live


async def new_key(tenant: Tenant, *scopes: Scope) -> tuple[str, str]:
    issued = await auth.create_api_key(
        workspace_id=tenant.workspace_id, name="live", scopes=frozenset(scopes)
    )
    return issued.key.id, issued.secret


def connection(settings: Settings, bus: Bus, principal: auth.Principal) -> Context:
    """A context as a WebSocket connection has it: the principal from connection_init."""
    return Context(
        settings=settings,
        publisher=bus,
        principal=principal,
        hub=bus.hub,
        connection_params={"Authorization": "Bearer (checked at connection_init)"},
        revocations=bus,
    )


async def test_revoking_ends_open_subscriptions_of_that_key_only(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    key_id, secret = await new_key(tenant, Scope.READ)
    doomed = connection(settings, bus, await auth.authenticate(secret=secret))
    other = connection(settings, bus, await auth.authenticate(secret=tenant.reader))
    timeline = await schema.subscribe(TIMELINE, context_value=doomed)
    pending = await schema.subscribe(PENDING, context_value=doomed)
    survivor = await schema.subscribe(TIMELINE, context_value=other)
    waiting = [asyncio.ensure_future(stream.__anext__()) for stream in (timeline, survivor)]
    await asyncio.sleep(0.05)

    admin = Context(settings=settings, publisher=bus, secret=tenant.admin, revocations=bus)
    result = await schema.execute(REVOKE, variable_values={"id": key_id}, context_value=admin)
    assert result.data == {"revokeApiKey": True}

    ended = await asyncio.wait_for(waiting[0], timeout=5)
    assert ended.errors[0].message == "The API key was revoked."
    assert ended.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(timeline.__anext__(), timeout=5)
    ended = await asyncio.wait_for(pending.__anext__(), timeout=5)
    assert ended.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    # Another key's subscription goes on.
    await post(tenant, bus, settings, "still live")
    delivered = await asyncio.wait_for(waiting[1], timeout=5)
    assert delivered.data == {"timeline": {"summary": "still live"}}
    await survivor.aclose()
    assert bus.hub.subscriber_count == 0


async def test_a_revoked_connection_runs_no_further_operation(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    key_id, secret = await new_key(tenant, Scope.READ)
    context = connection(settings, bus, await auth.authenticate(secret=secret))
    assert (await schema.execute("{ viewer { name } }", context_value=context)).errors is None
    await bus.key_revoked(key_id=key_id)
    result = await schema.execute("{ viewer { name } }", context_value=context)
    assert result.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    stream = await schema.subscribe(TIMELINE, context_value=context)
    refused = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert refused.errors[0].extensions == {"code": "UNAUTHENTICATED"}


async def test_a_revoked_agents_connection_cannot_ask_about_approvals(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    """An `events:write` key may follow its approval over a WebSocket, until it is revoked."""
    key_id, secret = await new_key(tenant, Scope.EVENTS_WRITE)
    context = connection(settings, bus, await auth.authenticate(secret=secret))
    query = '{ approval(id: "ap_unknown") { id } }'
    assert (await schema.execute(query, context_value=context)).errors is None  # null: unknown
    await bus.key_revoked(key_id=key_id)
    result = await schema.execute(query, context_value=context)
    assert result.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    stream = await schema.subscribe(
        'subscription { approval(id: "ap_unknown") { id } }', context_value=context
    )
    refused = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert refused.errors[0].extensions == {"code": "UNAUTHENTICATED"}


async def test_the_next_http_request_with_a_revoked_key_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key_id, secret = await new_key(tenant, Scope.EVENTS_WRITE, Scope.READ)
    assert (
        await client.post("/events", headers=bearer(secret), json=SEED_EVENT)
    ).status_code == 201
    assert await auth.revoke_api_key(workspace_id=tenant.workspace_id, key_id=key_id)
    refused = await client.post("/events", headers=bearer(secret), json=SEED_EVENT)
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "code": "UNAUTHENTICATED",
        "message": "The API key is unknown or revoked.",
    }
    graphql = await client.post(
        "/graphql", headers=bearer(secret), json={"query": "{ viewer { name } }"}
    )
    assert graphql.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    agent = await client.get("/v1/approvals/ap_x", headers={"X-API-Key": secret})
    assert agent.status_code == 401


# Across real processes: the key is revoked on B (GraphQL) or by the CLI, and the
# WebSocket on A ends.


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, str]]:
    workdir = tmp_path_factory.mktemp("revocation")
    with postgres_database() as database:
        env = {
            "OPSGRAPH_DATABASE_URL": database,
            "OPSGRAPH_BROADCAST_URL": "redis://127.0.0.1:6379/0",
        }
        with run_server(workdir, env) as first, run_server(workdir, env) as second:
            yield first, second, database


def reader_key(server: Server, admin: str, name: str) -> dict[str, Any]:
    """A new `read` key made on `server`: its secret (`key`) and `apiKey { id }`."""
    document = (
        "mutation($n: String!) { createApiKey(name: $n, scopes: [READ]) { key apiKey { id } } }"
    )
    created: dict[str, Any] = server.graphql(admin, document, n=name)["createApiKey"]
    return created


async def revoke_by_cli(workdir: Path, key_id: str, **env: str) -> None:
    """`opsgraph keys revoke` run in `workdir` with these variables only (and PATH)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [OPSGRAPH, "keys", "revoke", key_id],
        cwd=workdir,
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


async def open_connection(server: Server, key: str) -> Any:
    """A graphql-transport-ws connection, acknowledged for `key`."""
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await asyncio.wait_for(ws.recv(), timeout=5))["type"] == "connection_ack"
    return ws


async def open_subscription(server: Server, key: str) -> Any:
    ws = await open_connection(server, key)
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": TIMELINE}}))
    await asyncio.sleep(0.3)  # registered with the hub
    return ws


def revoked_error(message: dict[str, Any]) -> bool:
    """An operation's end for a revoked key (graphql-transport-ws `next` or `error`)."""
    payload = message.get("payload")
    errors = payload.get("errors") if isinstance(payload, dict) else payload
    return bool(errors) and errors[0]["extensions"] == {"code": "UNAUTHENTICATED"}


async def assert_ended_as_revoked(ws: Any) -> None:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert message["id"] == "1" and revoked_error(message), message
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert message == {"id": "1", "type": "complete"}
    # A new operation on the same connection is refused too.
    await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": {"query": TIMELINE}}))
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert message["id"] == "2" and revoked_error(message), message
    await ws.close()


@pytest.mark.slow
async def test_revoking_on_one_process_ends_a_websocket_on_another(
    servers: tuple[Server, Server, str],
) -> None:
    a, b, _ = servers
    admin = a.admin_key or b.admin_key
    assert admin is not None
    created = reader_key(b, admin, "dash")
    ws = await open_subscription(a, created["key"])
    revoked = b.graphql(admin, REVOKE, id=created["apiKey"]["id"])
    assert revoked == {"revokeApiKey": True}
    await assert_ended_as_revoked(ws)
    # A new connection with the key is refused at connection_init.
    async with websockets.connect(a.ws_url, subprotocols=["graphql-transport-ws"]) as again:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {created['key']}"}}
        await again.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(again.recv(), timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.slow
async def test_revoking_with_the_cli_ends_a_websocket_too(
    servers: tuple[Server, Server, str], tmp_path: Path
) -> None:
    a, b, database = servers
    admin = a.admin_key or b.admin_key
    assert admin is not None
    created = reader_key(a, admin, "cli")
    ws = await open_subscription(a, created["key"])
    await revoke_by_cli(
        tmp_path,
        created["apiKey"]["id"],
        OPSGRAPH_DATABASE_URL=database,
        OPSGRAPH_BROADCAST_URL="redis://127.0.0.1:6379/0",
    )
    await assert_ended_as_revoked(ws)


@pytest.mark.slow
async def test_the_cli_on_the_embedded_default_ends_a_websocket_by_the_recheck(
    tmp_path: Path,
) -> None:
    """On `memory://` the CLI's note reaches no server: the server's own check of the keys
    of its live subscriptions (`OPSGRAPH_KEY_RECHECK_SECONDS`) ends the subscription."""
    with run_server(tmp_path, {"OPSGRAPH_KEY_RECHECK_SECONDS": "0.5"}) as server:
        assert server.admin_key is not None
        created = reader_key(server, server.admin_key, "tab")
        ws = await open_subscription(server, created["key"])
        other = await open_subscription(server, server.admin_key)
        await revoke_by_cli(tmp_path, created["apiKey"]["id"])
        await assert_ended_as_revoked(ws)
        with pytest.raises(TimeoutError):  # another key's subscription goes on
            await asyncio.wait_for(other.recv(), timeout=1.5)
        await other.close()


@pytest.mark.slow
async def test_the_recheck_covers_a_websocket_with_no_subscription(tmp_path: Path) -> None:
    """A connection that only sends queries now and then is rechecked too: once the CLI
    revoked its key on `memory://`, its next operation is refused."""
    with run_server(tmp_path, {"OPSGRAPH_KEY_RECHECK_SECONDS": "0.5"}) as server:
        assert server.admin_key is not None
        created = reader_key(server, server.admin_key, "tab")
        ws = await open_connection(server, created["key"])

        async def viewer(operation_id: str) -> dict[str, Any]:
            query = {"query": "{ viewer { name } }"}
            await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": query}))
            return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))  # type: ignore[no-any-return]

        answered = await viewer("1")
        assert answered["payload"] == {"data": {"viewer": {"name": "tab"}}}, answered
        assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["type"] == "complete"
        await revoke_by_cli(tmp_path, created["apiKey"]["id"])
        await asyncio.sleep(1.5)  # three rechecks
        refused = await viewer("2")
        assert refused["id"] == "2" and revoked_error(refused), refused
        await ws.close()
