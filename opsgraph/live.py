"""Live fan-out: one bus subscription per process, each new entry read once, handed to
every matching subscriber of its workspace: written by the hub through the subscriber's
sink while it waits (see `Subscriber`), else through its bounded queue.

The bus carries `(workspace, entry id)` notes only. On a note the hub reads the workspace's
entries after the last `seq` it delivered, in commit order, so a lost note is made good by
the next one. A subscriber that falls behind is ended (it resumes with `after`); when the
bus connection is lost every subscriber is ended, so clients reconnect instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from broadcaster._backends.base import BroadcastBackend

from models.timeline import TimelineEntry
from opsgraph.settings import CONNECT_TIMEOUT_SECONDS, LIVE_FETCH_ENTRIES
from resolvers.timeline import current_seq, current_seqs, entries_after

log = logging.getLogger(__name__)

FETCH_BATCH = LIVE_FETCH_ENTRIES
# Direct writes between two turns of the event loop: at thousands of subscribers a pass
# takes tens of milliseconds, and requests (the next entry's POST among them) should not
# wait for all of it.
WRITES_PER_TURN = 256


class LiveError(Exception):
    """Why a live subscription ended; the client resumes with `after`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def lagged() -> LiveError:
    return LiveError(
        "SUBSCRIBER_LAGGED", "The subscriber fell behind and was ended; resume with `after`."
    )


def key_revoked() -> LiveError:
    return LiveError("UNAUTHENTICATED", "The API key was revoked.")


# Revoked key ids remembered per process (so a revoked key cannot open a new subscription
# on a connection it already has); revoked keys never come back, so older ones can go.
REVOKED_KEPT = 10_000


def bus_lost() -> LiveError:
    return LiveError(
        "BUS_UNAVAILABLE", "Live updates were interrupted; reconnect and resume with `after`."
    )


@dataclass(slots=True)
class Share:
    """A group's share of one fetch: its entries as prepared, in order, and what its sinks
    make of them, kept here so that each thing is made once for the whole group."""

    prepared: list[object]
    made: dict[object, object] = field(default_factory=dict)


class DirectSink(Protocol):
    """Where a parked subscriber's entries go without waking its task (see `Subscriber.sink`).

    The subscribers whose sinks share a `group` must accept the same entries (the same
    filter): the hub filters and prepares each entry once for the group, then `write`s the
    group's share to each member.
    """

    @property
    def group(self) -> object: ...

    async def prepare(self, entry: TimelineEntry) -> object | None:
        """What `write` takes for this entry, or None: deliver it through the queue."""

    def write(self, share: Share) -> bool:
        """Deliver the share's entries (in order) now, or none of them and answer False:
        they go through the queue instead."""


class Subscriber:
    """One live consumer: a bounded queue of entries already filtered for it.

    With a `sink`, entries that reach it while its task waits in `next` with nothing queued
    are handed to the sink by the hub, and the task sleeps on: at thousands of subscribers,
    waking a task per subscriber per entry is most of the cost. Anything the sink refuses
    goes through the queue, and nothing goes to the sink again until the task has caught up
    and waits once more, so the order holds.
    """

    def __init__(
        self,
        *,
        workspace_id: str,
        accepts: Callable[[TimelineEntry], bool],
        maxsize: int,
        key_id: str | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self.key_id = key_id  # the API key it was opened with: revoking the key ends it
        self.accepts = accepts
        self.maxsize = maxsize
        self.start_seq = 0
        # Made on the first entry that cannot go to the sink: an empty deque is about 600
        # bytes, and most subscribers of a busy hub never need one.
        self._items: deque[TimelineEntry] | None = None
        # The future `next` waits on (an asyncio.Event would keep a deque of its own, about
        # 600 bytes, for every idle subscriber).
        self._waiter: asyncio.Future[None] | None = None
        self.error: LiveError | None = None
        self.sink: DirectSink | None = None

    def direct_sink(self) -> DirectSink | None:
        """The sink, if an entry may go to it now: the task waits and nothing is queued."""
        waiter = self._waiter
        if waiter is None or waiter.done() or self.error is not None:
            return None
        return self.sink

    def offer(self, entry: TimelineEntry) -> None:
        if self.error is not None or not self.accepts(entry):
            return
        items = self._items
        if items is None:
            items = self._items = deque()
        if len(items) >= self.maxsize:
            self.fail(lagged())
            return
        items.append(entry)
        self._wake()

    def fail(self, error: LiveError) -> None:
        if self.error is None:
            self.error = error
            self._items = None
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> TimelineEntry:
        """The next entry (for its one consumer); raises the LiveError that ended it."""
        while True:
            if self.error is not None:
                raise self.error
            if self._items:
                return self._items.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


async def _deliver(entries: list[TimelineEntry], subscribers: list[Subscriber]) -> None:
    """Hand entries (consecutive, in order) to subscribers: through their sinks where they
    may take them directly, grouped by sink, else through their queues."""
    direct: dict[object, list[tuple[Subscriber, DirectSink]]] = {}
    for subscriber in subscribers:
        sink = subscriber.direct_sink()
        if sink is None:
            for entry in entries:
                subscriber.offer(entry)
        else:
            direct.setdefault(sink.group, []).append((subscriber, sink))
    # Everyone who is to get these entries is settled above, before any wait: one who
    # subscribes meanwhile starts after them. Groups go side by side, so that one slow
    # rendering does not hold up the others' first entry.
    groups = list(direct.values())
    if len(groups) == 1:
        await _deliver_direct(entries, groups[0])
    elif groups:
        await asyncio.gather(*(_deliver_direct(entries, members) for members in groups))


async def _deliver_direct(
    entries: list[TimelineEntry], members: list[tuple[Subscriber, DirectSink]]
) -> None:
    """Write each member of a group the group's share, in one go. The entries after one
    that cannot be prepared, and the whole share for a member whose sink refuses it or who
    is no longer parked when its turn comes, go through the queues, in order.

    Behind a backlog a fetch returns several entries, and each subscriber gets them in one
    write: one system call per subscriber however many entries, so the hub catches up.
    Other tasks get a turn every `WRITES_PER_TURN` members; anyone woken or gone by then
    is caught by the check before its write."""
    first, sink = members[0]
    accepted = [entry for entry in entries if first.accepts(entry)]
    prepared: list[object] = []
    for entry in accepted:
        ready = await _prepare(sink, entry)
        if ready is None:
            break
        prepared.append(ready)
    share, rest = Share(prepared), accepted[len(prepared) :]
    for count, (subscriber, sink) in enumerate(members, 1):
        if count % WRITES_PER_TURN == 0:
            await asyncio.sleep(0)
        written = bool(prepared) and _write(subscriber, sink, share)
        for entry in rest if written else accepted:
            subscriber.offer(entry)


async def _prepare(sink: DirectSink, entry: TimelineEntry) -> object | None:
    try:
        return await sink.prepare(entry)
    except Exception:
        log.exception("preparing a live entry for direct delivery failed")
        return None


def _write(subscriber: Subscriber, sink: DirectSink, share: Share) -> bool:
    if subscriber.direct_sink() is not sink:  # woken or gone since the pass began
        return False
    try:
        return sink.write(share)
    except Exception:
        log.exception("a direct live write failed")
        return False


@dataclass
class _Workspace:
    delivered: int
    subscribers: set[Subscriber] = field(default_factory=set)
    # The id of the entry at `delivered`, once a fetch read it: each fetch reads it again,
    # to notice a timeline restored from an older backup (its seqs taken anew).
    anchor: int | None = None
    dirty: bool = False
    fetching: bool = False


# How long closing a bus connection may take. A host gone silent (a stopped server, a
# network dropping packets) never answers a close: waiting on it held the request that
# published a note, and the hub's reconnection, until TCP gave up.
CLOSE_TIMEOUT_SECONDS = 2.0


async def close_backend(backend: BroadcastBackend) -> None:
    """Close a bus connection, abandoning it after CLOSE_TIMEOUT_SECONDS (asyncpg aborts
    its transport when its close is cancelled); a failure to close is no one's concern."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await backend.disconnect()


def _end_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled and the cancellation came back as an
    error suppressed here: a timeout inside a library (redis-py's reads) that expires as the
    task is cancelled reports TimeoutError instead. The heartbeat then slept on, cancelled,
    and the bus's shutdown waited for it for ever (seen about one shutdown in eight with
    a Redis bus whose connection had just come back)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Hub:
    """The process's single bus listener and its per-workspace subscriber sets."""

    def __init__(
        self,
        backend_factory: Callable[[], BroadcastBackend],
        *,
        channel: str,
        queue_size: int,
        heartbeat_seconds: float,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self._factory = backend_factory
        self._connect_timeout = connect_timeout_seconds
        self._channel = channel
        self._queue_size = queue_size
        self._heartbeat_seconds = heartbeat_seconds
        self._workspaces: dict[str, _Workspace] = {}
        self._backend: BroadcastBackend | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._revoked: OrderedDict[str, None] = OrderedDict()
        self._connection_keys: Counter[str] = Counter()  # open WebSockets' keys, counted

    @property
    def subscriber_count(self) -> int:
        return sum(len(ws.subscribers) for ws in self._workspaces.values())

    async def start(self) -> None:
        """Connect and keep listening (reconnecting after losses) until `stop`."""
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="opsgraph-live-hub")

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        await self._disconnect()
        self._fail_all(LiveError("SHUTTING_DOWN", "The server is shutting down; reconnect."))

    async def _connect(self) -> None:
        backend = self._factory()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await backend.connect()
                await backend.subscribe(self._channel)
        except BaseException:  # what it opened goes with it, not to the garbage collector
            # (broadcaster's Redis backend starts its listener task before it connects: left
            # to the collector, it is reported as "Task was destroyed but it is pending!")
            await close_backend(backend)
            raise
        self._backend = backend
        self._connected.set()

    async def _disconnect(self) -> None:
        backend, self._backend = self._backend, None
        self._connected.clear()
        if backend is not None:
            await close_backend(backend)

    async def _run(self) -> None:
        delay = 0.2
        lost = False  # said so: each failed try to reconnect is not a loss of its own
        while not self._closing:
            try:
                if self._backend is None:
                    await self._connect()
                    delay = 0.2
                    if lost:
                        log.info("live bus connected again")
                        lost = False
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus is gone: end everyone, then reconnect
                if not lost:
                    log.warning(
                        "live bus lost (%r): ending %d subscribers; reconnecting",
                        exc, self.subscriber_count,
                    )  # fmt: skip
                lost = True
                self._fail_all(bus_lost())
                await self._disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen(self) -> None:
        backend = self._backend
        assert backend is not None
        while True:
            event = await asyncio.wait_for(
                backend.next_published(), timeout=self._heartbeat_seconds * 3
            )
            try:
                note = json.loads(event.message)
            except (TypeError, ValueError):
                continue
            workspace_id = note.get("w") if isinstance(note, dict) else None
            if isinstance(workspace_id, str) and workspace_id in self._workspaces:
                self._schedule_fetch(workspace_id)
            revoked = note.get("revoked") if isinstance(note, dict) else None
            if isinstance(revoked, str):
                self.revoke(revoked)

    def revoke(self, key_id: str) -> None:
        """End every subscriber opened with this key, and refuse it new ones."""
        self._revoked[key_id] = None
        while len(self._revoked) > REVOKED_KEPT:
            self._revoked.popitem(last=False)
        for state in self._workspaces.values():
            for subscriber in list(state.subscribers):
                if subscriber.key_id == key_id:
                    subscriber.fail(key_revoked())

    def live_key_ids(self) -> set[str]:
        """The keys the open subscriptions and WebSocket connections were opened with."""
        return set(self._connection_keys) | {
            subscriber.key_id
            for state in self._workspaces.values()
            for subscriber in state.subscribers
            if subscriber.key_id is not None
        }

    def connection_opened(self, key_id: str) -> None:
        """Count a WebSocket connection authenticated with `key_id`: its key is then one of
        `live_key_ids`, rechecked while the connection is open, subscribed or not."""
        self._connection_keys[key_id] += 1

    def connection_closed(self, key_id: str) -> None:
        """Uncount one connection `connection_opened` counted."""
        self._connection_keys[key_id] -= 1
        if self._connection_keys[key_id] <= 0:
            del self._connection_keys[key_id]

    def is_revoked(self, key_id: str) -> bool:
        """Whether a revocation of this key reached this process."""
        return key_id in self._revoked

    async def heartbeat(self) -> None:
        """Every interval: publish a ping, so that a dead listener is noticed by its
        timeout, and read what every followed workspace committed since its last read, so
        that an entry whose note never came (its publisher cut off mid-send, say) reaches
        its subscribers within the interval, not at the workspace's next note."""
        while not self._closing:
            await asyncio.sleep(self._heartbeat_seconds)
            backend = self._backend
            if backend is not None:
                with contextlib.suppress(Exception):
                    await backend.publish(self._channel, '{"ping":1}')
                _end_if_cancelled()
            if self._connected.is_set() and self._workspaces:
                with contextlib.suppress(TimeoutError):  # the next ping must not wait on it
                    await asyncio.wait_for(self._catch_up(), timeout=self._heartbeat_seconds)
                _end_if_cancelled()

    async def _catch_up(self) -> None:
        """Read the workspaces whose `seq` is not what was delivered (one query for all; a
        failure here ends no subscriber: the next note or heartbeat tries again). Past it,
        entries whose note never came; before it, a timeline restored from an older backup,
        which the fetch tells apart from a fetch that delivered more meanwhile."""
        try:
            seqs = await current_seqs(list(self._workspaces))
        except Exception as exc:
            log.warning("the heartbeat's read of committed entries failed: %r", exc)
            return
        for workspace_id, seq in seqs.items():
            state = self._workspaces.get(workspace_id)
            if state is not None and seq != state.delivered:
                self._schedule_fetch(workspace_id)

    def _went_back(self, workspace_id: str, state: _Workspace) -> None:
        """The workspace's timeline no longer holds what this hub delivered last (it ends
        before it, or another entry took its seq): its database was restored from an older
        backup. Entries committed since take seqs it counts as delivered, and would never
        reach a subscriber: end them (they resume with `after`, which the subscription
        refuses, its entry gone, and start over) and follow the workspace afresh."""
        log.warning(
            "the timeline of workspace %s no longer holds the entry this process delivered "
            "last, at %d (a database restored?): its live subscriptions are ended",
            workspace_id, state.delivered,
        )  # fmt: skip
        for subscriber in list(state.subscribers):
            subscriber.fail(lagged())
        if self._workspaces.get(workspace_id) is state:
            del self._workspaces[workspace_id]

    def _schedule_fetch(self, workspace_id: str) -> None:
        state = self._workspaces[workspace_id]
        if state.fetching:
            state.dirty = True
            return
        state.fetching = True
        task = asyncio.create_task(self._fetch(workspace_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, workspace_id: str, state: _Workspace) -> None:
        try:
            while True:
                state.dirty = False
                # From the entry at `delivered` (if any), read again: gone, or another
                # entry than the one delivered there, the timeline was restored.
                again = state.delivered > 0
                rows = await entries_after(
                    workspace_id=workspace_id,
                    after_seq=state.delivered - 1 if again else state.delivered,
                    limit=FETCH_BATCH,
                )
                complete = len(rows) < FETCH_BATCH
                if again:
                    last = rows[0] if rows and rows[0].seq == state.delivered else None
                    if last is None or state.anchor not in (None, last.id):
                        self._went_back(workspace_id, state)
                        return
                    state.anchor = last.id
                    rows = rows[1:]
                fresh = rows
                for index, row in enumerate(rows):
                    if row.seq != state.delivered + 1 + index:
                        fresh = rows[:index]
                        break
                if fresh:
                    state.delivered, state.anchor = fresh[-1].seq, fresh[-1].id
                    await _deliver(fresh, list(state.subscribers))
                if len(fresh) < len(rows):
                    # seq is gapless by construction; should that ever break, end the
                    # subscribers (they resume with `after`) rather than stall or skip.
                    log.error("timeline seq gap in a workspace after %d", state.delivered)
                    state.delivered, state.anchor = rows[-1].seq, rows[-1].id
                    for subscriber in list(state.subscribers):
                        subscriber.fail(lagged())
                    return
                if not state.dirty and complete:
                    return
        except Exception:
            log.exception("live fan-out read failed for a workspace")
            for subscriber in list(state.subscribers):
                subscriber.fail(bus_lost())
        finally:
            state.fetching = False
            if not state.subscribers and self._workspaces.get(workspace_id) is state:
                del self._workspaces[workspace_id]

    @property
    def connected(self) -> bool:
        """Whether the bus is connected (subscriptions can start and hear of new entries)."""
        return self._connected.is_set()

    async def subscribe(
        self,
        *,
        workspace_id: str,
        accepts: Callable[[TimelineEntry], bool],
        key_id: str | None = None,
    ) -> Subscriber:
        """Register a subscriber; entries with seq > its `start_seq` reach it live."""
        if not self._connected.is_set():
            raise bus_lost()
        if key_id is not None and key_id in self._revoked:
            raise key_revoked()
        subscriber = Subscriber(
            workspace_id=workspace_id, accepts=accepts, maxsize=self._queue_size, key_id=key_id
        )
        state = self._workspaces.get(workspace_id)
        if state is None:
            seq = await current_seq(workspace_id=workspace_id)
            state = self._workspaces.get(workspace_id)  # another may have raced us here
            if state is None:
                state = self._workspaces[workspace_id] = _Workspace(delivered=seq)
                # Entries committed before the note reached us are picked up by a read now.
                self._schedule_fetch(workspace_id)
        subscriber.start_seq = state.delivered
        state.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.sink = None
        state = self._workspaces.get(subscriber.workspace_id)
        if state is None:
            return
        state.subscribers.discard(subscriber)
        if not state.subscribers and not state.fetching:
            del self._workspaces[subscriber.workspace_id]

    def _fail_all(self, error: LiveError) -> None:
        for state in self._workspaces.values():
            for subscriber in list(state.subscribers):
                subscriber.fail(error)
        self._workspaces.clear()
