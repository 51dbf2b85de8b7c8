"""Live timeline subscriptions through the schema: filtering, resume without gap or
duplicate while entries are being written, slow subscribers, isolation. Both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import strawberry

from models.timeline import TimelineEntry as TimelineEntryRow
from models.timeline import TimelineLabel
from models.workspace import Workspace
from opsgraph import live as live_module
from opsgraph.bus import Bus
from opsgraph.settings import Settings
from resolvers import timeline as timeline_resolvers
from resolvers.auth import Principal, Scope
from resolvers.changes import record_change, validate_change
from schema import subscription as subscription_schema
from schema.context import Context
from tests.conftest import Recorder, Tenant, memory_bus

SUBSCRIBE = """
subscription($filter: TimelineFilter, $after: String) {
  timeline(filter: $filter, after: $after) { cursor summary service }
}
"""


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=5, heartbeat_seconds=1.0) as live:
        yield live


@pytest.fixture
async def quiet_bus() -> AsyncIterator[Bus]:
    """A bus whose heartbeat (and its read of every followed workspace) never comes during
    a test: what reaches a subscriber came by a note."""
    async with memory_bus(queue_size=100, heartbeat_seconds=60) as live:
        yield live


async def subscribed(bus: Bus, count: int = 1) -> None:
    """Until the hub holds `count` subscribers (the stream's first read registers it)."""
    for _ in range(250):
        if bus.hub.subscriber_count >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{bus.hub.subscriber_count} subscribers, not {count}")


async def post(tenant: Tenant, bus: Bus, settings: Settings, name: str, **fields: Any) -> None:
    raw = {
        "name": name,
        "timestamp": "2026-03-04T14:25:00Z",
        "category": "TECHNICAL",
        "source": "ci",
        **fields,
    }
    principal = Principal(
        key_id="k", workspace_id=tenant.workspace_id, name="ci", scopes=frozenset({Scope.ADMIN})
    )
    await record_change(
        principal=principal, data=validate_change(raw, settings=settings), publisher=bus
    )


async def subscribe(
    schema: strawberry.Schema, settings: Settings, bus: Bus, key: str, **variables: Any
) -> AsyncIterator[Any]:
    context = Context(settings=settings, publisher=bus, secret=key, hub=bus.hub)
    stream = await schema.subscribe(SUBSCRIBE, variable_values=variables, context_value=context)
    assert not hasattr(stream, "errors"), stream
    return stream  # type: ignore[no-any-return]


async def next_data(stream: Any) -> dict[str, Any]:
    result = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert result.errors is None, result.errors
    return result.data["timeline"]  # type: ignore[no-any-return]


async def listening(
    schema: strawberry.Schema, settings: Settings, bus: Bus, key: str
) -> tuple[Any, asyncio.Future[dict[str, Any]]]:
    """A timeline subscription the hub holds, and its next entry to come."""
    stream = await subscribe(schema, settings, bus, key)
    first = asyncio.ensure_future(next_data(stream))
    await subscribed(bus)
    return stream, first


async def test_live_entries_match_the_filter(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    stream = await subscribe(schema, settings, bus, tenant.reader, filter={"services": ["api"]})
    first = asyncio.ensure_future(next_data(stream))
    await asyncio.sleep(0.05)
    await post(tenant, bus, settings, "web deploy", service="web")
    await post(tenant, bus, settings, "api deploy", service="api")
    assert (await first)["summary"] == "api deploy"
    await stream.aclose()


async def test_resume_after_a_cursor_has_no_gap_or_duplicate(
    schema: strawberry.Schema, settings: Settings, tenant: Tenant
) -> None:
    async with memory_bus(queue_size=1000, heartbeat_seconds=1.0) as bus:
        total = 60

        async def writer() -> None:
            for index in range(total):
                await post(tenant, bus, settings, f"e{index}")
                await asyncio.sleep(0)

        writing = asyncio.ensure_future(writer())
        received: list[str] = []
        stream = await subscribe(schema, settings, bus, tenant.reader)
        cursor = None
        # Read a few live entries, drop the connection mid-stream, resume from the cursor.
        while len(received) < 10:
            item = await next_data(stream)
            received.append(item["summary"])
            cursor = item["cursor"]
        await stream.aclose()
        await asyncio.sleep(0.01)  # entries keep landing while we're away
        stream = await subscribe(schema, settings, bus, tenant.reader, after=cursor)
        while len(received) < total - int(received[0][1:]):
            received.append((await next_data(stream))["summary"])
        await stream.aclose()
        await writing
        start = int(received[0][1:])
        assert received == [f"e{index}" for index in range(start, total)]


async def test_resuming_from_an_entry_the_hub_has_not_delivered_repeats_nothing(
    schema: strawberry.Schema, settings: Settings, quiet_bus: Bus, tenant: Tenant
) -> None:
    """A client read an entry another process committed, whose note has not reached this
    process yet, and resumes from its cursor here: the hub starts it before that entry,
    and handed it the entry again (a duplicate) once the next note made it read both."""
    held, _ = await listening(schema, settings, quiet_bus, tenant.reader)  # followed
    await post(tenant, Recorder(announced=[]), settings, "elsewhere")  # no note here
    context = Context(settings=settings, publisher=quiet_bus, secret=tenant.reader)
    page = await schema.execute(
        "{ timeline(first: 1) { edges { cursor node { summary } } } }", context_value=context
    )
    [edge] = page.data["timeline"]["edges"]
    assert edge["node"]["summary"] == "elsewhere"
    stream = await subscribe(schema, settings, quiet_bus, tenant.reader, after=edge["cursor"])
    following = asyncio.ensure_future(next_data(stream))
    await subscribed(quiet_bus, 2)
    await post(tenant, quiet_bus, settings, "here")  # its note: the hub reads both
    assert (await following)["summary"] == "here"
    await stream.aclose()
    await held.aclose()


async def test_a_cursor_whose_entry_the_timeline_does_not_hold_is_refused(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant, make_tenant: Any
) -> None:
    """Past the end (from another deployment, or a database restored from an older
    backup), or naming another entry than the one at its `seq` (another workspace's):
    resuming from its `seq` would have skipped, without a word, whatever is committed up
    to it, or what took that `seq` since."""
    await post(tenant, bus, settings, "only")
    context = Context(settings=settings, publisher=bus, secret=tenant.reader)
    page = await schema.execute(
        "{ timeline(first: 1) { edges { cursor } } }", context_value=context
    )
    [edge] = page.data["timeline"]["edges"]
    held = timeline_resolvers.Cursor.decode(edge["cursor"])
    other = await make_tenant()
    await post(other, bus, settings, "elsewhere")
    for cursor in (
        replace(held, seq=2),  # past the end
        replace(held, entry_id=held.entry_id + 10**6),  # another entry at seq 1
    ):
        stream = await subscribe(schema, settings, bus, other.reader, after=cursor.encode())
        result = await asyncio.wait_for(stream.__anext__(), timeout=5)
        assert [error.message for error in result.errors] == [REFUSED_CURSOR]
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
        await stream.aclose()
    stream = await subscribe(schema, settings, bus, other.reader, after=edge["cursor"])
    result = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert [error.message for error in result.errors] == [REFUSED_CURSOR]  # not other's
    await stream.aclose()
    # The entry's id at its seq, but another time: what a restored database (or another
    # deployment of one workspace, where ids and seqs run together) holds at that place.
    elsewhere = replace(held, occurred_at=held.occurred_at + timedelta(microseconds=1))
    stream = await subscribe(schema, settings, bus, tenant.reader, after=elsewhere.encode())
    result = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert [error.message for error in result.errors] == [REFUSED_CURSOR]
    await stream.aclose()
    assert bus.hub.subscriber_count == 0
    # Its own cursor, at the end itself, resumes live.
    stream = await subscribe(schema, settings, bus, tenant.reader, after=edge["cursor"])
    following = asyncio.ensure_future(next_data(stream))
    await subscribed(bus)
    await post(tenant, bus, settings, "next")
    assert (await following)["summary"] == "next"
    await stream.aclose()


REFUSED_CURSOR = (
    "after: this workspace's timeline holds no such entry (a cursor from another "
    "deployment, or from before a database restore?); subscribe without it."
)


@pytest.mark.parametrize("busy", [False, True], ids=["quiet", "busy"])
async def test_a_timeline_restored_from_an_older_backup_ends_its_live_subscriptions(
    schema: strawberry.Schema, settings: Settings, tenant: Tenant, busy: bool
) -> None:
    """The database goes back to an older backup under a running process: entries
    committed from then on take seqs its hub counts as delivered, and never reached a
    subscriber. Quiet, the heartbeat sees the timeline end before what the hub
    delivered; busy (more committed since than the restore took back, and no heartbeat),
    the next fetch finds another entry where the hub's last one was. Either way the
    subscriptions end; a resume from their cursor is refused, a fresh one is live."""
    async with memory_bus(queue_size=100, heartbeat_seconds=60 if busy else 0.2) as bus:
        stream, first = await listening(schema, settings, bus, tenant.reader)
        for name in ("one", "two", "three"):
            await post(tenant, bus, settings, name)
        assert (await first)["summary"] == "one"
        received = [await next_data(stream) for _ in range(2)]
        assert [entry["summary"] for entry in received] == ["two", "three"]

        # The restore: the timeline as it stood after "one".
        later = TimelineEntryRow.filter(workspace_id=tenant.workspace_id, seq__gt=1)
        await TimelineLabel.filter(entry_id__in=await later.values_list("id", flat=True)).delete()
        await later.delete()
        await Workspace.filter(id=tenant.workspace_id).update(timeline_seq=1)
        if busy:  # "a" and "b" take seqs 2 and 3 without a note; "c"'s note reads them
            for name in ("a", "b"):
                await post(tenant, Recorder(announced=[]), settings, name)
            await post(tenant, bus, settings, "c")
        ended = await asyncio.wait_for(stream.__anext__(), timeout=5)
        assert [error.extensions for error in ended.errors] == [{"code": "SUBSCRIBER_LAGGED"}]
        await stream.aclose()

        resumed = await subscribe(
            schema, settings, bus, tenant.reader, after=received[-1]["cursor"]
        )
        refused = await asyncio.wait_for(resumed.__anext__(), timeout=5)
        assert [error.message for error in refused.errors] == [REFUSED_CURSOR]
        await resumed.aclose()
        fresh, following = await listening(schema, settings, bus, tenant.reader)
        await post(tenant, bus, settings, "after the restore")
        assert (await following)["summary"] == "after the restore"
        await fresh.aclose()


async def test_a_slow_subscriber_is_ended_not_buffered(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    stream = await subscribe(schema, settings, bus, tenant.reader)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    for index in range(12):  # the queue holds 5
        await post(tenant, bus, settings, f"e{index}")
    await asyncio.sleep(0.2)
    results = [await first]
    while True:
        try:
            results.append(await asyncio.wait_for(stream.__anext__(), timeout=2))
        except StopAsyncIteration:
            break
    errors = [r.errors for r in results if r.errors]
    assert errors, "a lagging subscriber must get an error"
    assert errors[-1][0].extensions == {"code": "SUBSCRIBER_LAGGED"}
    assert bus.hub.subscriber_count == 0


async def test_a_subscriber_never_sees_another_workspace(
    schema: strawberry.Schema, settings: Settings, bus: Bus, make_tenant: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    stream = await subscribe(schema, settings, bus, b.reader)
    first = asyncio.ensure_future(next_data(stream))
    await asyncio.sleep(0.05)
    await post(a, bus, settings, "secret deploy")
    await post(b, bus, settings, "own deploy")
    assert (await first)["summary"] == "own deploy"
    await stream.aclose()


async def test_subscribing_needs_the_read_scope(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    context = Context(settings=settings, publisher=bus, secret=tenant.writer, hub=bus.hub)
    stream = await schema.subscribe(SUBSCRIBE, context_value=context)
    result = await stream.__anext__()
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}


async def test_a_hole_in_the_sequence_ends_subscribers_instead_of_stalling(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    stream = await subscribe(schema, settings, bus, tenant.reader)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    # Write around `record_entry`, leaving seq 1 missing: the invariant is broken on purpose.
    entry = await TimelineEntryRow.create(
        workspace_id=tenant.workspace_id,
        seq=2,
        kind="CHANGE",
        occurred_at=datetime.now(UTC),
        summary="out of order",
    )
    await bus.entry_committed(workspace_id=tenant.workspace_id, entry_id=entry.id)
    result = await asyncio.wait_for(first, timeout=5)
    assert result.errors[0].extensions == {"code": "SUBSCRIBER_LAGGED"}
    await asyncio.sleep(0.05)
    assert bus.hub.subscriber_count == 0


async def test_an_event_whose_field_cannot_reach_the_database_says_so(
    schema: strawberry.Schema,
    settings: Settings,
    bus: Bus,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a query's would: UNAVAILABLE with a message for the caller, never the driver's
    text (which names the database's host)."""

    async def unreachable(**_: Any) -> dict[str, Any]:
        raise ConnectionRefusedError("could not connect to db-7.internal:5432")

    monkeypatch.setattr(timeline_resolvers, "subjects_by_id", unreachable)
    document = "subscription { timeline { summary subject { ... on Change { name } } } }"
    context = Context(settings=settings, publisher=bus, secret=tenant.reader, hub=bus.hub)
    stream: Any = await schema.subscribe(document, context_value=context)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    await post(tenant, bus, settings, "api deploy")
    result = await asyncio.wait_for(first, timeout=5)
    assert result.data == {"timeline": {"summary": "api deploy", "subject": None}}
    [error] = result.errors
    assert error.message == "The database is unavailable; retry shortly."
    assert error.extensions == {"code": "UNAVAILABLE"}
    await stream.aclose()


class LostNotes:
    """A publisher whose notes never arrive (its connection cut mid-send, say)."""

    async def entry_committed(self, *, workspace_id: str, entry_id: int) -> None:
        return None


async def test_an_entry_whose_note_was_lost_arrives_by_the_heartbeat_s_read(
    schema: strawberry.Schema, settings: Settings, tenant: Tenant
) -> None:
    async with memory_bus(queue_size=5, heartbeat_seconds=0.2) as bus:
        stream, first = await listening(schema, settings, bus, tenant.reader)
        await post(tenant, LostNotes(), settings, "stored, never announced")  # type: ignore[arg-type]
        assert (await asyncio.wait_for(first, timeout=2))["summary"] == "stored, never announced"


async def test_resume_after_more_missed_entries_than_one_read_takes(
    schema: strawberry.Schema,
    settings: Settings,
    tenant: Tenant,
    quiet_bus: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resuming reads what was missed in batches (500; 3 here): every batch, not the first."""
    monkeypatch.setattr(subscription_schema, "REPLAY_BATCH", 3)
    stream, first = await listening(schema, settings, quiet_bus, tenant.reader)
    await post(tenant, quiet_bus, settings, "seen")
    cursor = (await first)["cursor"]
    await stream.aclose()
    for index in range(8):  # while away
        await post(tenant, quiet_bus, settings, f"missed {index}")
    stream = await subscribe(schema, settings, quiet_bus, tenant.reader, after=cursor)
    assert [(await next_data(stream))["summary"] for _ in range(8)] == [
        f"missed {index}" for index in range(8)
    ]
    await stream.aclose()


async def test_a_backlog_larger_than_one_read_reaches_live_subscribers(
    schema: strawberry.Schema,
    settings: Settings,
    tenant: Tenant,
    quiet_bus: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One note may cover more entries than the hub reads at once (500; 3 here): it reads on
    until it has them all, without waiting for another note (or the heartbeat)."""
    monkeypatch.setattr(live_module, "FETCH_BATCH", 3)
    stream, first = await listening(schema, settings, quiet_bus, tenant.reader)
    for index in range(8):  # stored without a note, then one note for all
        await post(tenant, LostNotes(), settings, f"e{index}")  # type: ignore[arg-type]
    rows = TimelineEntryRow.filter(workspace_id=tenant.workspace_id)
    newest = await rows.order_by("-seq").first()
    assert newest is not None
    await quiet_bus.entry_committed(workspace_id=tenant.workspace_id, entry_id=newest.id)
    received = [(await first)["summary"]]
    received += [(await next_data(stream))["summary"] for _ in range(7)]
    assert received == [f"e{index}" for index in range(8)]
    await stream.aclose()


async def test_a_note_arriving_while_the_hub_reads_is_not_lost(
    schema: strawberry.Schema,
    settings: Settings,
    tenant: Tenant,
    quiet_bus: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A note that comes while the hub is reading the workspace (for an earlier note) makes
    it read again once done: the entry it announces arrives without another note."""
    reading, release = asyncio.Event(), asyncio.Event()
    read = live_module.entries_after

    async def slow_read(**where: Any) -> Any:
        rows = await read(**where)
        reading.set()
        await release.wait()
        return rows

    stream, first = await listening(schema, settings, quiet_bus, tenant.reader)
    monkeypatch.setattr(live_module, "entries_after", slow_read)
    try:
        await post(tenant, quiet_bus, settings, "one")
        await asyncio.wait_for(reading.wait(), timeout=5)  # the hub is reading for "one"
        await post(tenant, quiet_bus, settings, "two")  # its note comes now
        await asyncio.sleep(0.1)  # and reaches the hub, still reading
        monkeypatch.setattr(live_module, "entries_after", read)
    finally:
        release.set()
    assert (await first)["summary"] == "one"
    assert (await next_data(stream))["summary"] == "two"
    await stream.aclose()
