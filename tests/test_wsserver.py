"""`graphql-transport-ws` served outside ASGI (`opsgraph.wsserver`), under a real uvicorn
with the options `opsgraph serve` uses.

The protocol's behaviour is checked on both ways a connection can be served, the direct
protocol and uvicorn's own protocol with the ASGI app, and must be the same: live entries,
queries, every refusal with its close code and reason, pings, fragments, sizes, shutdown.
Then what only the direct protocol does: it keeps no task for a connection that waits,
and hands every handshake it does not serve to the ASGI app. Both databases."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import hypothesis
import pytest
import websockets
from hypothesis import strategies as st
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from models.workspace import ApiKey
from opsgraph import wsserver
from opsgraph.app import create_app
from opsgraph.cli import websocket_options
from opsgraph.settings import Settings
from opsgraph.wsserver import GraphQLWebSocket
from resolvers.auth import Scope, hash_secret
from tests.conftest import Tenant, with_settings
from tests.servers import served
from tests.test_changes import SEED_EVENT
from tests.test_wsdirect import parse_frames

PROTOCOLS = [
    pytest.param(GraphQLWebSocket, id="direct"),
    pytest.param("websockets-sansio", id="asgi"),
]
SUBSCRIBE = "subscription { timeline { summary } }"


@asynccontextmanager
async def serving_app(
    settings: Settings, ws: object, **options: Any
) -> AsyncIterator[tuple[Starlette, int]]:
    """The app of these settings (lifespan run here) under uvicorn with WebSocket class
    `ws` (and these uvicorn options); yields the app and the port."""
    app: Starlette = create_app(settings, manage_database=False)
    async with app.router.lifespan_context(app):
        async with served(app, **{**websocket_options(settings), "ws": ws, **options}) as port:
            yield app, port


@asynccontextmanager
async def serving(settings: Settings, ws: object, **options: Any) -> AsyncIterator[int]:
    async with serving_app(settings, ws, **options) as (_, port):
        yield port


@pytest.fixture(params=PROTOCOLS)
async def port(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[int]:
    quick = with_settings(settings, connection_init_timeout_seconds=0.5)
    async with serving(quick, request.param) as port:
        yield port


def connect(port: int, **options: Any) -> Any:
    options.setdefault("subprotocols", ["graphql-transport-ws"])
    return websockets.connect(f"ws://127.0.0.1:{port}/graphql", **options)


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=5))  # type: ignore[no-any-return]


async def init(ws: ClientConnection, key: str) -> None:
    await send(ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
    assert await receive(ws) == {"type": "connection_ack"}


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """The close code and reason the server sent (after any messages before it)."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert info.value.rcvd is not None, "the server closed without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason


async def post(port: int, key: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await http.post(
            "/events", json={**SEED_EVENT, "name": name}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 201, response.text


async def follow(ws: ClientConnection, port: int, key: str, operation_id: str) -> None:
    """Subscribe and post until the subscription is seen to be live."""
    await send(ws, {"id": operation_id, "type": "subscribe", "payload": {"query": SUBSCRIBE}})
    while True:
        await post(port, key, "warm-up")
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.3))
        except TimeoutError:
            continue
        assert message["id"] == operation_id and message["type"] == "next", message
        return


async def test_live_entries_arrive_and_complete_ends_the_subscription(
    port: int, tenant: Tenant
) -> None:
    async with connect(port) as ws:
        await init(ws, tenant.reader)
        await follow(ws, port, tenant.writer, "live")
        await post(port, tenant.writer, "one")
        message = await receive(ws)
        while message["payload"]["data"]["timeline"]["summary"] == "warm-up":
            message = await receive(ws)
        assert message == {
            "id": "live",
            "type": "next",
            "payload": {"data": {"timeline": {"summary": "one"}}},
        }
        await send(ws, {"id": "live", "type": "complete"})
        await send(ws, {"type": "ping"})
        # Entries already on their way may still come; then only the pong.
        while (message := await receive(ws))["type"] == "next":
            pass
        assert message == {"type": "pong"}
        await post(port, tenant.writer, "after")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), timeout=0.5)


async def test_a_query_is_answered_then_completed_and_a_bad_one_gets_an_error(
    port: int, tenant: Tenant
) -> None:
    async with connect(port) as ws:
        await init(ws, tenant.reader)
        await send(ws, {"id": "q", "type": "subscribe", "payload": {"query": "{ __typename }"}})
        assert await receive(ws) == {
            "id": "q",
            "type": "next",
            "payload": {"data": {"__typename": "Query"}},
        }
        assert await receive(ws) == {"id": "q", "type": "complete"}
        await send(ws, {"id": "bad", "type": "subscribe", "payload": {"query": "{ nope }"}})
        error = await receive(ws)
        assert error["id"] == "bad" and error["type"] == "error"
        assert "nope" in error["payload"][0]["message"]


REFUSALS = {
    "subscribe before connection_init": (
        [{"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}],
        (4401, "Unauthorized"),
    ),
    "a second connection_init": (
        [{"type": "connection_init", "payload": {}}],
        (4429, "Too many initialisation requests"),
    ),
    "an unknown message type": ([{"type": "nope"}], (4400, "Unknown message type: nope")),
    "a message without a type": ([{"id": "1"}], (4400, "Failed to parse message")),
    "invalid JSON": (["{not json"], (4400, "WebSocket message must be valid JSON")),
    "a binary message": ([b"\x00\x01"], (4400, "WebSocket message type must be text")),
    # Strawberry read these unchecked: the connection ended with 1011 and a traceback.
    "a message that is not an object": (["[1, 2]"], (4400, "Failed to parse message")),
    "a subscribe payload that is not an object": (
        [{"id": "1", "type": "subscribe", "payload": "x"}],
        (4400, "Invalid subscribe message: payload: must be an object"),
    ),
    "a subscribe without a payload": (
        [{"id": "1", "type": "subscribe", "payload": None}],
        (4400, "Invalid subscribe message: payload: must be an object"),
    ),
    "a query that is not a string": (  # it ended the operation with nothing said
        [{"id": "1", "type": "subscribe", "payload": {"query": 5}}],
        (4400, "Invalid subscribe message: payload.query: must be a string"),
    ),
    "variables that are not an object": (
        [{"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": [1]}}],
        (4400, "Invalid subscribe message: payload.variables: must be an object or null"),
    ),
    "an operation id that is not a string": (
        [{"id": ["1"], "type": "subscribe", "payload": {"query": SUBSCRIBE}}],
        (4400, "Invalid subscribe message: id: must be a non-empty string"),
    ),
    "a complete whose id is not a string": (
        [{"id": {"a": 1}, "type": "complete"}],
        (4400, "Invalid complete message: id: must be a string"),
    ),
    "an operation id in use": (
        [
            {"id": "x", "type": "subscribe", "payload": {"query": SUBSCRIBE}},
            {"id": "x", "type": "subscribe", "payload": {"query": SUBSCRIBE}},
        ],
        (4409, "Subscriber for x already exists"),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_protocol_violations_close_with_their_code_and_reason(
    port: int, tenant: Tenant, case: str
) -> None:
    messages, expected = REFUSALS[case]
    async with connect(port) as ws:
        if case != "subscribe before connection_init":
            await init(ws, tenant.reader)
        for message in messages:
            await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
        assert await closed_with(ws) == expected


async def test_a_bad_key_is_refused_and_a_silent_client_times_out(
    port: int, tenant: Tenant
) -> None:
    async with connect(port) as ws:
        await send(ws, {"type": "connection_init", "payload": {"Authorization": "Bearer og_x"}})
        assert await closed_with(ws) == (4403, "Forbidden")
    for protocol in ("graphql-transport-ws", "graphql-ws"):  # 0.5 s here
        async with connect(port, subprotocols=[protocol]) as ws:
            assert await closed_with(ws) == (4408, "Connection initialisation timeout")


async def test_fragments_pings_and_the_size_limit(
    port: int, tenant: Tenant, settings: Settings
) -> None:
    async with connect(port, max_size=None) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {tenant.reader}"}}
        text = json.dumps(init)
        await ws.send([text[:5], text[5:20], text[20:]])  # one message in three frames
        assert await receive(ws) == {"type": "connection_ack"}
        await asyncio.wait_for(await ws.ping(b"abcd"), timeout=5)  # answered with a pong
        await ws.send("x" * (settings.max_body_bytes + 1))
        assert (await closed_with(ws))[0] == 1009  # message too big


@pytest.mark.parametrize("ws_class", [p.values[0] for p in PROTOCOLS], ids=["direct", "asgi"])
async def test_a_client_close_is_answered_and_a_stopping_server_closes_with_1012(
    settings: Settings, tenant: Tenant, ws_class: object
) -> None:
    async with serving(settings, ws_class) as port:
        async with connect(port) as ws:
            await init(ws, tenant.reader)
            await ws.close(code=1000, reason="bye")
            assert ws.close_code == 1000  # the server answered our close
        ws = await connect(port)
        await init(ws, tenant.reader)
    # The server has stopped with the connection open.
    assert (await closed_with(ws))[0] == 1012  # service restart


async def raw_handshake(
    port: int, path: str = "/graphql", **headers: str
) -> tuple[Any, Any, bytes]:
    """A WebSocket handshake by hand; returns the streams and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: graphql-transport-ws",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    return reader, writer, head


async def test_an_unmasked_client_frame_is_a_protocol_error(port: int) -> None:
    reader, writer, head = await raw_handshake(port)
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(struct.pack("!BB", 0x81, 2) + b"{}")  # clients must mask their frames
    frame = await asyncio.wait_for(reader.read(4), timeout=5)
    assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 1002
    writer.close()


@pytest.mark.parametrize("ws_class", [p.values[0] for p in PROTOCOLS], ids=["direct", "asgi"])
async def test_a_client_that_stops_answering_pings_is_closed_with_1011(
    settings: Settings, tenant: Tenant, ws_class: object
) -> None:
    quick = with_settings(settings, ws_ping_interval_seconds=0.2, ws_ping_timeout_seconds=0.3)
    async with serving(quick, ws_class) as port:
        async with connect(port, ping_interval=None) as ws:  # it answers pings itself
            await init(ws, tenant.reader)
            await asyncio.sleep(1.2)  # several rounds of pings
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
        reader, writer, head = await raw_handshake(port)  # this one never answers
        assert head.startswith(b"HTTP/1.1 101")
        ping = await asyncio.wait_for(reader.readexactly(2), timeout=5)
        assert ping[0] == 0x89  # a ping, with its payload
        await reader.readexactly(ping[1] & 0x7F)
        close = await asyncio.wait_for(reader.readexactly(4), timeout=5)
        assert close[0] == 0x88 and struct.unpack("!H", close[2:4])[0] == 1011
        writer.close()


def any_frame(fin: bool, rsv: int, opcode: int, mask: bool, payload: bytes, wide: int) -> bytes:
    """A frame as a client might send it, right or wrong in any field."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if wide == 0 and size < 126:
        head = bytes((first, (0x80 if mask else 0) | size))
    elif wide <= 1 and size < 1 << 16:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One whole, masked client frame, as RFC 6455 wants it."""
    return any_frame(fin=True, rsv=0, opcode=opcode, mask=True, payload=payload, wide=0)


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame from the server (unmasked, payloads under 126 bytes here)."""
    head = await reader.readexactly(2)
    return head[0] & 0x0F, await reader.readexactly(head[1] & 0x7F)


@pytest.mark.parametrize("ws_class", [p.values[0] for p in PROTOCOLS], ids=["direct", "asgi"])
async def test_pings_without_a_timeout_keep_to_their_interval(
    settings: Settings, ws_class: object
) -> None:
    quick = with_settings(settings, ws_ping_interval_seconds=0.1, ws_ping_timeout_seconds=0)
    async with serving(quick, ws_class) as port:
        reader, writer, head = await raw_handshake(port)
        assert head.startswith(b"HTTP/1.1 101")
        loop = asyncio.get_running_loop()
        pings, deadline = 0, loop.time() + 1.0
        while (left := deadline - loop.time()) > 0:
            try:
                opcode, payload = await asyncio.wait_for(server_frame(reader), timeout=left)
            except TimeoutError:
                break
            assert opcode == 0x9
            pings += 1
            writer.write(client_frame(payload, opcode=0xA))  # answered at once, every time
        writer.close()
    assert 5 <= pings <= 12  # one every 0.1 s, not a growing number per interval


@pytest.mark.parametrize("ws_class", [p.values[0] for p in PROTOCOLS], ids=["direct", "asgi"])
async def test_a_connection_the_server_closes_ends_its_subscriptions_at_once(
    settings: Settings, tenant: Tenant, ws_class: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Without waiting for the client to answer the close (this one never does)."""
    async with serving_app(settings, ws_class) as (app, port):
        hub = app.state.graphql.bus.hub
        reader, writer, head = await raw_handshake(port)
        assert head.startswith(b"HTTP/1.1 101")
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {tenant.reader}"}}
        writer.write(client_frame(json.dumps(init).encode()))
        assert await server_frame(reader) == (0x1, b'{"type":"connection_ack"}')
        subscribe = {"id": "x", "type": "subscribe", "payload": {"query": SUBSCRIBE}}
        writer.write(client_frame(json.dumps(subscribe).encode()))
        for _ in range(100):
            if hub.subscriber_count == 1:
                break
            await asyncio.sleep(0.02)
        assert hub.subscriber_count == 1
        writer.write(client_frame(json.dumps(subscribe).encode()))  # the same id again
        opcode, payload = await server_frame(reader)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 4409
        for _ in range(50):
            if hub.subscriber_count == 0:
                break
            await asyncio.sleep(0.02)
        assert hub.subscriber_count == 0
        await post(port, tenant.writer, "after the close")
        await asyncio.sleep(0.2)
        writer.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


@pytest.mark.parametrize(
    ("ws_class", "protocol"),
    [(GraphQLWebSocket, "graphql-transport-ws"), ("websockets-sansio", "graphql-transport-ws"),
     ("websockets-sansio", "graphql-ws")],
    ids=["direct", "asgi", "asgi legacy"],
)  # fmt: skip
async def test_an_open_connection_s_key_is_rechecked_until_it_closes(
    settings: Settings, tenant: Tenant, ws_class: object, protocol: str
) -> None:
    """A connection with no subscription is counted under its key (the key recheck covers
    it, see test_revocation), and no longer once it closes."""
    async with serving_app(settings, ws_class) as (app, port):
        hub = app.state.graphql.bus.hub
        async with connect(port, subprotocols=[protocol]) as ws:
            await init(ws, tenant.reader)
            [key_id] = hub.live_key_ids()
            assert (await ApiKey.get(id=key_id)).key_hash == hash_secret(tenant.reader)
        for _ in range(100):
            if not hub.live_key_ids():
                break
            await asyncio.sleep(0.02)
        assert hub.live_key_ids() == set()


async def test_a_second_legacy_connection_init_closes_and_counts_nothing_twice(
    settings: Settings, tenant: Tenant
) -> None:
    """graphql-ws: a second connection_init is refused as graphql-transport-ws refuses one
    (4429); it counted the connection's key a second time, rechecked for ever after."""
    async with serving_app(settings, "websockets-sansio") as (app, port):
        hub = app.state.graphql.bus.hub
        async with connect(port, subprotocols=["graphql-ws"]) as ws:
            await init(ws, tenant.reader)
            again = {
                "type": "connection_init",
                "payload": {"Authorization": f"Bearer {tenant.admin}"},
            }
            await send(ws, again)
            assert await closed_with(ws) == (4429, "Too many initialisation requests")
        for _ in range(100):
            if not hub.live_key_ids():
                break
            await asyncio.sleep(0.02)
        assert hub.live_key_ids() == set()


# What only the direct protocol does.


async def test_a_waiting_subscriber_keeps_one_task_where_asgi_keeps_two(
    settings: Settings, tenant: Tenant
) -> None:
    """The server runs on this event loop: count its tasks per waiting subscriber, with
    `OPSGRAPH_WS_DIRECT` on (the default) and off."""
    counts = {}
    for direct in (True, False):
        served_with = with_settings(settings, ws_direct=direct)
        async with serving(served_with, websocket_options(served_with)["ws"]) as port:
            # (the clients run here too: no keepalive task of theirs to count)
            clients = [await connect(port, ping_interval=None) for _ in range(10)]
            for index, ws in enumerate(clients):
                await init(ws, tenant.reader)
                await follow(ws, port, tenant.writer, f"s{index}")
            await asyncio.sleep(0.2)
            before = len(asyncio.all_tasks())
            for ws in clients:
                await ws.close()
            await asyncio.sleep(0.5)
            counts[direct] = (before - len(asyncio.all_tasks())) / len(clients)
    assert counts[True] == 1  # the subscription's operation, nothing else
    assert counts[False] == 2  # the ASGI app reading messages, the operation


async def test_other_handshakes_go_to_the_asgi_app(port_direct: int, tenant: Tenant) -> None:
    port = port_direct
    # The legacy protocol is the ASGI app's.
    async with connect(port, subprotocols=["graphql-ws"]) as ws:
        await send(
            ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {tenant.reader}"}}
        )
        assert (await receive(ws))["type"] == "connection_ack"
    # A page of another origin is refused, as Strawberry refuses it; the same origin is served.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(port, origin="http://elsewhere.example"):
            pass
    assert refused.value.response.status_code == 403
    async with connect(port, origin=f"http://127.0.0.1:{port}") as ws:
        await init(ws, tenant.reader)
    # Another path is not GraphQL.
    with pytest.raises(InvalidStatus) as elsewhere:
        async with websockets.connect(f"ws://127.0.0.1:{port}/nope"):
            pass
    assert elsewhere.value.response.status_code == 403
    # A request that is no valid WebSocket handshake gets uvicorn's answer.
    reader, writer, head = await raw_handshake(port, Sec_WebSocket_Version="8")
    assert not head.startswith(b"HTTP/1.1 101")
    writer.close()


@pytest.fixture
async def port_direct(settings: Settings) -> AsyncIterator[int]:
    async with serving(settings, GraphQLWebSocket) as port:
        yield port


class _Transport(asyncio.Transport):
    """Records what the protocol does to its connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.reading = True
        self.closing = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _SlowHandler:
    """Strawberry's handler as the protocol sees it, taking its time over each message."""

    def __init__(self, *, websocket: GraphQLWebSocket, **_: Any) -> None:
        self.websocket = websocket
        self.handled: list[object] = []
        self.go_on = asyncio.Event()

    def on_request_accepted(self) -> None:
        pass

    async def handle_message(self, message: object) -> None:
        self.handled.append(message)
        await self.go_on.wait()

    async def shutdown(self) -> None:
        pass


def fake_connection(
    handler_class: type, *, max_size: int, loop: asyncio.AbstractEventLoop | None = None
) -> tuple[GraphQLWebSocket, _Transport]:
    """A protocol on a recording transport, past its handshake, with this handler class."""
    graphql = types.SimpleNamespace(
        schema=None,
        connection_init_wait_timeout=None,
        max_subscriptions_per_connection=None,
        graphql_transport_ws_handler_class=handler_class,
        websocket_context=lambda: None,
        decode_json=json.loads,
        encode_json=json.dumps,
    )
    app = Starlette()
    app.state.graphql = graphql
    config = types.SimpleNamespace(
        loaded=True,
        loaded_app=app,
        root_path="",
        ws_max_size=max_size,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        access_log=False,
    )
    state = types.SimpleNamespace(connections=set(), tasks=set(), default_headers=[])
    protocol = GraphQLWebSocket(config, state, {}, _loop=loop)  # type: ignore[arg-type]
    transport = _Transport()
    protocol.connection_made(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.data_received(
        (
            "GET /graphql HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n"
            "sec-websocket-protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    assert transport.written[0].startswith(b"HTTP/1.1 101")
    return protocol, transport


async def test_a_client_sending_faster_than_its_messages_are_handled_is_not_read_on() -> None:
    """However many messages it sends, about `ws_max_size` bytes of them wait in memory."""
    max_size = 1_000
    protocol, transport = fake_connection(_SlowHandler, max_size=max_size)
    message = client_frame(json.dumps({"type": "ping", "payload": {"pad": "x" * 60}}).encode())
    sent = 0
    while transport.reading and sent < 1_000:  # the transport stops calling once paused
        protocol.data_received(message)
        sent += 1
        await asyncio.sleep(0)
    handler = protocol.handler
    assert not transport.reading
    assert sent * (len(message) - 6) <= 2 * max_size  # about 1,000 bytes, not 1,000 messages
    handler.go_on.set()  # the handler catches up: reading goes on
    for _ in range(100):
        if len(handler.handled) == sent:
            break
        await asyncio.sleep(0)
    assert len(handler.handled) == sent and transport.reading


async def test_a_client_that_does_not_answer_a_close_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing waits for what is written to go out, which a client that stopped reading
    never lets happen: after `CLOSE_TIMEOUT_SECONDS` the connection is dropped anyway, when
    we closed it and when the server stops."""
    monkeypatch.setattr(wsserver, "CLOSE_TIMEOUT_SECONDS", 0.05)
    protocol, transport = fake_connection(_SlowHandler, max_size=1_000)
    await protocol.close(4400, "bye")
    assert transport.written[-1][:4] == b"\x88\x05\x11\x30" and not transport.aborted
    await asyncio.sleep(0.1)
    assert transport.aborted
    protocol, transport = fake_connection(_SlowHandler, max_size=1_000)
    protocol.shutdown()
    assert transport.written[-1] == b"\x88\x02\x03\xf4"  # 1012
    assert transport.closing and not transport.aborted
    await asyncio.sleep(0.1)
    assert transport.aborted


class _QuickHandler(_SlowHandler):
    async def handle_message(self, message: object) -> None:
        self.handled.append(message)

    async def handle_invalid_message(self, reason: str) -> None:
        await self.websocket.close(4400, reason)


FRAMES = st.builds(
    any_frame,
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4]),
    opcode=st.sampled_from([0, 1, 1, 1, 2, 8, 9, 10, 3, 11]),
    mask=st.sampled_from([True, True, True, False]),
    payload=st.one_of(
        st.binary(max_size=140),
        st.text(max_size=60).map(str.encode),
        st.sampled_from([b'{"type":"ping"}', b"\x03\xe8bye", b"\x03\xed", b"\xff\xfe"]),
    ),
    wide=st.sampled_from([0, 0, 1, 2]),
)


# The codes a close frame may carry (RFC 6455 7.4): the server's own, or a client's echoed.
SENDABLE_CLOSE_CODES = {1000, 1001, 1002, 1003, *range(1007, 1015)} | set(range(3000, 5000))


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    frames=st.lists(st.one_of(FRAMES, st.binary(min_size=1, max_size=12)), max_size=12),
    cut=st.integers(min_value=1, max_value=64),
)
@hypothesis.example(  # a client's close with an application code (3072): echoed
    frames=[any_frame(fin=True, rsv=0, opcode=8, mask=True, payload=b"\x0c\x00", wide=0)],
    cut=64,
)
def test_whatever_a_client_sends_the_server_answers_in_valid_frames(
    frames: list[bytes], cut: int
) -> None:
    """Nothing escapes the protocol; what it writes back is well-formed server frames, a
    close (if any) last and with a code a close may carry."""

    async def main() -> None:
        protocol, transport = fake_connection(
            _QuickHandler, max_size=200, loop=asyncio.get_running_loop()
        )
        data = b"".join(frames)
        for start in range(0, len(data), cut):
            if transport.closing:
                break
            protocol.data_received(data[start : start + cut])
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        await asyncio.sleep(0)
        received = parse_frames(b"".join(transport.written[1:]))
        for index, frame in enumerate(received):
            assert frame.opcode in (Opcode.PONG, Opcode.CLOSE, Opcode.TEXT), frame
            if frame.opcode is Opcode.CLOSE:
                assert index == len(received) - 1, "a frame after the close"
                code = struct.unpack("!H", frame.data[:2])[0] if frame.data else 1000
                assert code in SENDABLE_CLOSE_CODES, code

    asyncio.run(main())


@pytest.mark.parametrize("ws_class", [p.values[0] for p in PROTOCOLS], ids=["direct", "asgi"])
async def test_operations_over_a_websocket_take_from_the_keys_rate_limit(
    settings: Settings, tenant: Tenant, ws_class: object
) -> None:
    """Each operation a connection sends takes a token from its key's bucket, the one its
    HTTP requests take from: a key cannot dodge its limit by sending over WebSockets."""
    limited = with_settings(settings, rate_limit_per_second=0.5, rate_limit_burst=3)
    query = {"query": "{ viewer { name } }"}
    async with serving(limited, ws_class) as port:
        async with connect(port) as ws:
            await init(ws, tenant.reader)
            for n in range(3):
                await send(ws, {"id": f"q{n}", "type": "subscribe", "payload": query})
                assert (await receive(ws))["type"] == "next"
                assert await receive(ws) == {"id": f"q{n}", "type": "complete"}
            await send(ws, {"id": "over", "type": "subscribe", "payload": query})
            refused = await receive(ws)
            assert refused["id"] == "over" and refused["type"] == "error"
            [error] = refused["payload"]
            assert error["message"] == "Too many requests for this key; retry after 2 s."
            assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 2}
            # The connection stays open, and the key's HTTP requests meet the same bucket.
            headers = {"Authorization": f"Bearer {tenant.reader}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.post("/graphql", json=query, headers=headers)).status_code == 429
                other = {"Authorization": f"Bearer {tenant.admin}"}
                assert (await http.post("/graphql", json=query, headers=other)).status_code == 200
            await send(ws, {"id": "later", "type": "subscribe", "payload": query})
            assert (await receive(ws))["type"] == "error"


async def test_the_legacy_protocol_takes_from_the_same_bucket(
    settings: Settings, tenant: Tenant
) -> None:
    limited = with_settings(settings, rate_limit_per_second=0.5, rate_limit_burst=2)
    subscription = {"query": SUBSCRIBE}
    async with serving(limited, GraphQLWebSocket) as port:
        async with connect(port, subprotocols=["graphql-ws"]) as ws:
            auth = {"Authorization": f"Bearer {tenant.reader}"}
            await send(ws, {"type": "connection_init", "payload": auth})
            assert (await receive(ws))["type"] == "connection_ack"
            for n in range(3):  # two subscriptions start quietly; the third is refused
                await send(ws, {"id": f"s{n}", "type": "start", "payload": subscription})
            refused = await receive(ws)
            assert refused["type"] == "error" and refused["id"] == "s2"
            assert refused["payload"]["extensions"]["code"] == "RATE_LIMITED"


async def test_an_agents_key_connects_to_follow_its_approval_only(
    port: int, tenant: Tenant
) -> None:
    """`events:write` may open a connection (the waiting agent follows its approval), but
    each field checks its own scope: the timeline still needs `read`."""
    async with connect(port) as ws:
        await init(ws, tenant.writer)
        await send(ws, {"id": "t", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        refused = await receive(ws)
        assert refused["type"] == "next" and refused["id"] == "t"
        assert refused["payload"]["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    decider = await tenant.key(Scope.APPROVALS_DECIDE, name="decider")
    async with connect(port) as ws:  # neither `read` nor `events:write`
        await send(
            ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {decider}"}}
        )
        assert await closed_with(ws) == (4403, "Forbidden")


async def test_a_malformed_legacy_start_is_refused_alone(port: int, tenant: Tenant) -> None:
    """graphql-ws: a `start` whose payload is not an object, or a message without a type,
    ended the connection without a close frame, and its other subscriptions with it. Now
    that operation alone gets an error naming what is wrong; the subscription goes on."""
    async with connect(port, subprotocols=["graphql-ws"]) as ws:
        auth = {"Authorization": f"Bearer {tenant.reader}"}
        await send(ws, {"type": "connection_init", "payload": auth})
        assert (await receive(ws))["type"] == "connection_ack"
        await send(ws, {"id": "good", "type": "start", "payload": {"query": SUBSCRIBE}})
        for bad in ("x", None, {"query": 5}):
            await send(ws, {"id": "bad", "type": "start", "payload": bad})
            refused = await receive(ws)
            assert (refused["type"], refused["id"]) == ("error", "bad")
            assert refused["payload"]["extensions"] == {"code": "BAD_REQUEST"}
        await send(ws, {"id": 7, "type": "start", "payload": {"query": SUBSCRIBE}})
        refused = await receive(ws)
        assert refused == {
            "type": "connection_error",
            "payload": {"message": "start: id: must be a non-empty string"},
        }
        await send(ws, {"payload": {}})
        assert (await receive(ws))["type"] == "connection_error"
        await post(port, tenant.writer, "still live")
        while (message := await receive(ws))["type"] == "ka":
            pass
        assert message["id"] == "good" and message["type"] == "data"
        assert message["payload"]["data"]["timeline"]["summary"] == "still live"


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_an_operation_over_the_connection_s_limit_gets_a_coded_error(
    settings: Settings, tenant: Tenant, protocol: str
) -> None:
    """Strawberry's "Subscription limit reached" carried no code and no number."""
    limited = with_settings(settings, max_subscriptions_per_connection=1)
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    async with serving(limited, GraphQLWebSocket) as port:
        async with connect(port, subprotocols=[protocol]) as ws:
            auth = {"Authorization": f"Bearer {tenant.reader}"}
            await send(ws, {"type": "connection_init", "payload": auth})
            assert (await receive(ws))["type"] == "connection_ack"
            for n in range(2):
                await send(ws, {"id": f"s{n}", "type": start, "payload": {"query": SUBSCRIBE}})
            refused = await receive(ws)
            assert (refused["type"], refused["id"]) == ("error", "s1")
            [error] = (
                refused["payload"] if protocol == "graphql-transport-ws" else [refused["payload"]]
            )
            assert error["extensions"] == {"code": "TOO_MANY_OPERATIONS"}
            assert "at most 1 operations" in error["message"]
