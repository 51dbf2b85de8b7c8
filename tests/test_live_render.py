"""Shared rendering of live entries: subscribers of one document (same variables, same key)
get the same message from one execution; other documents and filters get their own; the
message is the one the usual path would send. Both databases."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry
from starlette.types import Message
from strawberry.http.exceptions import WebSocketDisconnected
from uvicorn.protocols.utils import ClientDisconnected

from models.timeline import TimelineEntry as TimelineEntryRow
from opsgraph.bus import Bus
from opsgraph.settings import Settings
from schema.context import Context
from schema.live_render import LIVE_TARGET, AsgiText, LiveTarget, Renderer, Renderers
from tests.conftest import Tenant, memory_bus
from tests.test_live import post

WITH_SUBJECT = """
subscription($filter: TimelineFilter) {
  entry: timeline(filter: $filter) { summary service subject { ... on Change { name source } } }
}
"""


class Socket:
    """The client's end of a WebSocket: keeps every message the server sends."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.gone = False  # the client has left: sends fail as uvicorn's do

    async def send_text(self, text: str) -> None:
        self.messages.append(json.loads(text))
        self.arrived.set()

    async def asgi_send(self, message: Message) -> None:
        assert message["type"] == "websocket.send"
        if self.gone:
            raise ClientDisconnected
        await self.send_text(message["text"])

    async def next(self) -> dict[str, Any]:
        while not self.messages:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), timeout=5)
        return self.messages.pop(0)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=50) as live:
        yield live


class Live:
    """Opens `graphql-transport-ws`-style operations on the schema, as the handler does."""

    def __init__(self, schema: strawberry.Schema, settings: Settings, bus: Bus) -> None:
        self.schema, self.settings, self.bus = schema, settings, bus
        self.renderers = Renderers(memo_size=50)
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, key: str, document: str, **variables: Any) -> Socket:
        socket = Socket()
        context = Context(
            settings=self.settings,
            publisher=self.bus,
            secret=key,
            hub=self.bus.hub,
            renderers=self.renderers,
        )
        started = asyncio.Event()
        operation_id = f"op{len(self.tasks)}"

        async def run() -> None:
            LIVE_TARGET.set(
                LiveTarget(
                    send_text=AsgiText(socket.asgi_send),
                    operation_id=operation_id,
                    query=document,
                    variables=variables,
                    operation_name=None,
                )
            )
            stream = await self.schema.subscribe(
                document, variable_values=variables, context_value=context
            )
            assert not hasattr(stream, "errors"), stream
            reading = asyncio.ensure_future(stream.__anext__())  # type: ignore[union-attr]
            started.set()
            try:  # entries rendered here are sent, not yielded: anything yielded is news
                result = await reading
                yielded: dict[str, Any] = {"yielded": result.data}
                if result.errors:
                    yielded["errors"] = [type(e.original_error).__name__ for e in result.errors]
                await socket.send_text(json.dumps(yielded))
            finally:
                await stream.aclose()  # type: ignore[union-attr]

        self.tasks.append(asyncio.create_task(run()))
        await started.wait()
        await asyncio.sleep(0.05)  # the generator has registered with the hub
        return socket

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def live(schema: strawberry.Schema, settings: Settings, bus: Bus) -> AsyncIterator[Live]:
    opened = Live(schema, settings, bus)
    yield opened
    await opened.close()


async def test_subscribers_of_one_document_share_one_rendering(
    live: Live, tenant: Tenant, bus: Bus, settings: Settings, caplog: Any
) -> None:
    sockets = [await live.open(tenant.reader, WITH_SUBJECT) for _ in range(5)]
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        await post(tenant, bus, settings, "api deploy", service="api")
        messages = [await socket.next() for socket in sockets]
    assert [m["id"] for m in messages] == [f"op{index}" for index in range(5)]
    assert {m["type"] for m in messages} == {"next"}
    expected = {
        "entry": {
            "summary": "api deploy",
            "service": "api",
            "subject": {"name": "api deploy", "source": "ci"},
        }
    }
    assert [m["payload"] for m in messages] == [{"data": expected}] * 5
    reads = [r.getMessage() for r in caplog.records]
    subject_reads = [r for r in reads if 'FROM "change"' in r and "SELECT" in r]
    assert len(subject_reads) == 1, subject_reads


async def test_the_shared_message_is_the_usual_one(
    live: Live, schema: strawberry.Schema, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    socket = await live.open(tenant.reader, WITH_SUBJECT, filter={"services": ["api"]})
    usual = await schema.subscribe(
        WITH_SUBJECT,
        variable_values={"filter": {"services": ["api"]}},
        context_value=Context(settings=settings, publisher=bus, secret=tenant.reader, hub=bus.hub),
    )
    first = asyncio.ensure_future(usual.__anext__())  # type: ignore[union-attr]
    await asyncio.sleep(0.05)
    await post(tenant, bus, settings, "web deploy", service="web")
    await post(tenant, bus, settings, "api deploy", service="api")
    result = await asyncio.wait_for(first, timeout=5)
    assert result.errors is None
    assert (await socket.next())["payload"] == {"data": result.data}
    await usual.aclose()  # type: ignore[union-attr]


async def test_each_filter_and_key_gets_its_own_entries(
    live: Live, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    api = await live.open(tenant.reader, WITH_SUBJECT, filter={"services": ["api"]})
    web = await live.open(tenant.reader, WITH_SUBJECT, filter={"services": ["web"]})
    other_key = await live.open(tenant.admin, WITH_SUBJECT, filter={"services": ["web"]})
    assert len(live.renderers) == 3
    await post(tenant, bus, settings, "web deploy", service="web")
    await post(tenant, bus, settings, "api deploy", service="api")
    assert (await api.next())["payload"]["data"]["entry"]["summary"] == "api deploy"
    assert (await web.next())["payload"]["data"]["entry"]["summary"] == "web deploy"
    assert (await other_key.next())["payload"]["data"]["entry"]["summary"] == "web deploy"
    assert api.messages == web.messages == other_key.messages == []


async def test_a_renderer_goes_with_its_last_subscriber(live: Live, tenant: Tenant) -> None:
    for _ in range(3):
        await live.open(tenant.reader, WITH_SUBJECT)
    assert len(live.renderers) == 1
    await live.close()
    assert len(live.renderers) == 0


async def test_a_client_that_left_ends_its_operation_and_the_others_carry_on(
    live: Live, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    staying, leaving = [await live.open(tenant.reader, WITH_SUBJECT) for _ in range(2)]
    assert bus.hub.subscriber_count == 2
    leaving.gone = True
    await post(tenant, bus, settings, "api deploy", service="api")
    assert (await staying.next())["payload"]["data"]["entry"]["summary"] == "api deploy"
    # The operation ends with the error Strawberry's own sends raise (its handler then
    # closes the operation), and the hub forgets the subscriber.
    ended = await leaving.next()
    assert ended == {"yielded": None, "errors": [WebSocketDisconnected.__name__]}
    assert bus.hub.subscriber_count == 1
    await post(tenant, bus, settings, "web deploy", service="web")
    assert (await staying.next())["payload"]["data"]["entry"]["summary"] == "web deploy"
    assert leaving.messages == []


async def test_a_subscriber_leaving_mid_rendering_does_not_end_the_others() -> None:
    """The rendering is shared: one waiter cancelled (its client left) must not cancel it
    for the subscriber executing it or for the others waiting on it."""
    release = asyncio.Event()

    class Slow(Renderer):
        async def _execute(self, source: object) -> str | None:
            await release.wait()
            return '{"data":{"n":1}}'

    renderer = Slow(None, key=(), memo_size=10)  # type: ignore[arg-type]  # not executed
    row = TimelineEntryRow(seq=1)
    executing = asyncio.create_task(renderer.render(row, lambda entry: entry))
    leaving = asyncio.create_task(renderer.render(row, lambda entry: entry))
    staying = asyncio.create_task(renderer.render(row, lambda entry: entry))
    await asyncio.sleep(0.01)
    leaving.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await executing == await staying == '{"data":{"n":1}}'
    assert leaving.cancelled()
    assert await renderer.render(row, lambda entry: entry) == '{"data":{"n":1}}'
