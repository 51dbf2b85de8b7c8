"""The bus over real Redis: entries committed together share one note per workspace;
entries announced apart get one each; a call recording many changes sends one."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import strawberry
from broadcaster._backends.memory import MemoryBackend
from redis import asyncio as redis

from opsgraph.bus import CHANNEL, Bus, WatchedPostgresBackend, WatchedRedisBackend
from opsgraph.live import Hub
from opsgraph.settings import Settings
from schema.context import Context
from tests.conftest import POSTGRES_ADMIN_URL, Tenant
from tests.servers import free_port, postgres_database, run_server
from tests.test_changes import SEED_EVENT, bearer
from tests.test_database_outage import Relay

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    live = Bus(REDIS, heartbeat_seconds=60)
    await live.connect()
    yield live
    await live.disconnect()


@pytest.fixture
async def notes() -> AsyncIterator[Any]:
    """A raw listener on the bus's channel."""
    client = redis.from_url(REDIS)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    yield pubsub
    await pubsub.aclose()
    await client.aclose(close_connection_pool=True)


async def received(pubsub: Any, workspaces: set[str]) -> list[dict[str, Any]]:
    """The notes for these workspaces that arrive within half a second."""
    found = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    while (left := deadline - loop.time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            note = json.loads(message["data"])
            if note.get("w") in workspaces:
                found.append(note)
    return found


def reads_of_a_queue() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if "Queue.get" in repr(task)}


async def test_a_cancelled_wait_for_a_note_leaves_no_task_behind() -> None:
    """Closing the bus cancels its wait for the next note; the queue read it started must
    go too (left pending, it was destroyed later with an error in the log)."""
    backend = WatchedRedisBackend(REDIS)
    await backend.connect()
    try:
        await backend.subscribe("opsgraph-test-" + secrets.token_hex(4))
        others = reads_of_a_queue()
        waiting = asyncio.create_task(backend.next_published())
        await asyncio.sleep(0.05)
        started = reads_of_a_queue() - others
        assert started, "the wait reads the queue in a task of its own"
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)
        assert all(task.done() for task in started)
    finally:
        await backend.disconnect()


async def test_entries_committed_together_share_one_note(bus: Bus, notes: Any) -> None:
    a, b = f"ws_{secrets.token_hex(4)}", f"ws_{secrets.token_hex(4)}"
    await asyncio.gather(
        *(bus.entry_committed(workspace_id=a, entry_id=n) for n in range(1, 21)),
        bus.entry_committed(workspace_id=b, entry_id=7),
    )
    got = await received(notes, {a, b})
    assert sorted(got, key=lambda note: note["w"]) == sorted(
        [{"w": a, "e": 20}, {"w": b, "e": 7}], key=lambda note: note["w"]
    )
    for entry_id in (21, 22):  # one after the other: a note each
        await bus.entry_committed(workspace_id=a, entry_id=entry_id)
    assert await received(notes, {a}) == [{"w": a, "e": 21}, {"w": a, "e": 22}]


async def test_a_call_recording_many_changes_sends_one_note(
    bus: Bus, notes: Any, tenant: Tenant, schema: strawberry.Schema, settings: Settings
) -> None:
    """`recordChanges` (what concurrent `POST /events` run as) stores its changes in one
    group commit: one note covers them, not one per change."""
    inputs = [{**SEED_EVENT, "name": f"deploy {n}"} for n in range(12)]
    context = Context(settings=settings, publisher=bus, secret=tenant.writer)
    result = await schema.execute(
        "mutation($inputs: [ChangeInput!]!) { recordChanges(inputs: $inputs) "
        "{ ... on ChangeRecorded { entryId } } }",
        variable_values={"inputs": inputs},
        context_value=context,
    )
    assert result.errors is None
    newest = max(int(item["entryId"]) for item in result.data["recordChanges"])
    assert await received(notes, {tenant.workspace_id}) == [{"w": tenant.workspace_id, "e": newest}]


async def test_a_note_goes_out_on_a_new_connection_when_the_publisher_s_was_cut() -> None:
    """PostgreSQL: the publishing connection terminated (a restart, an idle timeout) must
    not take the next note with it; it dropped that note silently before."""
    listener = await asyncpg.connect(POSTGRES_ADMIN_URL)
    notes: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: notes.put_nowait(args[3]))
    bus = Bus(POSTGRES_ADMIN_URL, heartbeat_seconds=60)
    await bus.connect()
    workspace_id = f"ws_{secrets.token_hex(4)}"

    async def next_note() -> dict[str, Any]:
        while True:
            note = json.loads(await asyncio.wait_for(notes.get(), timeout=5))
            if note.get("w") == workspace_id:
                return note  # type: ignore[no-any-return]

    try:
        await bus.entry_committed(workspace_id=workspace_id, entry_id=1)
        assert await next_note() == {"w": workspace_id, "e": 1}
        publisher = bus._publisher
        assert isinstance(publisher, WatchedPostgresBackend)
        pid = publisher._conn.get_server_pid()
        assert await listener.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.2)
        await bus.entry_committed(workspace_id=workspace_id, entry_id=2)
        assert await next_note() == {"w": workspace_id, "e": 2}
    finally:
        await bus.disconnect()
        await listener.close()


async def test_redis_database_numbers_keep_deployments_apart() -> None:
    """Redis pub/sub ignores the database number; the bus does not: a revocation announced
    by a deployment on database 0 never reaches one on database 7 (it ended that one's
    subscriptions of any key with the same id), while its own processes hear each other."""
    theirs, ours = f"key_{secrets.token_hex(4)}", f"key_{secrets.token_hex(4)}"
    buses = [Bus(url, heartbeat_seconds=60) for url in (REDIS, REDIS[:-1] + "7", REDIS[:-1] + "7")]
    for bus in buses:
        await bus.connect()
    elsewhere, listening, neighbour = buses
    try:
        await elsewhere.key_revoked(key_id=theirs)
        await neighbour.key_revoked(key_id=ours)  # sent after theirs
        for _ in range(250):
            if listening.hub.is_revoked(ours):
                break
            await asyncio.sleep(0.02)
        assert listening.hub.is_revoked(ours)  # its own deployment's note came …
        await asyncio.sleep(0.2)
        assert not listening.hub.is_revoked(theirs)  # … and the other one's never does
    finally:
        for bus in buses:
            await bus.disconnect()


async def test_a_bus_lost_then_refused_leaves_no_listener_task_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hub's reconnects to a bus that refuses them, and the listener of the connection
    that was lost, leave no task for asyncio to report ("Task was destroyed but it is
    pending!", "Task exception was never retrieved") once they are collected."""
    # A captured "live bus lost" record holds its exception, whose traceback holds the
    # backend that failed: it would never be collected here.
    caplog.set_level(logging.ERROR, logger="opsgraph.live")
    reported: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "_pubsub_listener" in repr(context.get("task") or context.get("future")):
            reported.append(context["message"])

    relay = Relay(free_port(), target=("127.0.0.1", 6379))
    relay.open()
    bus = Bus(f"redis://127.0.0.1:{relay.port}/0", heartbeat_seconds=0.2)
    made = []
    factory = bus.hub._factory
    bus.hub._factory = lambda: made.append(1) or factory()
    loop.set_exception_handler(report)
    try:
        await bus.connect()
        relay.cut()  # the connection lost, then each reconnect refused
        async with asyncio.timeout(30):
            while len(made) < 4:
                await asyncio.sleep(0.1)
            relay.open()
            while not bus.hub.connected:
                await asyncio.sleep(0.1)
        await bus.disconnect()
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(previous)
        relay.close()


async def test_disconnecting_ends_the_listener_before_it_returns() -> None:
    """uvicorn exits at once after a failed bind, right after the app's shutdown: a listener
    still pending then ended with the closed connection's error, printed with its traceback
    by asyncio.run (exit 3 after `serve` on a port in use, with a Redis bus)."""
    backend = WatchedRedisBackend(REDIS)
    await backend.connect()
    await backend.subscribe("opsgraph-test-" + secrets.token_hex(4))
    listener = backend._listener
    assert listener is not None
    await backend.disconnect()
    assert listener.done()


async def test_a_silent_postgres_bus_holds_no_answer_and_the_hub_connects_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bus host that stops answering (its connections neither answer nor close) made a
    note's publisher wait on closing the connection it had given up on, holding the
    request whose entry was already committed, and held the hub's reconnection the same
    way, until TCP gave up: minutes."""
    caplog.set_level(logging.ERROR, logger="opsgraph.live")
    relay = Relay(free_port(), target=("127.0.0.1", 5432))
    relay.open()
    bus = Bus(
        POSTGRES_ADMIN_URL.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"),
        heartbeat_seconds=0.2,
    )
    made = []
    factory = bus.hub._factory
    bus.hub._factory = lambda: made.append(1) or factory()
    try:
        await bus.connect()
        await bus.entry_committed(workspace_id="ws_silent", entry_id=1)  # the publisher opens
        relay.silence()
        async with asyncio.timeout(15):  # publishing gives up after 2 s, closing after 2 more
            await bus.entry_committed(workspace_id="ws_silent", entry_id=2)
            while len(made) < 2 or not bus.hub.connected:  # lost, closed, made anew
                await asyncio.sleep(0.1)
    finally:
        async with asyncio.timeout(15):
            await bus.disconnect()
        relay.close()


def test_an_operator_tells_the_server_s_postgres_connections_apart(tmp_path: Path) -> None:
    """In `pg_stat_activity` the database pool's connections are `opsgraph` and the bus's
    (its LISTEN and its publishing connection) `opsgraph bus`; they had no name at all.
    An `application_name` in either URL wins."""

    async def names(url: str) -> list[str]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()
        return sorted({row["application_name"] for row in rows})

    with postgres_database() as url:
        key = ""
        for query, expected in (("", ["opsgraph", "opsgraph bus"]), ("?application_name=x", ["x"])):
            env = {"OPSGRAPH_DATABASE_URL": url + query, "OPSGRAPH_BROADCAST_URL": url + query}
            with run_server(tmp_path, env) as server:
                key = server.admin_key or key
                # a change posted: its note opens the bus's publishing connection
                posted = httpx.post(f"{server.url}/events", json=SEED_EVENT, headers=bearer(key))
                assert posted.status_code == 201, posted.text
                assert asyncio.run(names(url)) == expected


class _TimingOutWhenCancelled(MemoryBackend):
    """A backend whose publish, cancelled, raises TimeoutError instead: what a library's
    own read timeout does when it expires as its task is cancelled (redis-py's, seen in
    `test_a_bus_lost_then_refused_leaves_no_listener_task_behind` about once in eight)."""

    async def publish(self, channel: str, message: Any) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise TimeoutError from None


async def test_a_heartbeat_whose_cancel_comes_back_as_an_error_still_ends() -> None:
    """The heartbeat suppressed the publish's error and slept on, cancelled: a bus's
    shutdown (`Bus.disconnect`, every server's stop) then waited for it for ever."""
    hub = Hub(
        lambda: _TimingOutWhenCancelled("memory://"),
        channel=CHANNEL,
        queue_size=10,
        heartbeat_seconds=0.01,
    )
    await hub.start()
    heartbeat = asyncio.create_task(hub.heartbeat())
    try:
        await asyncio.sleep(0.2)  # its publish under way
        heartbeat.cancel()
        done, _ = await asyncio.wait({heartbeat}, timeout=2)
        assert heartbeat in done and heartbeat.cancelled()
    finally:
        heartbeat.cancel()
        await hub.stop()
