"""`opsgraph.restlane`: the REST posts uvicorn's protocol answers without its ASGI cycle.

Over real sockets to a real uvicorn server: the lane answers exactly as the usual path
does (the same request with a chunked body, which the lane leaves to uvicorn), on kept-alive
and pipelined connections mixed with other requests, and everything it does not take
(large, chunked or `Expect: 100-continue` bodies, other paths) still works."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from models.change import Change
from opsgraph.app import create_app
from opsgraph.cli import websocket_options
from opsgraph.restlane import LANE_MAX_BODY, RestHttpProtocol, RestLane
from opsgraph.settings import Settings
from tests.agent_helpers import tool_called
from tests.conftest import Tenant
from tests.servers import free_port, served

EVENT = {
    "name": "Deploy api",
    "timestamp": "2026-03-04T14:25:00Z",
    "category": "TECHNICAL",
    "source": "ci-cd",
    "service": "api",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    path: str,
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
    version: str = "1.1",
    method: str = "POST",
) -> bytes:
    """One HTTP request's bytes: the body declared by Content-Length, or sent chunked."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"{method} {path} HTTP/{version}", "Host: test", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        half = len(data) // 2
        payload = b"".join(
            f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (data[:half], data[half:]) if p
        )
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(data)}")
        payload = data
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One response off the connection (Content-Length or chunked body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")[:-2]
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"header {name} twice"
        headers[name.lower()] = value.strip()
    status = int(status_line.split()[1])
    if status == 100:
        return await read_reply(reader)
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        assert headers.get("transfer-encoding") == "chunked", headers
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readexactly(2)
        body = b"".join(parts)
    return Reply(status, headers, body)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *requests: bytes) -> list[Reply]:
        """Write the requests at once (pipelined if several); their replies, in order."""
        self.writer.write(b"".join(requests))
        await self.writer.drain()
        return [await asyncio.wait_for(read_reply(self.reader), 10) for _ in requests]

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the lane answered, in order."""
    calls: list[str] = []
    answer = RestHttpProtocol._answer

    async def spy(self: RestHttpProtocol, cycle: Any, lane: RestLane) -> None:
        calls.append(cycle.scope["path"])
        await answer(self, cycle, lane)

    monkeypatch.setattr(RestHttpProtocol, "_answer", spy)
    return calls


@pytest.fixture
async def port(app: Starlette) -> AsyncIterator[int]:
    async with served(app, http=RestHttpProtocol) as number:
        yield number


@pytest.fixture
async def connect(port: int) -> AsyncIterator[Any]:
    opened: list[Connection] = []

    async def open_one() -> Connection:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        connection.writer.close()


GENERATED = {"id", "entryId", "incident_key"}  # ids each stored event gets anew


def same_shape(lane: Any, usual: Any) -> bool:
    """The same JSON but for generated ids (a string where the other has one)."""
    if isinstance(lane, dict) and isinstance(usual, dict):
        return lane.keys() == usual.keys() and all(
            isinstance(lane[k], str) and isinstance(usual[k], str)
            if k in GENERATED
            else same_shape(lane[k], usual[k])
            for k in lane
        )
    if isinstance(lane, list) and isinstance(usual, list):
        return len(lane) == len(usual) and all(map(same_shape, lane, usual))
    return bool(lane == usual)


def cases(
    tenant: Tenant, routing_key: str
) -> Iterator[tuple[str, dict[str, Any] | bytes, dict[str, str]]]:
    writer = {"Authorization": f"Bearer {tenant.writer}"}
    yield "/events", EVENT, writer
    yield "/events", EVENT, {}  # 401
    yield "/events", EVENT, {"Authorization": f"Bearer {tenant.reader}"}  # 403
    yield "/events", b'{"name": ', writer  # malformed JSON
    yield "/events", {"timestamp": "yesterday"}, writer  # field errors
    yield "/events", b"[1]", writer  # not an object
    yield "/v2/change/enqueue", {"routing_key": routing_key, "payload": {"summary": "x"}}, {}
    yield "/v2/enqueue", {"routing_key": "nope", "event_action": "trigger"}, {}  # PD 400
    payload = {"summary": "Disk full", "source": "db-1", "severity": "critical"}
    trigger = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": "d1",
               "payload": payload}  # fmt: skip
    yield "/v2/enqueue", trigger, {}
    yield "/api/events", {**trigger, "dedup_key": "d2"}, writer
    yield "/v1/events", tool_called("e1", "tc1"), {"X-API-Key": tenant.writer}
    yield "/v1/events", tool_called("e1", "tc1"), {"X-API-Key": tenant.writer}  # a replay


async def test_the_lane_answers_as_uvicorn_cycle_does(
    tenant: Tenant, connect: Any, lane_calls: list[str]
) -> None:
    """Each request twice: declared by Content-Length (the lane) and chunked (uvicorn's
    cycle and Starlette): the same status, body (but for new ids) and headers."""
    connection = await connect()
    routing_key = await tenant.service("db")
    for path, body, headers in cases(tenant, routing_key):
        (lane,) = await connection.send(request(path, body, headers))
        if path == "/v1/events":  # a second tool call, not a replay of the first
            body = {**body, "eventId": body["eventId"] + "-chunked"}  # type: ignore[dict-item]
            body["metadata"] = {**body["metadata"], "toolCallId": "tc-chunked"}
        (usual,) = await connection.send(request(path, body, headers, chunked=True))
        assert lane.status == usual.status, (path, lane.body, usual.body)
        usual_json = json.loads(usual.body.replace(b"-chunked", b""))  # the second call's ids
        assert same_shape(lane.json(), usual_json), (path, lane.body, usual.body)
        assert lane.headers.keys() == usual.headers.keys(), (path, lane.headers, usual.headers)
        for name in ("content-type", "retry-after", "server"):
            assert lane.headers.get(name) == usual.headers.get(name)
    assert len(lane_calls) == 12  # every first one went through the lane, no chunked one did
    assert await Change.filter(workspace_id=tenant.workspace_id).count() == 4  # 2 + 2 enqueued


async def test_kept_alive_and_pipelined_beside_other_requests(
    tenant: Tenant, connect: Any, lane_calls: list[str]
) -> None:
    key = {"Authorization": f"Bearer {tenant.writer}"}
    health = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    connection = await connect()
    # One at a time on one connection, then all written at once (pipelined).
    alone = [
        *await connection.send(request("/events", {**EVENT, "name": "a"}, key)),
        *await connection.send(health),
        *await connection.send(request("/events", {**EVENT, "name": "b"}, key, chunked=True)),
        *await connection.send(request("/events", {**EVENT, "name": "c"}, key)),
    ]
    pipelined = await connection.send(
        request("/events", {**EVENT, "name": "d"}, key),
        health,
        request("/events", {**EVENT, "name": "e"}, key, chunked=True),
        request("/events", {**EVENT, "name": "f"}, key),
        request("/events", {**EVENT, "name": "g"}, key),
    )
    assert [reply.status for reply in alone + pipelined] == [
        201,
        200,
        201,
        201,
        201,
        200,
        201,
        201,
        201,
    ]
    # The lane takes a request when nothing before it on the connection is unanswered: of
    # the pipelined ones, the first; uvicorn queues the rest and answers them in turn.
    assert lane_calls == ["/events"] * 3
    names = await Change.filter(workspace_id=tenant.workspace_id).values_list("name", flat=True)
    assert sorted(names) == list("abcdefg")
    ids = [reply.json()["id"] for reply in alone + pipelined if reply.status == 201]
    assert len(set(ids)) == 7
    # Each answer is its own request's: the ids in order of the names.
    stored = dict(await Change.filter(workspace_id=tenant.workspace_id).values_list("id", "name"))
    assert [stored[i] for i in ids] == list("abcdefg")


@pytest.mark.parametrize(("version", "headers"), [("1.0", {}), ("1.1", {"Connection": "close"})])
async def test_a_connection_the_client_closes_is_closed_after_the_answer(
    tenant: Tenant, connect: Any, lane_calls: list[str], version: str, headers: dict[str, str]
) -> None:
    connection = await connect()
    key = {"Authorization": f"Bearer {tenant.writer}", **headers}
    (reply,) = await connection.send(request("/events", EVENT, key, version=version))
    assert reply.status == 201 and reply.headers["connection"] == "close"
    assert await connection.closed_by_server()
    assert lane_calls == ["/events"]


async def test_what_the_lane_leaves_to_uvicorn(
    tenant: Tenant, connect: Any, lane_calls: list[str], settings: Settings
) -> None:
    key = {"Authorization": f"Bearer {tenant.writer}"}
    connection = await connect()
    padded = json.dumps(EVENT).encode() + b" " * LANE_MAX_BODY  # over the lane, under the limit
    assert len(padded) < settings.max_body_bytes
    (large,) = await connection.send(request("/events", padded, key))
    assert large.status == 201
    expect = {**key, "Expect": "100-continue"}
    (continued,) = await connection.send(request("/events", EVENT, expect))
    assert continued.status == 201
    (other,) = await connection.send(request("/graphql", {"query": "{ __typename }"}, key))
    assert other.status == 200 and other.json() == {"data": {"__typename": "Query"}}
    too_large = b"{" + b" " * settings.max_body_bytes + b"}"
    (refused,) = await connection.send(request("/events", too_large, key))
    assert refused.status == 413 and refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert lane_calls == []


async def test_an_unexpected_error_is_answered_in_the_documented_shape(
    app: Starlette, tenant: Tenant, connect: Any
) -> None:
    """What the lane's app raises (past the handlers, which answer their own errors) gets
    the 500 Starlette's handler gives, and the connection stays usable."""

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app.state.rest_lane = replace(app.state.rest_lane, app=failing)
    connection = await connect()
    key = {"Authorization": f"Bearer {tenant.writer}"}
    (failed,) = await connection.send(request("/events", EVENT, key))
    assert failed.status == 500
    assert failed.json() == {"error": {"code": "INTERNAL", "message": "Internal server error."}}
    # Then the connection is closed, as uvicorn closes it after an app's error.
    assert failed.headers["connection"] == "close" and await connection.closed_by_server()
    (health,) = await (await connect()).send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    assert health.status == 200


async def test_a_client_that_does_not_read_is_not_answered_without_end(
    app: Starlette, lane_calls: list[str]
) -> None:
    """A client posting one request after another without reading the answers: once they
    fill the connection's buffers the server stops taking its requests (uvicorn's
    back-pressure) instead of answering all of them into memory. Read, all are answered."""
    config = uvicorn.Config(app, port=free_port(), lifespan="off", http=RestHttpProtocol)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small buffers both ways,
    client.connect(("127.0.0.1", config.port))  # so that a few hundred answers fill them
    connection = Connection(*await asyncio.open_connection(sock=client))
    while not server.server_state.connections:
        await asyncio.sleep(0.01)
    (protocol,) = server.server_state.connections
    protocol.transport.get_extra_info("socket").setsockopt(  # type: ignore[attr-defined]
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
    )
    most = 5_000
    unauthenticated = request("/events", EVENT)  # cheap to answer: 401, nothing stored
    sent = 0
    try:
        while sent < most:
            connection.writer.write(unauthenticated)
            sent += 1
            for _ in range(100):  # until the lane takes it (each request alone, not pipelined)
                if len(lane_calls) == sent:
                    break
                await asyncio.sleep(0.002)
            else:
                break  # the server no longer takes this connection's requests
        assert sent < most, "every request was answered though none was read"
        replies = [await asyncio.wait_for(read_reply(connection.reader), 10) for _ in range(sent)]
        assert {reply.status for reply in replies} == {401}
    finally:
        connection.writer.close()
        server.should_exit = True
        await serving


async def test_a_request_cut_short_by_shutdown_gets_an_answer(
    app: Starlette, tenant: Tenant
) -> None:
    """A lane request still running when a graceful shutdown times out is answered 500 and
    its connection closed, as uvicorn does for its own requests."""

    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(3600)

    app.state.rest_lane = replace(app.state.rest_lane, app=stuck)
    key = {"Authorization": f"Bearer {tenant.writer}"}
    async with served(app, timeout_graceful_shutdown=0.2) as port:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        connection.writer.write(request("/events", EVENT, key))
        await connection.writer.drain()
        await asyncio.sleep(0.2)
    reply = await asyncio.wait_for(read_reply(connection.reader), 5)
    assert reply.status == 500 and await connection.closed_by_server()
    connection.writer.close()


async def test_a_client_gone_before_its_answer_leaves_the_server_serving(
    tenant: Tenant, connect: Any, lane_calls: list[str]
) -> None:
    key = {"Authorization": f"Bearer {tenant.writer}"}
    gone = await connect()
    gone.writer.write(request("/events", {**EVENT, "name": "gone"}, key))
    await gone.writer.drain()
    gone.writer.close()
    connection = await connect()
    (reply,) = await connection.send(request("/events", {**EVENT, "name": "here"}, key))
    assert reply.status == 201
    assert "/events" in lane_calls


async def test_one_rate_limit_whichever_way_a_request_comes(
    settings: Settings, tenant: Tenant, lane_calls: list[str]
) -> None:
    """The lane and the usual path take from the same bucket: a burst of 3 is 3 in all."""
    limited = replace(settings, rate_limit_per_second=0.001, rate_limit_burst=3)
    app = create_app(limited, manage_database=False)
    key = {"Authorization": f"Bearer {tenant.writer}"}
    async with app.router.lifespan_context(app), served(app, http=RestHttpProtocol) as port:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        replies = [
            reply
            for chunked in (False, True, False, True, False)
            for reply in await connection.send(request("/events", EVENT, key, chunked=chunked))
        ]
        connection.writer.close()
    assert [reply.status for reply in replies] == [201, 201, 201, 429, 429]
    assert lane_calls == ["/events"] * 3  # the lane's three, beside two through uvicorn
    assert replies[3].json()["error"]["code"] == "RATE_LIMITED"
    assert replies[3].headers["retry-after"] == replies[4].headers["retry-after"]


# A request must arrive in full within OPSGRAPH_REQUEST_READ_TIMEOUT_SECONDS.
TIMEOUT = 1.0
QUICK = pytest.mark.settings(request_read_timeout_seconds=TIMEOUT)


async def timed_out(connection: Connection) -> tuple[Reply, float]:
    """The 408 the server sends, and how long after the call it came; it must close."""
    started = asyncio.get_running_loop().time()
    reply = await asyncio.wait_for(read_reply(connection.reader), 5)
    waited = asyncio.get_running_loop().time() - started
    assert reply.status == 408, reply
    assert reply.headers["connection"] == "close" and await connection.closed_by_server()
    assert reply.json()["error"]["code"] == "REQUEST_TIMEOUT"
    assert f"{TIMEOUT:g} seconds" in reply.json()["error"]["message"]
    return reply, waited


@QUICK
@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(lambda key: request("/events", EVENT, key)[:30], id="headers"),
        pytest.param(lambda key: request("/events", EVENT, key)[:-10], id="lane-body"),
        pytest.param(
            lambda key: request("/graphql", {"query": "{ viewer { name } }"}, key)[:-10],
            id="uvicorn-body",
        ),
        pytest.param(lambda key: request("/api/events", EVENT, key)[:-10], id="pagerduty"),
    ],
)
async def test_a_request_that_stalls_is_answered_408_and_closed(
    tenant: Tenant, connect: Any, sent: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops sending mid-request (in its headers, or in a body the lane or
    uvicorn's cycle reads) gets a 408 in the documented shape (PagerDuty's on its paths)
    once the read timeout is up, and its connection is closed: nothing is stored and the
    server logs no error."""
    before = await Change.all().count()
    connection = await connect()
    connection.writer.write(sent({"Authorization": f"Bearer {tenant.writer}"}))
    await connection.writer.drain()
    reply, waited = await timed_out(connection)
    assert waited >= TIMEOUT * 0.9
    assert "date" in reply.headers  # as uvicorn's own answers have it
    if b"/api/events" in sent({}):
        assert reply.json()["status"] == "error" and reply.json()["errors"]
    else:
        assert set(reply.json()) == {"error"}
    assert await Change.all().count() == before
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@QUICK
async def test_a_connection_that_sends_nothing_is_closed(connect: Any) -> None:
    connection = await connect()
    assert await connection.closed_by_server()  # at once, without an answer


@QUICK
async def test_the_read_timeout_runs_from_each_request_s_first_byte(
    tenant: Tenant, connect: Any
) -> None:
    """On a kept-alive connection each request has the whole timeout: one sent in two
    parts half a timeout apart, most of a timeout after the answer before it, is
    answered."""
    key = {"Authorization": f"Bearer {tenant.writer}"}
    connection = await connect()
    (first,) = await connection.send(request("/events", EVENT, key))
    await asyncio.sleep(TIMEOUT * 0.8)
    second = request("/events", {**EVENT, "name": "second"}, key)
    connection.writer.write(second[:40])
    await asyncio.sleep(TIMEOUT * 0.5)
    assert [first.status, (await connection.send(second[40:]))[0].status] == [201, 201]


@pytest.fixture
def slow_lane(app: Starlette) -> Starlette:
    """The app, its REST posts answered 202 after one and a half timeouts."""

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(TIMEOUT * 1.5)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.state.rest_lane = replace(app.state.rest_lane, app=slow)
    return app


@QUICK
async def test_a_slow_answer_is_not_cut_by_the_read_timeout(
    slow_lane: Starlette, tenant: Tenant
) -> None:
    """The timeout is the client's to meet, not the app's: a request answered after one
    and a half timeouts is answered, and the next one, begun meanwhile and finished soon
    after that answer, is answered too: its clock started again when the answer was out."""
    key = {"Authorization": f"Bearer {tenant.writer}"}
    second = request("/events", EVENT, key)
    async with served(slow_lane) as port:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        connection.writer.write(request("/events", EVENT, key) + second[:20])
        await connection.writer.drain()
        assert (await asyncio.wait_for(read_reply(connection.reader), 5)).status == 202
        await asyncio.sleep(TIMEOUT * 0.7)
        (answered,) = await connection.send(second[20:])
        assert answered.status == 202
        connection.writer.close()


@QUICK
async def test_a_request_left_unfinished_behind_a_slow_answer_times_out_after_it(
    slow_lane: Starlette, tenant: Tenant
) -> None:
    key = {"Authorization": f"Bearer {tenant.writer}"}
    async with served(slow_lane) as port:
        connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        connection.writer.write(request("/events", EVENT, key) + b"POST /events HTTP/1.1\r\n")
        await connection.writer.drain()
        assert (await asyncio.wait_for(read_reply(connection.reader), 5)).status == 202
        _, waited = await timed_out(connection)  # a whole timeout after the answer
        assert waited >= TIMEOUT * 0.9
        connection.writer.close()


async def test_waiting_for_100_continue_is_not_the_client_s_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client that sent `Expect: 100-continue` waits for the server's go-ahead, which
    uvicorn sends when the app first reads the body: its clock starts then."""
    monkeypatch.setenv("OPSGRAPH_REQUEST_READ_TIMEOUT_SECONDS", str(TIMEOUT))

    async def reads_late(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(TIMEOUT * 1.5)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    head = (
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    async with served(cast(Any, reads_late)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        go_ahead = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert go_ahead.startswith(b"HTTP/1.1 100 ")
        await asyncio.sleep(TIMEOUT * 0.6)  # past a timeout since the headers, not since 100
        writer.write(b"hello")
        reply = await asyncio.wait_for(read_reply(reader), 5)
        writer.close()
    assert (reply.status, reply.body) == (200, b"5")


async def test_a_body_the_app_reads_late_is_not_the_client_s_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past 64 KB of a body the app has not read, uvicorn stops reading the connection; the
    client, held, is not late: its clock starts again when reading resumes. Here the app
    reads from one and a half timeouts on, and the body's last bytes come 0.6 of a
    timeout after that (more than a timeout after its first byte): answered."""
    monkeypatch.setenv("OPSGRAPH_REQUEST_READ_TIMEOUT_SECONDS", str(TIMEOUT))

    async def reads_late(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(TIMEOUT * 1.5)
        size, more = 0, True
        while more:
            message = await receive()
            size, more = size + len(message.get("body", b"")), message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    size = 100_000  # past uvicorn's HIGH_WATER_LIMIT of 65,536 bytes buffered
    head = f"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {size}\r\n\r\n".encode()
    async with served(cast(Any, reads_late)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"x" * (size - 5))
        await writer.drain()
        await asyncio.sleep(TIMEOUT * 2.1)
        writer.write(b"x" * 5)
        reply = await asyncio.wait_for(read_reply(reader), 5)
        writer.close()
    assert (reply.status, reply.body) == (200, str(size).encode())


@QUICK
async def test_a_websocket_outlives_the_read_timeout(app: Starlette, tenant: Tenant) -> None:
    """The timeout covers the upgrade request only: a connection kept past it still
    answers a ping."""
    async with served(app, **websocket_options(app.state.settings)) as port:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
        ) as ws:  # type: ignore[attr-defined]
            auth = {"Authorization": f"Bearer {tenant.reader}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await asyncio.sleep(TIMEOUT * 1.5)
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
