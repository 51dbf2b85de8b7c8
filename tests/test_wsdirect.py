"""Live entries written straight to the connection: the frames are exactly what `websockets`
would send, shared by every subscriber of one operation id, and under a real uvicorn (with
the options `opsgraph serve` uses) clients get every entry, in order, through that path,
whether the connection is served outside ASGI (`opsgraph.wsserver`, which declines
compression) or by uvicorn's protocol; where compression is negotiated they go the usual
way. Both databases."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from opsgraph.cli import websocket_options
from opsgraph.live import Share
from opsgraph.settings import Settings
from opsgraph.wsdirect import TransportWriter, text_frame
from opsgraph.wsserver import GraphQLWebSocket
from schema.live_render import LiveSink, LiveTarget, Renderer
from tests.conftest import Tenant
from tests.servers import served
from tests.test_changes import SEED_EVENT


def parse_frames(data: bytes) -> list[Frame]:
    """Frames as a client reads them (websockets' own parser)."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a truncated frame")
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_text_frame_is_what_websockets_sends(size: int) -> None:
    data = ("é" * size).encode()[:size]
    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


class Recorder:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, frames: bytes) -> bool:
        self.written.append(frames)
        return True


def sink_for(operation_id: str, writer: Recorder) -> LiveSink:
    target = LiveTarget(
        send_text=writer.write,  # type: ignore[arg-type]  # not used by the sink
        operation_id=operation_id,
        query="subscription { timeline { summary } }",
        variables=None,
        operation_name=None,
    )
    renderer = Renderer(None, key=(), memo_size=1)  # type: ignore[arg-type]  # not executed
    return LiveSink(renderer, target, writer, lambda row: row)


def test_each_subscriber_gets_its_share_in_one_write_and_frames_are_made_once() -> None:
    a, b, c = Recorder(), Recorder(), Recorder()
    share = Share(['{"data":{"n":1}}', '{"data":{"n":2}}'])
    for sink in (sink_for("1", a), sink_for("1", b), sink_for('x"y', c)):
        assert sink.write(share)
    assert len(a.written) == len(b.written) == len(c.written) == 1
    assert a.written[0] is b.written[0]  # made once for both
    messages = [json.loads(frame.data) for frame in parse_frames(c.written[0])]
    assert messages == [
        {"id": 'x"y', "type": "next", "payload": {"data": {"n": 1}}},
        {"id": 'x"y', "type": "next", "payload": {"data": {"n": 2}}},
    ]
    frames = parse_frames(a.written[0])
    assert all(frame.fin and frame.opcode is Opcode.TEXT for frame in frames)
    assert [json.loads(frame.data)["id"] for frame in frames] == ["1", "1"]


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the frames written directly (each call's bytes, parsed)."""
    counts: list[int] = []
    for writer in (TransportWriter, GraphQLWebSocket):  # under ASGI, and outside it
        original = writer.write

        def counting(self: object, frames: bytes, original: Any = original) -> bool:
            written = bool(original(self, frames))
            if written:
                counts.append(len(parse_frames(frames)))
            return written

        monkeypatch.setattr(writer, "write", counting)
    return counts


async def follow_and_post(port: int, tenant: Tenant, **connect: Any) -> list[str]:
    """Subscribe over graphql-transport-ws, post entries one by one and in a burst, and
    return the summaries that arrive (the warm-up posts left out)."""
    async with (
        websockets.connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"], **connect
        ) as ws,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {tenant.writer}"},
        ) as http,
    ):

        async def post(name: str) -> None:
            response = await http.post("/events", json={**SEED_EVENT, "name": name})
            assert response.status_code == 201, response.text

        async def receive() -> str:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            assert message["type"] == "next" and message["id"] == "live", message
            return str(message["payload"]["data"]["timeline"]["summary"])

        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {tenant.reader}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { timeline { summary } }"
        await ws.send(json.dumps({"id": "live", "type": "subscribe", "payload": {"query": query}}))
        # Until the subscription is registered, posts are not followed: warm up with some.
        while True:
            await post("warm-up")
            try:
                await asyncio.wait_for(ws.recv(), timeout=0.2)
                break
            except TimeoutError:
                continue
        await post("one")
        await post("two")
        await asyncio.gather(*(post("burst") for _ in range(20)))
        await post("last")
        received = []
        while not received or received[-1] != "last":
            summary = await receive()
            if summary != "warm-up":
                received.append(summary)
        return received


@pytest.mark.parametrize("ws", [GraphQLWebSocket, "websockets-sansio"], ids=["direct", "asgi"])
async def test_live_entries_reach_a_real_client_through_the_direct_path(
    app: Starlette, settings: Settings, tenant: Tenant, direct_writes: list[int], ws: object
) -> None:
    async with served(app, **{**websocket_options(settings), "ws": ws}) as port:
        received = await follow_and_post(port, tenant)
    assert received == ["one", "two", *["burst"] * 20, "last"]
    assert sum(direct_writes) >= len(received)


async def test_with_compression_negotiated_live_entries_take_the_usual_path(
    app: Starlette, settings: Settings, tenant: Tenant, direct_writes: list[int]
) -> None:
    options = {
        **websocket_options(settings),
        "ws": "websockets-sansio",
        "ws_per_message_deflate": True,
    }
    async with served(app, **options) as port:
        received = await follow_and_post(port, tenant, compression="deflate")
    assert received == ["one", "two", *["burst"] * 20, "last"]
    assert direct_writes == []


async def test_served_outside_asgi_compression_is_declined_and_entries_go_direct(
    app: Starlette, settings: Settings, tenant: Tenant, direct_writes: list[int]
) -> None:
    options = {**websocket_options(settings), "ws_per_message_deflate": True}
    async with served(app, **options) as port:
        received = await follow_and_post(port, tenant, compression="deflate")
    assert received == ["one", "two", *["burst"] * 20, "last"]
    assert sum(direct_writes) >= len(received)
