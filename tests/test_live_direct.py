"""The hub's direct path: a subscriber parked in `next` with a sink gets its entries written
by the hub without its task waking; a backlog goes out in one write; whatever the sink
cannot take goes through the queue, in order, until the subscriber has caught up. Both
databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.timeline import TimelineEntry
from opsgraph.bus import Bus
from opsgraph.live import Share, Subscriber
from opsgraph.settings import Settings
from tests.conftest import Tenant, memory_bus
from tests.test_live import post


class Sink:
    """A `DirectSink` that records what it is given; it can refuse, fail to prepare, or
    hold the hub in `prepare` until released."""

    def __init__(self, group: object = None) -> None:
        self.group = group if group is not None else self
        self.prepared: list[str] = []
        self.writes: list[list[str]] = []
        self.refuse_next = 0  # this many writes answer False
        self.unpreparable: set[str] = set()
        self.hold = asyncio.Event()
        self.hold.set()
        self.holding = asyncio.Event()

    async def prepare(self, entry: TimelineEntry) -> object | None:
        self.prepared.append(entry.summary)
        if not self.hold.is_set():
            self.holding.set()
            await self.hold.wait()
        return None if entry.summary in self.unpreparable else entry.summary

    def write(self, share: Share) -> bool:
        if self.refuse_next:
            self.refuse_next -= 1
            return False
        self.writes.append([str(item) for item in share.prepared])
        return True


class Consumer:
    """The subscriber's own task, as a subscription runs it: takes entries from `next`
    (what the sink turned back) and, if told to, dawdles before waiting again."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.received: list[str] = []
        self.arrived = asyncio.Event()
        self.proceed = asyncio.Event()
        self.proceed.set()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            entry = await self.subscriber.next()
            self.received.append(entry.summary)
            self.arrived.set()
            await self.proceed.wait()

    async def parked(self) -> None:
        for _ in range(200):
            if self.subscriber.direct_sink() is not None:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the consumer never parked")


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=50) as live:
        yield live


@pytest.fixture
async def opened(bus: Bus, tenant: Tenant) -> AsyncIterator[Any]:
    consumers: list[Consumer] = []

    async def open_one(sink: Sink) -> Consumer:
        subscriber = await bus.hub.subscribe(
            workspace_id=tenant.workspace_id, accepts=lambda entry: True
        )
        subscriber.sink = sink
        consumer = Consumer(subscriber)
        consumers.append(consumer)
        await consumer.parked()
        return consumer

    yield open_one
    for consumer in consumers:
        consumer.task.cancel()
        bus.hub.unsubscribe(consumer.subscriber)
    await asyncio.gather(*(c.task for c in consumers), return_exceptions=True)


async def test_a_parked_subscriber_is_written_to_without_waking(
    opened: Any, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    sink = Sink()
    consumer = await opened(sink)
    await post(tenant, bus, settings, "e1")
    await until(lambda: sink.writes == [["e1"]])
    await post(tenant, bus, settings, "e2")
    await until(lambda: len(sink.writes) == 2)
    assert sink.writes == [["e1"], ["e2"]]
    assert consumer.received == []  # its task never woke
    assert consumer.subscriber.direct_sink() is sink


async def test_a_backlog_goes_out_in_one_write(
    opened: Any, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    sink = Sink()
    await opened(sink)
    sink.hold.clear()
    await post(tenant, bus, settings, "e1")
    await asyncio.wait_for(sink.holding.wait(), timeout=5)  # the hub is busy with e1
    await post(tenant, bus, settings, "e2")
    await post(tenant, bus, settings, "e3")
    sink.hold.set()
    await until(lambda: len(sink.writes) == 2)
    assert sink.writes == [["e1"], ["e2", "e3"]]


async def test_what_the_sink_refuses_comes_through_the_queue_in_order(
    opened: Any, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    sink = Sink()
    consumer = await opened(sink)
    sink.refuse_next = 1
    consumer.proceed.clear()  # once woken, the consumer takes its time
    await post(tenant, bus, settings, "e1")
    await asyncio.wait_for(consumer.arrived.wait(), timeout=5)
    # Until the consumer waits again, nothing may overtake it through the sink.
    await post(tenant, bus, settings, "e2")
    await asyncio.sleep(0.1)
    assert sink.writes == []
    consumer.proceed.set()
    await until(lambda: consumer.received == ["e1", "e2"])
    await consumer.parked()
    await post(tenant, bus, settings, "e3")
    await until(lambda: sink.writes == [["e3"]])
    assert consumer.received == ["e1", "e2"]


async def test_an_entry_that_cannot_be_prepared_takes_those_after_it_to_the_queue(
    opened: Any, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    sink = Sink()
    consumer = await opened(sink)
    sink.unpreparable = {"e3"}
    sink.hold.clear()
    await post(tenant, bus, settings, "e1")
    await asyncio.wait_for(sink.holding.wait(), timeout=5)
    for name in ("e2", "e3", "e4"):
        await post(tenant, bus, settings, name)
    sink.hold.set()
    await until(lambda: consumer.received == ["e3", "e4"])
    assert sink.writes == [["e1"], ["e2"]]


async def test_a_group_prepares_each_entry_once_for_all_its_members(
    opened: Any, tenant: Tenant, bus: Bus, settings: Settings
) -> None:
    group = object()
    sinks = [Sink(group) for _ in range(3)]
    for sink in sinks:
        await opened(sink)
    await post(tenant, bus, settings, "e1")
    await until(lambda: all(sink.writes == [["e1"]] for sink in sinks))
    assert sum(len(sink.prepared) for sink in sinks) == 1
    alone = Sink()  # another group: its own preparation
    await opened(alone)
    await post(tenant, bus, settings, "e2")
    await until(lambda: alone.writes == [["e2"]])
    assert sum(len(sink.prepared) for sink in sinks) == 2
    assert alone.prepared == ["e2"]


async def test_a_subscriber_not_waiting_in_next_gets_its_entries_queued(
    bus: Bus, tenant: Tenant, settings: Settings
) -> None:
    sink = Sink()
    subscriber = await bus.hub.subscribe(workspace_id=tenant.workspace_id, accepts=lambda e: True)
    subscriber.sink = sink  # but nobody is waiting in `next` yet (a replay, say)
    try:
        await post(tenant, bus, settings, "e1")
        await asyncio.sleep(0.1)
        assert sink.writes == []
        assert (await asyncio.wait_for(subscriber.next(), timeout=5)).summary == "e1"
    finally:
        bus.hub.unsubscribe(subscriber)
