"""Live updates across real server processes: WebSocket protocols and auth, fan-out over
Redis and PostgreSQL LISTEN/NOTIFY, and a cut bus connection ending subscribers."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.servers import Server, held_call_body, postgres_database, run_server
from tests.test_changes import SEED_EVENT

pytestmark = pytest.mark.slow

SUBSCRIPTION = (
    "subscription($f: TimelineFilter) { timeline(filter: $f) { summary service cursor } }"
)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def pair(
    tmp: Path, database: str, broadcast: str, **settings: str
) -> Iterator[tuple[Server, Server, str]]:
    """Two processes on one database and bus; yields both and the admin key."""
    env = {"OPSGRAPH_DATABASE_URL": database, "OPSGRAPH_BROADCAST_URL": broadcast, **settings}
    with run_server(tmp, env) as first, run_server(tmp, env) as second:
        key = first.admin_key or second.admin_key
        if key is None:  # an earlier test bootstrapped this database: make a key
            created = subprocess.run(
                [
                    str(Path(first.process.args[0])),
                    "keys",
                    "create",
                    "--name",
                    "t",
                    "--scopes",
                    "admin",
                ],
                cwd=tmp,
                env={"OPSGRAPH_DATABASE_URL": database, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
            )
            key = created.stdout.strip()
        yield first, second, key


def post_change(server: Server, key: str, **fields: Any) -> None:
    response = httpx.post(
        f"{server.url}/events",
        json={**SEED_EVENT, **fields},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text


def client(server: Server, key: str) -> Client:
    transport = WebsocketsTransport(
        url=server.ws_url, init_payload={"Authorization": f"Bearer {key}"}
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


async def receive_one_across_processes(a: Server, b: Server, key: str) -> None:
    async with client(a, key) as session:
        request = GraphQLRequest(SUBSCRIPTION, variable_values={"f": {"services": ["fanout"]}})
        stream = session.subscribe(request)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.5)  # the subscription is registered on A
        await asyncio.to_thread(post_change, b, key, service="other")
        await asyncio.to_thread(post_change, b, key, service="fanout", name="from B")
        result = await asyncio.wait_for(first, timeout=10)
        assert result["timeline"]["summary"] == "from B"
        assert result["timeline"]["service"] == "fanout"


@pytest.mark.parametrize("broadcast", ["redis://127.0.0.1:6379/0", "postgres"])
async def test_a_subscriber_on_one_process_sees_posts_to_another(
    tmp_path: Path, database: str, broadcast: str
) -> None:
    url = database if broadcast == "postgres" else broadcast
    servers = pair(tmp_path, database, url)
    a, b, key = await asyncio.to_thread(next, servers)
    try:
        await receive_one_across_processes(a, b, key)
    finally:
        await asyncio.to_thread(lambda: next(servers, None))


async def test_a_cut_redis_connection_ends_the_subscription(tmp_path: Path, database: str) -> None:
    name = "og-" + secrets.token_hex(4)
    servers = pair(tmp_path, database, f"redis://127.0.0.1:6379/0?client_name={name}")
    a, b, key = await asyncio.to_thread(next, servers)
    try:
        async with client(a, key) as session:
            stream = session.subscribe(GraphQLRequest(SUBSCRIPTION))
            pending = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.5)
            listing = subprocess.run(
                ["redis-cli", "CLIENT", "LIST"], capture_output=True, text=True, check=True
            ).stdout
            ids = [
                field.split("=")[1]
                for line in listing.splitlines()
                if f"name={name} " in line + " "
                for field in line.split()
                if field.startswith("id=")
            ]
            assert ids, listing
            for client_id in ids:
                subprocess.run(
                    ["redis-cli", "CLIENT", "KILL", "ID", client_id],
                    check=True,
                    capture_output=True,
                )
            with pytest.raises(TransportQueryError) as raised:
                await asyncio.wait_for(pending, timeout=10)
            assert "reconnect" in str(raised.value)
        # The process reconnects to the bus: a new subscription works again.
        await asyncio.sleep(1.0)
        await receive_one_across_processes(a, b, key)
    finally:
        await asyncio.to_thread(lambda: next(servers, None))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("single"), {}) as server:
        yield server


async def test_websocket_auth_refuses_before_any_operation(single: Server) -> None:
    assert single.admin_key
    for protocol in ("graphql-transport-ws", "graphql-ws"):
        async with websockets.connect(single.ws_url, subprotocols=[protocol]) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"Authorization": "Bearer og_wrong"}}
                )
            )
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403, protocol

    # An operation sent before connection_init never runs.
    async with websockets.connect(single.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": "subscription { timeline { summary } }"},
                }
            )
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_subscription_over_the_token_cap_is_refused_with_its_reason(
    single: Server,
) -> None:
    key = single.admin_key
    huge = "subscription { timeline { " + "summary " * 6000 + "} }"
    async with websockets.connect(single.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": huge}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        assert "more than 5000 tokens" in closed.value.rcvd.reason


async def test_legacy_graphql_ws_protocol_delivers(single: Server) -> None:
    key = single.admin_key
    async with websockets.connect(single.ws_url, subprotocols=["graphql-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {"query": "subscription { timeline { summary } }"},
                }
            )
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(post_change, single, key, name="legacy hello")
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert message["type"] == "data"
        assert message["payload"]["data"]["timeline"]["summary"] == "legacy hello"


def test_a_client_flooding_a_websocket_is_cut_off(tmp_path: Path) -> None:
    env = {"OPSGRAPH_WS_MESSAGES_PER_SECOND": "1", "OPSGRAPH_WS_MESSAGE_BURST": "5"}
    with run_server(tmp_path, env) as server:
        init = {
            "type": "connection_init",
            "payload": {"Authorization": f"Bearer {server.admin_key}"},
        }

        async def flood(protocol: str, message: dict[str, Any]) -> tuple[int, int]:
            """Send `message` until the server closes; (answers received, close code)."""
            async with websockets.connect(server.ws_url, subprotocols=[protocol]) as ws:
                await ws.send(json.dumps(init))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                answers = 0
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    for _ in range(50):
                        await ws.send(json.dumps(message))
                        if protocol == "graphql-transport-ws":
                            await asyncio.wait_for(ws.recv(), timeout=5)  # the pong
                            answers += 1
                    await asyncio.wait_for(ws.recv(), timeout=5)
                assert closed.value.rcvd is not None
                return answers, closed.value.rcvd.code

        # Within the burst everything is answered; past it the connection is closed.
        answers, code = asyncio.run(flood("graphql-transport-ws", {"type": "ping"}))
        assert (answers, code) == (4, 1008)
        stop = {"id": "1", "type": "stop"}
        assert asyncio.run(flood("graphql-ws", stop))[1] == 1008


async def test_a_long_poll_learns_a_decision_taken_in_another_process(
    tmp_path: Path, database: str
) -> None:
    # Re-reads are off for the test: only the bus can wake the waiting agent in time.
    servers = pair(
        tmp_path, database, "redis://127.0.0.1:6379/0", OPSGRAPH_APPROVAL_WAIT_POLL_SECONDS="300"
    )
    a, b, key = await asyncio.to_thread(next, servers)
    try:
        tag = secrets.token_hex(4)
        await asyncio.to_thread(a.hold_tool, key, tag)
        call = held_call_body(tag)
        held = httpx.post(f"{a.url}/v1/events", json=call, headers={"X-API-Key": key}).json()
        assert held["toolCallStatus"] == "awaiting_approval", held
        started = time.monotonic()
        waiting = asyncio.ensure_future(
            asyncio.to_thread(
                httpx.get,
                f"{a.url}/v1/approvals/{held['approvalId']}?wait=30",
                headers={"X-API-Key": key},
                timeout=60,
            )
        )
        await asyncio.sleep(0.5)  # the agent is waiting on A
        decide = "mutation($id: ID!) { decideApproval(id: $id, decision: APPROVE) { status } }"
        await asyncio.to_thread(b.graphql, key, decide, id=held["approvalId"])
        answer = (await waiting).json()
        assert answer["status"] == "approved", answer
        # Woken by the decision, not by the end of its 30 s wait (then it would re-read).
        assert time.monotonic() - started < 20
    finally:
        await asyncio.to_thread(lambda: next(servers, None))


@pytest.mark.slow
async def test_two_processes_record_an_event_once_decide_once_and_expire_once(
    tmp_path: Path, database: str
) -> None:
    """What each process guarantees alone holds across two on one database: the same agent
    event posted to both at once is stored once and answered alike; two people deciding on
    different processes at once make one decision; an approval nobody decides is expired
    once, though both processes sweep."""
    servers = pair(
        tmp_path,
        database,
        "redis://127.0.0.1:6379/0",
        OPSGRAPH_APPROVAL_EXPIRY_SECONDS="4",
        OPSGRAPH_APPROVAL_SWEEP_SECONDS="0.2",
    )
    a, b, key = await asyncio.to_thread(next, servers)
    try:
        tag = secrets.token_hex(4)
        await asyncio.to_thread(a.hold_tool, key, tag)
        async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=30) as http:
            held = []
            for n in range(3):
                body = held_call_body(tag, n)
                answers = await asyncio.gather(
                    *(http.post(f"{server.url}/v1/events", json=body) for server in (a, b, a, b))
                )
                assert {answer.status_code for answer in answers} == {200}
                assert len({answer.text for answer in answers}) == 1, [a.text for a in answers]
                held.append(answers[0].json()["approvalId"])

            decide = (
                "mutation($id: ID!, $d: ApprovalDecision!) "
                '{ decideApproval(id: $id, decision: $d, comment: "at once") { status } }'
            )
            for approval_id in held[:2]:
                results = await asyncio.gather(
                    *(
                        http.post(
                            f"{server.url}/graphql",
                            json={"query": decide, "variables": {"id": approval_id, "d": d}},
                            headers={"Authorization": f"Bearer {key}"},
                        )
                        for server, d in ((a, "APPROVE"), (b, "REJECT"))
                    )
                )
                bodies = [result.json() for result in results]
                winners = [body for body in bodies if "errors" not in body]
                losers = [body for body in bodies if "errors" in body]
                assert len(winners) == 1 and len(losers) == 1, bodies
                assert losers[0]["errors"][0]["extensions"]["code"] == "CONFLICT"

            await asyncio.sleep(6)  # the third expires; both processes sweep meanwhile
        query = (
            "{ timeline(first: 200) { edges { node { kind subject { ...on Approval { id } } } } } }"
        )
        entries = [edge["node"] for edge in a.graphql(key, query)["timeline"]["edges"]]
        kinds = sorted(e["kind"] for e in entries if (e["subject"] or {}).get("id") in held)
        assert kinds == ["APPROVAL_DECIDED"] * 2 + ["APPROVAL_EXPIRED"] + ["APPROVAL_REQUESTED"] * 3
        runs = "{ runs(first: 50) { edges { node { runId toolCalls { toolCallId } } } } }"
        [run] = [
            e["node"]
            for e in a.graphql(key, runs)["runs"]["edges"]
            if e["node"]["runId"] == f"r_{tag}"
        ]
        assert len(run["toolCalls"]) == 3  # each event stored once
        status = "query($id: ID!) { approval(id: $id) { status } }"
        statuses = [
            a.graphql(key, status, id=approval_id)["approval"]["status"] for approval_id in held
        ]
        assert statuses[0] in ("APPROVED", "REJECTED") and statuses[1] in ("APPROVED", "REJECTED")
        assert statuses[2] == "EXPIRED"
    finally:
        await asyncio.to_thread(lambda: next(servers, None))
