"""The pub/sub bus: after each commit a small (workspace, entry id) note is published, and
each process's live hub listens for them.

broadcaster's backends are the transport only (memory, Redis, PostgreSQL LISTEN/NOTIFY).
Its own `Broadcast` wrapper is not used: its per-subscriber queues are unbounded and its
listener dies silently with the connection. The backends below instead raise from
`next_published` when their connection is gone, so the hub can end its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

import asyncpg  # type: ignore[import-untyped]
from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from broadcaster._base import Event
from redis import asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from opsgraph.live import Hub, close_backend
from opsgraph.settings import CONNECT_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

CHANNEL = "opsgraph_timeline"
# A note is published after its commit, in the request's path: an unanswering bus host
# must not hold the answer (the hubs' heartbeat reads make up for a note not sent).
PUBLISH_TIMEOUT_SECONDS = 2.0


def channel_of(url: str) -> str:
    """The channel the notes go on. Redis pub/sub channels are one per server, whatever the
    database number (a note published from database 0 reaches listeners of 7): the number
    of a `redis://…/N` URL other than 0 goes into the channel, so that deployments sharing
    a Redis by its numbers stay apart as they expect. PostgreSQL's are one per database."""
    if urlparse(url).scheme in ("redis", "rediss"):
        number = int(redis.connection.parse_url(url).get("db") or 0)
        if number:
            return f"{CHANNEL}:{number}"
    return CHANNEL


class ConnectionLost(Exception):
    """The bus connection dropped."""


# How long closing the bus waits for its listener to end once cancelled (it ends at once;
# this only bounds a shutdown should a library ever hold on to the cancellation).
LISTENER_END_SECONDS = 1.0  # within `live.CLOSE_TIMEOUT_SECONDS`, which bounds the whole close


class WatchedRedisBackend(RedisBackend):
    """Redis pub/sub that never reconnects silently (a silent reconnect loses notes) and
    reports a dead listener instead of waiting forever."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._conn = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._conn.pubsub()

    async def disconnect(self) -> None:
        # broadcaster cancels its listener without waiting for it: a listener still pending
        # when the loop stops (uvicorn's exit after a failed bind) ends with the closed
        # connection's error, reported with its traceback by asyncio.run. End it first,
        # and take its error (a lost connection's: `next_published` reported it).
        listener, self._listener = self._listener, None
        try:
            if listener is not None:
                listener.cancel()
                await asyncio.wait({listener}, timeout=LISTENER_END_SECONDS)
                if listener.done() and not listener.cancelled():
                    listener.exception()
        finally:  # closed even if this close is itself cancelled (`live.close_backend`)
            try:
                await self._pubsub.aclose()
            finally:
                await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        # broadcaster wakes its listener before subscribing: the listener then finds no
        # subscription, stops, and waits forever. Subscribe first, then wake it.
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def next_published(self) -> Event:
        listener = self._listener
        get = asyncio.ensure_future(self._queue.get())
        waiting: set[asyncio.Future[Any]] = {get}
        if listener is not None:
            waiting.add(listener)
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled too (the bus closing): no read of the queue may stay pending
            if not get.done():
                get.cancel()
        if get in done:
            return get.result()
        assert listener is not None
        error = None if listener.cancelled() else listener.exception()  # retrieved, not logged
        raise ConnectionLost("the Redis pub/sub listener stopped") from error


# What the bus's PostgreSQL connections call themselves in `pg_stat_activity` (the
# database's pool is `db.APPLICATION_NAME`); an `application_name` in the URL wins.
BUS_APPLICATION_NAME = "opsgraph bus"


class WatchedPostgresBackend(PostgresBackend):
    """LISTEN/NOTIFY that reports a terminated connection instead of waiting forever."""

    _LOST = Event(channel="", message="")

    async def connect(self) -> None:
        named = "application_name" in parse_qs(urlparse(self._url).query)
        settings = {} if named else {"application_name": BUS_APPLICATION_NAME}
        self._conn = await asyncpg.connect(self._url, server_settings=settings)
        self._listen_queue: asyncio.Queue[Event] = asyncio.Queue()
        self._conn.add_termination_listener(lambda _conn: self._listen_queue.put_nowait(self._LOST))

    async def next_published(self) -> Event:
        event = await super().next_published()
        if event is self._LOST:
            raise ConnectionLost("the PostgreSQL LISTEN connection closed")
        return event


def make_backend(url: str) -> BroadcastBackend:
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryBackend(url)
    if scheme in ("redis", "rediss"):
        return WatchedRedisBackend(url)
    if scheme in ("postgres", "postgresql"):
        return WatchedPostgresBackend(url.replace("postgresql://", "postgres://", 1))
    raise ValueError(f"OPSGRAPH_BROADCAST_URL: unsupported scheme {scheme!r}")


class Bus:
    """Publishes committed entries and owns the process's live hub."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 1000,
        heartbeat_seconds: float = 5.0,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self._memory = urlparse(url).scheme == "memory"
        make_backend(url)  # fail fast on a bad URL
        self.channel = channel_of(url)
        self._shared: BroadcastBackend | None = None
        self.hub = Hub(
            self._hub_backend,
            channel=self.channel,
            queue_size=queue_size,
            heartbeat_seconds=heartbeat_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
        )
        self._publisher: BroadcastBackend | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # Workspaces whose note is about to go out, with the newest entry it covers.
        self._announcing: dict[str, int] = {}
        self._connecting = asyncio.Lock()

    def _hub_backend(self) -> BroadcastBackend:
        backend = make_backend(self.url)
        if self._memory:
            self._shared = backend  # one process: publisher and listener share the queue
        return backend

    async def connect(self) -> None:
        await self.hub.start()
        self._heartbeat = asyncio.create_task(self.hub.heartbeat(), name="opsgraph-bus-heartbeat")

    async def disconnect(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.hub.stop()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await close_backend(publisher)

    async def _publishing_backend(self) -> BroadcastBackend | None:
        if self._memory:
            return self._shared
        async with self._connecting:  # concurrent first notes must not open two
            if self._publisher is None:
                publisher = make_backend(self.url)
                try:
                    await publisher.connect()
                except BaseException:  # closed, as `Hub._connect` closes its own
                    await close_backend(publisher)
                    raise
                self._publisher = publisher
        return self._publisher

    async def entry_committed(self, *, workspace_id: str, entry_id: int) -> None:
        """Announce a committed entry to every process (best effort: the row is stored).

        Entries announced in the same tick (a group commit's) share one note per
        workspace: a hub reads every entry after the last it delivered, so one note
        covers them all, and a batch costs the bus one message instead of hundreds.
        """
        covered = self._announcing.get(workspace_id)
        self._announcing[workspace_id] = max(entry_id, covered or 0)
        if covered is not None:
            return  # the note on its way covers this entry too
        await asyncio.sleep(0)  # let the rest of this tick's entries join the note
        newest = self._announcing.pop(workspace_id)
        await self._publish({"w": workspace_id, "e": newest})

    async def key_revoked(self, *, key_id: str) -> None:
        """End the live subscriptions of a revoked key: in this process at once, in every
        other one when the note reaches it."""
        self.hub.revoke(key_id)
        await self._publish({"revoked": key_id})

    async def _publish(self, note: dict[str, object]) -> None:
        """Send a note; on a failure (the publishing connection cut: a database or Redis
        restart, an idle timeout) once more on a new connection. A note lost even so is
        made up for by the hubs' reads every heartbeat (`Hub.heartbeat`)."""
        message = json.dumps(note, separators=(",", ":"))
        for attempt in (1, 2):
            backend = None
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                    backend = await self._publishing_backend()
                    if backend is not None:
                        await backend.publish(self.channel, message)
                return
            except Exception as exc:
                # Only the connection this attempt used: another task's retry may already
                # have opened its successor.
                if backend is not None and self._publisher is backend:
                    self._publisher = None
                    await close_backend(backend)
                if attempt == 2:
                    log.warning("could not publish a note on the bus: %r", exc)
