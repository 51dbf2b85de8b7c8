"""Group commit for `tool.called`: the calls that arrive while a batch is being stored are
stored together, all or nothing, taking the workspace's timeline `seq` once.

Each caller reads what is stored and decides its call first (`resolvers.agent_events`);
the batch inserts the new runs, the calls, their approvals and the event rows of every
item (one INSERT per table, `resolvers.rows`) with all their timeline entries: on
PostgreSQL, for one workspace's calls, in a single statement (`record_atomically`), else
in one transaction. If the database refuses the batch (a unique key taken meanwhile, a
value it rejects, a deadlock with another process's batch), nothing was stored and each
item is stored alone, so a failing event fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.agent import AgentEvent, Run
from models.ids import new_id
from models.timeline import TimelineEntry
from opsgraph.settings import Settings
from resolvers import runs
from resolvers.agent_seen import KnownRun, Seen
from resolvers.batching import Batcher, each_alone_if_refused, refused_by_database
from resolvers.policy_eval import Decision
from resolvers.rows import new_row
from resolvers.timeline import NewEntry, record_atomically

if TYPE_CHECKING:
    from resolvers.agent_events import AgentEventData


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A decided `tool.called` event waiting for its batch."""

    workspace_id: str
    sender: str  # the name of the key that sent it
    data: AgentEventData
    decision: Decision
    settings: Settings
    seen: Seen


@dataclass(frozen=True, slots=True)
class StoredCall:
    """A committed `tool.called` event: its response, what it created, its entries."""

    response: dict[str, Any]
    run_id: str
    tool_call_id: str | None
    entries: list[TimelineEntry]


def event_row(*, workspace_id: str, data: AgentEventData, step: runs.Step) -> AgentEvent:
    """Complete the step's response; the event's row, to store after the domain rows.

    A twin of this event committed first makes that insert fail (a retry replays it).
    """
    step.response = {
        "eventId": data.event_id,
        "runId": data.run_key,
        "processed": True,
        **step.response,
    }
    # JSON text: stored as it is (on SQLite the ORM decodes it into the instance first); on
    # PostgreSQL the row object keeps the text, which nothing reads before it is stored.
    body = data.canonical_json()
    return new_row(
        AgentEvent,
        id=new_id("aev"),
        workspace_id=workspace_id,
        event_id=data.event_id,
        event_type=data.event_type.value,
        body_hash=data.body_hash(body),
        body=body,
        response=step.response,
        run_ref=step.run_id,
        tool_call_ref=step.tool_call.id if step.tool_call else None,
    )


def _lock_order(item: PendingCall) -> tuple[str, str, str, str]:
    data = item.data
    return (item.workspace_id, data.run_key, data.call_key or "", data.event_id)


async def _store(items: Sequence[PendingCall]) -> list[StoredCall]:
    """Store every item of a batch all or nothing, one INSERT per table.

    Rows go in sorted by workspace, run and call, so two processes' batches take unique
    keys in one order (a deadlock between them is rare and only retries each item alone),
    before the workspace's `seq` lock, on either path.
    """
    order = sorted(range(len(items)), key=lambda i: _lock_order(items[i]))
    steps: dict[int, runs.Step] = {}
    new_runs: dict[tuple[str, str], Run] = {}
    events: list[AgentEvent] = []
    for index in order:
        item = items[index]
        run = item.seen.run
        if run is None:  # a new run, made once however many of the batch's calls name it
            key = (item.workspace_id, item.data.run_key)
            row = new_runs.get(key) or runs.new_run(workspace_id=item.workspace_id, data=item.data)
            new_runs[key] = row
            run = KnownRun(id=row.id, service=row.service, environment=row.environment)
        step = runs.plan_tool_call(
            workspace_id=item.workspace_id,
            data=item.data,
            decision=item.decision,
            settings=item.settings,
            run=run,
            sender=item.sender,
        )
        events.append(event_row(workspace_id=item.workspace_id, data=item.data, step=step))
        steps[index] = step
    ordered = [steps[index] for index in range(len(items))]
    calls = [steps[index].tool_call for index in order]
    approvals = [steps[index].approval for index in order]
    pending = [NewEntry(**values) for step in ordered for values in step.entries]
    stored = await record_atomically(
        pending,
        inserting=[
            list(new_runs.values()),
            [call for call in calls if call is not None],
            [approval for approval in approvals if approval],
            events,
        ],
    )
    entries = iter(stored)
    return [
        StoredCall(
            response=step.response,
            run_id=step.run_id,
            tool_call_id=step.tool_call.id if step.tool_call else None,
            entries=[next(entries) for _ in step.entries],
        )
        for step in ordered
    ]


async def _store_each(items: Sequence[PendingCall]) -> list[StoredCall | BaseException]:
    """The batch's transaction, or each item alone if the database refused it."""
    return await each_alone_if_refused(items, _store, refused=refused_by_database)


# One batch at a time per process (at most `Settings.batch_max` calls).
CALLS: Batcher[PendingCall, StoredCall] = Batcher(_store_each, max_items=Settings().batch_max)


async def store_call(item: PendingCall) -> StoredCall:
    """Store a decided `tool.called` event with the others that arrive meanwhile."""
    CALLS.max_items = max(1, item.settings.batch_max)
    return await CALLS.submit(item)
