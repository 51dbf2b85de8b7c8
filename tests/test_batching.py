"""Batches in lanes (`resolvers.batching.Batcher`): how many run at once, and which wait."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from resolvers.batching import Batcher


class Gated:
    """Batch work that records each batch's items and holds it until released."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []
        self.finished: list[list[str]] = []
        self.gates: dict[str, asyncio.Event] = {}

    def release(self, first_item: str) -> None:
        self.gates.setdefault(first_item, asyncio.Event()).set()

    async def work(self, items: Sequence[str]) -> list[str]:
        self.started.append(list(items))
        await self.gates.setdefault(items[0], asyncio.Event()).wait()
        self.finished.append(list(items))
        return [item.upper() for item in items]

    async def held(self, batcher: Batcher[str, str], item: str) -> asyncio.Future[str]:
        """Submit `item` and wait until its batch has started (it is held there)."""
        future = asyncio.ensure_future(batcher.submit(item))
        await self.until_started(len(self.started) + 1)
        return future

    async def until_started(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self.started) < count:
                await asyncio.sleep(0)


def submit(batcher: Batcher[str, str], *items: str) -> list[asyncio.Future[str]]:
    return [asyncio.ensure_future(batcher.submit(item)) for item in items]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def by_run(item: str) -> str | None:
    """Items are `run:name`; `?:name` acts on something not known."""
    run = item.split(":")[0]
    return None if run == "?" else run


async def test_one_lane_runs_one_batch_and_queues_the_rest_for_the_next() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=10)
    first = await gated.held(batcher, "a:1")
    later = submit(batcher, "b:0", "b:1", "b:2")
    await settle()
    assert gated.started == [["a:1"]]
    gated.release("a:1")
    await gated.until_started(2)
    assert gated.started[1] == ["b:0", "b:1", "b:2"]
    gated.release("b:0")
    assert [await first, *await asyncio.gather(*later)] == ["A:1", "B:0", "B:1", "B:2"]


async def test_a_second_lane_starts_while_the_first_batch_waits() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=10, lanes=2, target=by_run)
    first = await gated.held(batcher, "a:1")
    second = await gated.held(batcher, "b:1")  # not held behind the first batch
    third = submit(batcher, "c:0", "c:1")
    await settle()
    assert gated.started == [["a:1"], ["b:1"]]  # both lanes busy: the rest queue
    gated.release("b:1")
    assert await second == "B:1"
    await gated.until_started(3)
    assert gated.started[2] == ["c:0", "c:1"]
    assert not first.done()
    gated.release("c:0")
    gated.release("a:1")
    assert [await first, *await asyncio.gather(*third)] == ["A:1", "C:0", "C:1"]


async def test_an_item_waits_while_its_target_is_worked_and_the_others_go_ahead() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=10, lanes=2, target=by_run)
    first = await gated.held(batcher, "a:1")
    later = submit(batcher, "a:2", "b:1", "a:3")
    await gated.until_started(2)
    assert gated.started == [["a:1"], ["b:1"]]  # run a's items wait, in order, for a:1
    gated.release("b:1")
    assert await later[1] == "B:1"
    await settle()
    assert gated.started == [["a:1"], ["b:1"]] and not later[0].done()
    gated.release("a:2")
    gated.release("a:1")
    assert [await first, *await asyncio.gather(*later)] == ["A:1", "A:2", "B:1", "A:3"]
    assert gated.finished == [["b:1"], ["a:1"], ["a:2", "a:3"]]


async def test_an_item_of_unknown_target_waits_for_every_batch_and_holds_back_the_rest() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=10, lanes=3, target=by_run)
    first = await gated.held(batcher, "a:1")
    later = submit(batcher, "?:1", "c:1")
    await settle()
    assert gated.started == [["a:1"]]  # c:1 came after an item that may act on run a
    gated.release("?:1")
    gated.release("a:1")
    assert [await first, *await asyncio.gather(*later)] == ["A:1", "?:1", "C:1"]
    assert gated.finished == [["a:1"], ["?:1", "c:1"]]
    # While a batch that may act on anything is worked, nothing else starts.
    gated.gates.clear()
    unknown = await gated.held(batcher, "?:2")
    other = asyncio.ensure_future(batcher.submit("d:1"))
    await settle()
    assert gated.started[3:] == []
    gated.release("d:1")
    gated.release("?:2")
    assert (await unknown, await other) == ("?:2", "D:1")


async def test_a_full_batch_leaves_the_rest_for_the_next() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=2, lanes=2, target=by_run)
    first = await gated.held(batcher, "a:1")
    later = submit(batcher, "b:1", "c:1", "d:1")
    await gated.until_started(2)
    assert gated.started == [["a:1"], ["b:1", "c:1"]]
    for name in ("a:1", "b:1", "d:1"):
        gated.release(name)
    assert [await first, *await asyncio.gather(*later)] == ["A:1", "B:1", "C:1", "D:1"]
    assert gated.started[2] == ["d:1"]


async def test_without_a_target_lanes_never_wait_for_each_other() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=10, lanes=2)
    first = await gated.held(batcher, "a:1")
    again = await gated.held(batcher, "a:2")
    gated.release("a:2")
    assert await again == "A:2"
    gated.release("a:1")
    assert await first == "A:1"


async def test_a_failed_batch_frees_its_target_for_the_next() -> None:
    started: list[list[str]] = []
    gate = asyncio.Event()

    async def work(items: Sequence[str]) -> list[str]:
        started.append(list(items))
        if items[0] == "a:1":
            await gate.wait()
            raise RuntimeError("refused")
        return list(items)

    batcher = Batcher(work, max_items=10, lanes=2, target=by_run)
    first = asyncio.ensure_future(batcher.submit("a:1"))
    async with asyncio.timeout(2):
        while not started:
            await asyncio.sleep(0)
    after = asyncio.ensure_future(batcher.submit("a:2"))
    await settle()
    assert started == [["a:1"]]
    gate.set()
    assert await after == "a:2"
    with pytest.raises(RuntimeError, match="refused"):
        await first


async def test_what_a_finished_batch_held_back_fills_every_free_lane() -> None:
    gated = Gated()
    batcher = Batcher(gated.work, max_items=2, lanes=2, target=by_run)
    first = await gated.held(batcher, "?:1")
    later = submit(batcher, "a:1", "b:1", "c:1")
    await settle()
    assert gated.started == [["?:1"]]
    gated.release("?:1")
    await gated.until_started(3)  # a full batch, and the rest in the other lane at once
    assert gated.started[1:] == [["a:1", "b:1"], ["c:1"]]
    gated.release("c:1")
    gated.release("a:1")
    assert [await first, *await asyncio.gather(*later)] == ["?:1", "A:1", "B:1", "C:1"]


async def test_a_target_that_cannot_be_told_fails_its_caller_alone() -> None:
    def strict(item: str) -> str:
        if item == "bad":
            raise ValueError("no run")
        return item

    gated = Gated()
    batcher = Batcher(gated.work, max_items=10, lanes=2, target=strict)
    with pytest.raises(ValueError, match="no run"):
        async with asyncio.timeout(2):  # not a lane's failure, its caller left waiting
            await batcher.submit("bad")
    good = await gated.held(batcher, "a:1")
    gated.release("a:1")
    assert await good == "A:1" and gated.started == [["a:1"]]
