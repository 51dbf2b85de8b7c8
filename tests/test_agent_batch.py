"""Group commit of `tool.called` events: a batch stores everything at once, and an event
the database refuses fails alone while the rest of its batch is stored."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError, ValidationError

from models.agent import AgentEvent, Run, RunStatus, ToolCall, ToolCallDecision, ToolCallStatus
from models.approval import Approval, ApprovalStatus
from models.timeline import TimelineEntry
from opsgraph.settings import Settings
from resolvers.agent_batch import PendingCall, StoredCall, _store_each
from resolvers.agent_events import validate_agent_event
from resolvers.agent_seen import KnownRun, Seen, _Key, _look_up_many, look_up
from resolvers.policies import decide_tool_call
from resolvers.policy_eval import CallFacts
from tests.agent_helpers import SEED_POLICY, create_policy, event, post, tool_called
from tests.conftest import GraphQL, Tenant, until_waiting_for_a_lock


async def pending(tenant: Tenant, settings: Settings, body: dict[str, Any]) -> PendingCall:
    """What `record_agent_event` submits for this body: read, decided, not stored."""
    data = validate_agent_event(body, settings=settings)
    assert data.call_key is not None and data.tool_name is not None
    seen = await look_up(
        workspace_id=tenant.workspace_id,
        event_id=data.event_id,
        run_key=data.run_key,
        call_key=data.call_key,
        settings=settings,
    )
    call = CallFacts(
        tool_name=data.tool_name,
        agent_id=data.agent_id,
        action_hint=data.action_hint,
        input_payload=data.input_payload,
    )
    decision = await decide_tool_call(
        workspace_id=tenant.workspace_id, call=call, settings=settings, version=seen.policy_version
    )
    return PendingCall(tenant.workspace_id, "agent-key", data, decision, settings, seen)


async def entries(tenant: Tenant) -> list[tuple[int, str]]:
    rows = await TimelineEntry.filter(workspace_id=tenant.workspace_id).order_by("seq")
    return [(row.seq, row.kind.value) for row in rows]


async def test_one_batch_stores_calls_runs_approvals_and_entries(
    tenant: Tenant, gql: GraphQL, settings: Settings
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    bodies = [
        tool_called("e1", "tc1", run="r1", environment="staging"),
        tool_called("e2", "tc2", run="r1", environment="production"),
        tool_called("e3", "tc3", run="r2"),
    ]
    items = [await pending(tenant, settings, body) for body in bodies]
    assert all(item.seen.run is None for item in items)  # two new runs, one named twice

    outcomes = await _store_each(items)

    assert all(isinstance(outcome, StoredCall) for outcome in outcomes)
    stored = [outcome for outcome in outcomes if isinstance(outcome, StoredCall)]
    assert [s.response["toolCallStatus"] for s in stored] == [
        "allowed",
        "awaiting_approval",
        "allowed",
    ]
    assert stored[1].response["approvalId"] is not None
    assert stored[0].run_id == stored[1].run_id != stored[2].run_id
    assert await Run.filter(workspace_id=tenant.workspace_id).count() == 2
    assert await ToolCall.filter(workspace_id=tenant.workspace_id).count() == 3
    saved = await AgentEvent.get(workspace_id=tenant.workspace_id, event_id="e2")
    assert saved.response == stored[1].response and saved.run_ref == stored[1].run_id
    assert await entries(tenant) == [
        (1, "TOOL_CALLED"),
        (2, "TOOL_CALLED"),
        (3, "APPROVAL_REQUESTED"),
        (4, "TOOL_CALLED"),
    ]
    assert [[e.seq for e in s.entries] for s in stored] == [[1], [2, 3], [4]]


async def test_a_batch_stores_every_column_as_built(
    tenant: Tenant, gql: GraphQL, settings: Settings
) -> None:
    """The batch writes rows with its own statement (`resolvers.rows`): read back through
    the ORM, every stored column equals the row the batch built, JSON, enums, nulls and
    the stored-at time included."""
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    body = tool_called("e1", "tc1", run="r1", environment="production", replicas=3)
    item = await pending(tenant, settings, body)
    before = datetime.now(UTC)

    [outcome] = await _store_each([item])

    assert isinstance(outcome, StoredCall)
    call = await ToolCall.get(workspace_id=tenant.workspace_id, call_key="tc1")
    assert call.id == outcome.tool_call_id
    assert call.input_payload == {"environment": "production", "replicas": 3}
    assert call.output_payload is None and call.error is None
    assert call.decision is ToolCallDecision.AWAITING_APPROVAL
    assert call.status is ToolCallStatus.AWAITING_APPROVAL
    assert [m["policyName"] for m in call.matched_policies] == [SEED_POLICY["name"]]
    assert call.agent_context == {} and call.tool_name == "deploy"
    assert before <= call.created_at <= datetime.now(UTC)
    run = await Run.get(id=call.run_id)
    assert run.run_key == "r1" and run.status is RunStatus.RUNNING and run.ended_at is None
    approval = await Approval.get(tool_call_id=call.id)
    assert approval.status is ApprovalStatus.PENDING and approval.decided_at is None
    assert approval.expires_at > approval.requested_at
    saved = await AgentEvent.get(workspace_id=tenant.workspace_id, event_id="e1")
    assert saved.body == validate_agent_event(body, settings=settings).canonical()
    assert saved.response == outcome.response and saved.tool_call_ref == call.id


async def test_a_batch_is_one_statement_on_postgresql(
    tenant: Tenant, gql: GraphQL, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs, calls, approvals, event rows and entries go in with the entries' statement,
    all or nothing by itself: no BEGIN and COMMIT to wait for."""
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("SQLite stores a batch in a transaction, one statement per table")
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    bodies = [
        tool_called("e1", "tc1", run="r1", environment="staging"),
        tool_called("e2", "tc2", run="r1", environment="production"),  # awaits approval
    ]
    items = [await pending(tenant, settings, body) for body in bodies]
    sent: list[str] = []
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        method = getattr(asyncpg.Connection, name)

        def record(method: Any) -> Any:
            async def recorded(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                sent.append(query)
                return await method(self, query, *args, **kwargs)

            return recorded

        monkeypatch.setattr(asyncpg.Connection, name, record(method))

    outcomes = await _store_each(items)

    assert all(isinstance(outcome, StoredCall) for outcome in outcomes), outcomes
    assert len(sent) == 1, sent
    for model in (Run, ToolCall, Approval, AgentEvent):
        assert f'INSERT INTO "{model._meta.db_table}"' in sent[0], model
    assert "INSERT INTO timeline_entry " in sent[0]
    assert await Approval.filter(tool_call__workspace_id=tenant.workspace_id).count() == 1
    assert [kind for _, kind in await entries(tenant)] == [
        "TOOL_CALLED",
        "TOOL_CALLED",
        "APPROVAL_REQUESTED",
    ]


async def test_a_batch_writes_its_rows_before_it_waits_for_the_workspace(
    tenant: Tenant, settings: Settings, database_url: str
) -> None:
    """Domain rows first, the workspace's lock last, as every other writer does: while
    another transaction holds the workspace, the batch already holds its event's unique
    key (an insert of the same key waits), so neither waits for the other in turn."""
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("SQLite runs one transaction at a time")
    [item] = [await pending(tenant, settings, tool_called("e1", "tc1", run="r1"))]
    other = await asyncpg.connect(database_url)
    try:
        holder = other.transaction()
        await holder.start()
        await other.execute("SELECT 1 FROM workspace WHERE id = $1 FOR UPDATE", tenant.workspace_id)
        batch = asyncio.create_task(_store_each([item]))
        waiting = await until_waiting_for_a_lock(other, query_like="%part0 AS%")
        assert waiting, "the batch never waited for the workspace"
        await other.execute("SET lock_timeout = '300ms'")
        with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
            await other.execute(
                "INSERT INTO agent_event (id, workspace_id, event_id, event_type, body_hash, "
                "body, response, created_at) VALUES ('aev_x', $1, 'e1', 'tool.called', '', "
                "'{}', '{}', now())",
                tenant.workspace_id,
            )
        await holder.rollback()
        [outcome] = await asyncio.wait_for(batch, timeout=10)
    finally:
        await other.close()
    assert isinstance(outcome, StoredCall)
    assert await AgentEvent.filter(workspace_id=tenant.workspace_id).count() == 1


async def test_a_value_the_database_refuses_fails_alone(tenant: Tenant, settings: Settings) -> None:
    """A value the columns cannot hold (here a tool name over its 200 characters, past
    validation as if a limit were raised) makes the batch's statement fail: nothing of the
    batch is kept, then each call is stored alone and only that one fails."""
    bodies = [tool_called(f"e{n}", f"tc{n}", run=f"r{n}") for n in range(3)]
    items = [await pending(tenant, settings, body) for body in bodies]
    too_long = replace(items[1].data, tool_name="t" * 250)
    items[1] = replace(items[1], data=too_long)

    outcomes = await _store_each(items)

    assert isinstance(outcomes[0], StoredCall) and isinstance(outcomes[2], StoredCall)
    assert isinstance(outcomes[1], OperationalError | ValidationError)
    calls = await ToolCall.filter(workspace_id=tenant.workspace_id).values_list(
        "call_key", flat=True
    )
    assert sorted(calls) == ["tc0", "tc2"]
    events = await AgentEvent.filter(workspace_id=tenant.workspace_id).values_list(
        "event_id", flat=True
    )
    assert sorted(events) == ["e0", "e2"]
    assert [kind for _, kind in await entries(tenant)] == ["TOOL_CALLED"] * 2


async def test_a_refused_event_fails_alone(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    started = await post(client, tenant.writer, event("e0", "run.started", run="r1"))
    assert started.status_code == 200
    bodies = [
        tool_called("e1", "tc1", run="r1"),
        tool_called("e2", "tc2", run="r1"),
        tool_called("e3", "tc1", run="r1"),  # the same call again under another eventId
        tool_called("e4", "tc4", run="r1"),
    ]
    items = [await pending(tenant, settings, body) for body in bodies]

    outcomes = await _store_each(items)

    assert [type(outcome) for outcome in outcomes] == [
        StoredCall,
        StoredCall,
        IntegrityError,
        StoredCall,
    ]
    events = await AgentEvent.filter(workspace_id=tenant.workspace_id).values_list(
        "event_id", flat=True
    )
    assert sorted(events) == ["e0", "e1", "e2", "e4"]
    assert await ToolCall.filter(workspace_id=tenant.workspace_id).count() == 3
    assert [kind for _, kind in await entries(tenant)] == ["RUN_STARTED"] + ["TOOL_CALLED"] * 3
    seqs = [seq for seq, _ in await entries(tenant)]
    assert seqs == [1, 2, 3, 4]

    # Through the API the refused event is a conflict, and the stored ones replay.
    again = await post(client, tenant.writer, bodies[2])
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    replay = await post(client, tenant.writer, bodies[0])
    assert replay.status_code == 200 and replay.json()["toolCallStatus"] == "allowed"


async def test_concurrent_calls_are_each_answered_and_stored_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    bodies = [tool_called(f"e{i}", f"tc{i}", run=f"run{i % 3}") for i in range(12)]
    bodies += [bodies[0], bodies[5]]  # retries racing their originals
    responses = await asyncio.gather(*(post(client, tenant.writer, body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * 14
    assert responses[12].json() == responses[0].json()
    assert responses[13].json() == responses[5].json()
    assert await Run.filter(workspace_id=tenant.workspace_id).count() == 3
    assert await ToolCall.filter(workspace_id=tenant.workspace_id).count() == 12
    assert [seq for seq, _ in await entries(tenant)] == list(range(1, 13))


async def test_look_ups_that_arrive_together_share_one_statement(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    stored = await post(client, tenant.writer, tool_called("e1", "tc1", run="r1"))
    assert stored.status_code == 200
    keys = [
        _Key("e1", "tc1", "r1", tenant.workspace_id),  # this very event
        _Key("e2", "tc1", "r1", tenant.workspace_id),  # another event, the same call
        _Key("e3", "tc3", "r1", tenant.workspace_id),  # a new call of a known run
        _Key("e4", "tc4", "r9", tenant.workspace_id),  # a new run
        _Key("e1", "tc1", "r1", "ws_gone"),  # no such workspace
        _Key("e5", None, "r1", tenant.workspace_id),  # not a tool event
    ]

    seen = await _look_up_many(keys)

    event = await AgentEvent.get(workspace_id=tenant.workspace_id, event_id="e1")
    run = await Run.get(workspace_id=tenant.workspace_id, run_key="r1")
    known = KnownRun(id=run.id, service=None, environment=None)
    assert seen == [
        Seen(policy_version=1, event_pk=event.id, run=known, call_recorded=True),
        Seen(policy_version=1, run=known, call_recorded=True),
        Seen(policy_version=1, run=known),
        Seen(policy_version=1),
        Seen(policy_version=0),
        Seen(policy_version=1, run=known),
    ]
