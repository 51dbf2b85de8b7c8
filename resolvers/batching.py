"""Group work that arrives concurrently into one batch: one query or one transaction for
many callers, each of whom gets its own answer once the batch is done.

There is no timer: the first caller starts a batch at once, and everyone who arrives while
it runs joins the next one. Under light load a batch holds one item (no added latency);
under load a batch holds everything that queued while the previous one ran.

A batcher with more than one lane runs that many batches at once: while one waits for the
database, the next one's work goes on. Items that act on the same thing (their `target`)
still go in the order they arrived: an item waits in the queue while a batch being worked
acts on its target, and the items of other targets go ahead of it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from asyncpg.exceptions import DataError  # type: ignore[import-untyped]
from tortoise.exceptions import IntegrityError, OperationalError, ValidationError

T = TypeVar("T")
R = TypeVar("R")

# The batch function returns one outcome per item, in order: a result or an exception.
BatchFunction = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]
# A queued item, the future its caller waits on, and its target (None without `target`).
Queued = tuple[T, asyncio.Future[R], Hashable | None]


class Batcher(Generic[T, R]):
    """Runs `work` on batches of submitted items, at most `lanes` batches at a time per
    event loop (one by default).

    `target` names what an item acts on, where items acting on the same thing must be
    worked in the order they arrived (None from it: it may act on anything). An item
    whose target a batch being worked acts on stays queued, and so does every later item
    of that target, while the others go ahead; an item that may act on anything waits
    for every batch being worked, and everything queued after it waits for it. Without
    `target`, batches of different lanes never wait for each other.
    """

    def __init__(
        self,
        work: BatchFunction[T, R],
        *,
        max_items: int,
        lanes: int = 1,
        target: Callable[[T], Hashable | None] | None = None,
    ) -> None:
        self._work = work
        self.max_items = max(1, max_items)
        self.lanes = max(1, lanes)
        self._target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Queued[T, R]] = []
        self._running = 0  # lanes started and not yet finished
        self._lanes: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references
        self._working: list[frozenset[Hashable] | None] = []  # the targets of each batch

    async def submit(self, item: T) -> R:
        """Queue `item`, wait for its batch, and return its own outcome."""
        return await self._queue([item])[0]

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue `item` now; the future of its own outcome."""
        return self._queue([item])[0]

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """Queue several items at once (no task each); every item's own outcome, in order:
        its result, or the exception it failed with."""
        futures = self._queue(items) if items else []
        if futures:
            await asyncio.wait(futures)
        outcomes: list[R | BaseException] = []
        for future in futures:
            if future.cancelled():  # the batch was cancelled (shut-down): so is the caller
                raise asyncio.CancelledError
            error = future.exception()
            outcomes.append(future.result() if error is None else error)
        return outcomes

    def _queue(self, items: Sequence[T]) -> list[asyncio.Future[R]]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): forget the old one's state
            self._loop, self._pending, self._running = loop, [], 0
            self._lanes, self._working = set(), []
        # Targets first: one that cannot be told fails its caller here, not a lane.
        targets = [self._target(item) for item in items] if self._target else [None] * len(items)
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, targets, strict=True))
        self._start_lanes(loop)
        return futures

    def _start_lanes(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start lanes for what is queued, up to `lanes`. A lane takes its first batch when
        it first runs, so everyone who queues before then joins it."""
        while self._pending and self._running < self.lanes:
            self._running += 1
            # A fresh context: the batch must not run inside the first caller's transaction.
            lane = loop.create_task(self._drain(), context=contextvars.Context())
            self._lanes.add(lane)
            lane.add_done_callback(self._lanes.discard)

    async def _drain(self) -> None:
        """One lane: take a batch and work it, while there is one it may take."""
        try:
            while True:
                batch, targets = self._take()
                if not batch:  # nothing, or only what waits for batches being worked
                    return
                self._working.append(targets)
                try:
                    outcomes = await self._work([entry[0] for entry in batch])
                except Exception as exc:  # the whole batch failed: tell everyone
                    outcomes = [exc] * len(batch)
                except BaseException:  # cancelled (shut-down): so are the callers
                    for entry in batch + self._pending:
                        entry[1].cancel()
                    self._pending = []
                    raise
                finally:
                    self._working.remove(targets)
                _settle(batch, outcomes)
                if self._loop is not None:  # what this batch held back may go at once
                    self._start_lanes(self._loop)
        finally:
            self._running -= 1

    def _take(self) -> tuple[list[Queued[T, R]], frozenset[Hashable] | None]:
        """The next batch, in arrival order, and its targets (None: anything)."""
        if self._target is None or (self.lanes == 1 and not self._working):  # none to wait for
            first = self._pending[: self.max_items]
            del self._pending[: self.max_items]
            return first, frozenset()
        busy: set[Hashable] = set()
        for taken in self._working:
            if taken is None:  # a batch that may act on anything: everything waits
                return [], frozenset()
            busy |= taken
        batch: list[Queued[T, R]] = []
        rest: list[Queued[T, R]] = []
        targets: set[Hashable] | None = set()
        for index, entry in enumerate(self._pending):
            if len(batch) >= self.max_items:
                rest.extend(self._pending[index:])
                break
            target = entry[2]
            if target is None and self._working:  # it waits, and all after it
                rest.extend(self._pending[index:])
                break
            if target is None or targets is None:
                targets = None
            elif target in busy:
                rest.append(entry)  # `busy` holds its later items back too
                continue
            else:
                targets.add(target)
            batch.append(entry)
        self._pending = rest
        return batch, None if targets is None else frozenset(targets)


def _settle(batch: list[Queued[T, R]], outcomes: Sequence[R | BaseException]) -> None:
    for (_, future, _), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


# asyncpg's names for a transaction PostgreSQL aborted to break a deadlock or a
# serialization conflict (Tortoise passes these through untranslated).
_ABORTED = {"DeadlockDetectedError", "SerializationError"}


def refused_by_database(exc: Exception) -> bool:
    """Whether the database (or Tortoise, before sending it) refused a statement of the
    transaction, which was then rolled back: a constraint, a value too long, a deadlock."""
    if isinstance(exc, IntegrityError | OperationalError | ValidationError):
        return True
    return type(exc).__name__ in _ABORTED


def bad_value(exc: BaseException | None) -> bool:
    """A value no database can take, however often it is tried: too long for its column
    (Tortoise's check), text with a lone surrogate (either driver), a NUL or out-of-range
    value (PostgreSQL's "data exception" class)."""
    if isinstance(exc, ValidationError | UnicodeEncodeError):
        return True
    return isinstance(exc, OperationalError) and isinstance(exc.__cause__, DataError)


async def each_alone_if_refused(
    items: Sequence[T],
    store: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    *,
    refused: Callable[[Exception], bool],
) -> list[R | BaseException]:
    """Store a batch with `store` (one transaction); if the database refused it (`refused`:
    nothing was stored), store each item alone, so a bad item fails alone. Any other
    failure (a lost connection) fails the batch: it may have committed, and a retry would
    repeat it."""
    try:
        return list(await store(items))
    except Exception as exc:
        if len(items) == 1 or not refused(exc):
            raise
    outcomes: list[R | BaseException] = []
    for item in items:
        try:
            outcomes.extend(await store([item]))
        except Exception as exc:  # this item's own outcome; the others keep theirs
            outcomes.append(exc)
    return outcomes
