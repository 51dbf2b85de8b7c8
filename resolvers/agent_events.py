"""Agent events (`POST /v1/events`): validation, idempotent `eventId`s, dispatch by type."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.agent import AgentEvent
from models.timeline import TimelineEntry
from opsgraph.settings import Settings
from resolvers import approvals, runs
from resolvers.agent_batch import PendingCall, event_row, store_call
from resolvers.agent_seen import Seen, look_up
from resolvers.auth import Principal, Scope
from resolvers.policies import decide_tool_call
from resolvers.policy_eval import CallFacts, Decision
from resolvers.rows import insert_rows
from resolvers.runs import EventConflict
from resolvers.timeline import Publisher
from resolvers.validation import Checker, TimeWindow

# A concurrent writer can take a run or tool call key between our read and our insert;
# the transaction is then retried from the top (at most this many times).
_ATTEMPTS = 3


class EventType(StrEnum):
    RUN_STARTED = "run.started"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    TOOL_CALLED = "tool.called"
    TOOL_COMPLETED = "tool.completed"
    TOOL_FAILED = "tool.failed"


EVENT_TYPES = [event_type.value for event_type in EventType]
_TOOL_EVENTS = {EventType.TOOL_CALLED, EventType.TOOL_COMPLETED, EventType.TOOL_FAILED}


@dataclass(frozen=True, slots=True)
class AgentEventData:
    """A validated agent event, with the metadata fields its type uses pulled out."""

    event_id: str
    run_key: str
    agent_id: str
    occurred_at: datetime
    event_type: EventType
    status: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    model: str | None = None
    reason: str | None = None
    agent_context: dict[str, Any] = field(default_factory=dict)
    call_key: str | None = None
    tool_name: str | None = None
    action_hint: str | None = None
    input_payload: dict[str, Any] = field(default_factory=dict)
    output_payload: Any = None
    error: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The event as stored and hashed: a retry with the same body hashes the same."""
        return {
            "eventId": self.event_id,
            "runId": self.run_key,
            "agentId": self.agent_id,
            "timestamp": self.occurred_at.isoformat(),
            "eventType": self.event_type.value,
            "status": self.status,
            "metadata": self.metadata,
        }

    def canonical_json(self) -> str:
        """`canonical()` as compact JSON with sorted keys: hashed, and stored as it is."""
        return _CANONICAL.encode(self.canonical())

    def body_hash(self, canonical_json: str | None = None) -> str:
        """The hash of `canonical_json` (this event's own, unless the caller has it)."""
        encoded = self.canonical_json() if canonical_json is None else canonical_json
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


# Made once; the body was parsed from JSON, a tree: no cycle to look for.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


@dataclass(frozen=True, slots=True)
class AgentEventOutcome:
    """The response (first one, for a repeated event) and what it refers to."""

    response: dict[str, Any]
    event_type: EventType
    run_id: str | None
    tool_call_id: str | None
    duplicate: bool


def _error_text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def validate_agent_event(raw: Mapping[str, Any], *, settings: Settings) -> AgentEventData:
    """Check an agent event field by field; raises InvalidInput naming every bad field."""
    check = Checker(raw)
    event_id = check.text("eventId", required=True)
    run_key = check.text("runId", required=True)
    agent_id = check.text("agentId", required=True)
    occurred_at = check.timestamp("timestamp", required=True, window=TimeWindow.of(settings))
    event_type = check.choice("eventType", EVENT_TYPES, required=True)
    status = check.text("status", max_length=64)
    errors_before = len(check.errors)
    metadata = check.json_object("metadata", max_bytes=settings.max_metadata_bytes)
    values: dict[str, Any] = {}
    if event_type is not None and len(check.errors) == errors_before:
        kind = EventType(event_type)
        meta = check.nested("metadata", required=kind in _TOOL_EVENTS)
        if meta is not None and kind is EventType.RUN_STARTED:
            values["task"] = meta.text("task", max_length=settings.max_name_length)
            values["model"] = meta.text("model")
        if meta is not None and kind in _TOOL_EVENTS:
            values["call_key"] = meta.text("toolCallId", required=True)
        if meta is not None and kind is EventType.TOOL_CALLED:
            values["tool_name"] = meta.text("toolName", required=True)
            values["action_hint"] = meta.text("actionHint")
            # Parts of `metadata`, which passed `json_object` whole: their type is left.
            values["input_payload"] = meta.json_object("inputPayload", max_bytes=None)
        if meta is not None and kind in {EventType.RUN_STARTED, EventType.TOOL_CALLED}:
            values["reason"] = meta.text("reason", max_length=settings.max_name_length * 4)
            values["agent_context"] = meta.json_object("agentContext", max_bytes=None)
        if meta is not None and kind in {EventType.TOOL_COMPLETED, EventType.TOOL_FAILED}:
            values["output_payload"] = metadata.get("outputPayload")
        if kind in {EventType.RUN_FAILED, EventType.TOOL_FAILED}:
            values["error"] = _error_text(metadata.get("error"))
    check.raise_if_invalid()
    assert event_id and run_key and agent_id and occurred_at and event_type
    return AgentEventData(
        event_id=event_id,
        run_key=run_key,
        agent_id=agent_id,
        occurred_at=occurred_at,
        event_type=EventType(event_type),
        status=status,
        metadata=metadata,
        **values,
    )


def _replay(existing: AgentEvent, data: AgentEventData) -> AgentEventOutcome:
    if existing.body_hash != data.body_hash():
        raise EventConflict(
            f"Event {data.event_id} was already recorded with a different body; "
            "an eventId identifies one event."
        )
    return AgentEventOutcome(
        response=existing.response,
        event_type=EventType(existing.event_type),
        run_id=existing.run_ref,
        tool_call_id=existing.tool_call_ref,
        duplicate=True,
    )


async def record_agent_event(
    *, principal: Principal, data: AgentEventData, settings: Settings, publisher: Publisher
) -> AgentEventOutcome:
    """Process an event once: a repeat returns the first response, a changed body conflicts."""
    principal.require(Scope.EVENTS_WRITE)
    workspace_id = principal.workspace_id
    if data.event_type in {EventType.TOOL_COMPLETED, EventType.TOOL_FAILED} and data.call_key:
        # Only this call's approval needs to be current; the sweeper expires the rest.
        await approvals.expire_due_for_call(
            workspace_id=workspace_id,
            run_key=data.run_key,
            call_key=data.call_key,
            publisher=publisher,
        )
    for attempt in range(_ATTEMPTS):
        seen = await look_up(
            workspace_id=workspace_id,
            event_id=data.event_id,
            run_key=data.run_key,
            call_key=data.call_key,
            settings=settings,
        )
        if seen.event_pk is not None:
            return _replay(await AgentEvent.get(id=seen.event_pk), data)
        if data.event_type is EventType.TOOL_CALLED and seen.call_recorded:
            # Stored in the same snapshot that lacks this event: another event's call.
            raise EventConflict(
                f"Tool call {data.call_key} of run {data.run_key} was already recorded."
            )
        decision = await _decide(workspace_id, data, seen, settings)
        if decision is not None:
            try:
                stored = await store_call(
                    PendingCall(
                        workspace_id=workspace_id,
                        sender=principal.name,
                        data=data,
                        decision=decision,
                        settings=settings,
                        seen=seen,
                    )
                )
            except IntegrityError:  # a run or call stored meanwhile: look again
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return await _committed(
                publisher,
                workspace_id,
                data,
                entries=stored.entries,
                response=stored.response,
                run_id=stored.run_id,
                tool_call_id=stored.tool_call_id,
            )
        try:
            async with in_transaction() as connection:
                step = await _dispatch(workspace_id, data, sender=principal.name)
                await insert_rows(
                    connection, [event_row(workspace_id=workspace_id, data=data, step=step)]
                )
                entries = await step.record_entries()
        except IntegrityError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        except EventConflict:
            # The conflict may be this very event, recorded meanwhile by a concurrent retry.
            twin = await AgentEvent.get_or_none(workspace_id=workspace_id, event_id=data.event_id)
            if twin is None:
                raise
            return _replay(twin, data)
        return await _committed(
            publisher,
            workspace_id,
            data,
            entries=entries,
            response=step.response,
            run_id=step.run_id,
            tool_call_id=step.tool_call.id if step.tool_call else None,
        )
    raise AssertionError("unreachable")


async def record_agent_events(
    *,
    principal: Principal,
    items: Sequence[AgentEventData],
    settings: Settings,
    publisher: Publisher,
) -> list[AgentEventOutcome | Exception]:
    """Process many events together, each exactly as `record_agent_event` alone; every item
    gets its own outcome or exception, in order.

    An event waits for the earlier items it depends on (see `_after`), as if sent after
    them; the others run at once, so their reads and stores share group commits.
    """
    principal.require(Scope.EVENTS_WRITE)
    after = _after(items)
    done = {earlier: asyncio.Event() for earlier in {i for waits in after for i in waits}}

    async def record(index: int) -> AgentEventOutcome:
        for earlier in after[index]:
            await done[earlier].wait()
        try:
            return await record_agent_event(
                principal=principal, data=items[index], settings=settings, publisher=publisher
            )
        finally:
            if index in done:
                done[index].set()

    outcomes = await asyncio.gather(
        *(record(index) for index in range(len(items))), return_exceptions=True
    )
    results: list[AgentEventOutcome | Exception] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancelled (shut-down)
        results.append(outcome)
    return results


def _after(items: Sequence[AgentEventData]) -> list[list[int]]:
    """For each item, the earlier items it must follow: the last one with its eventId (a
    repeat gets its answer, as a retry would) and those of its run, except that the
    `tool.called` events of one run with different tool calls do not wait for each other."""
    after: list[list[int]] = []
    last_event: dict[str, int] = {}
    last_other: dict[str, int] = {}  # run key: its last item that is not `tool.called`
    calls: dict[str, dict[str | None, int]] = {}  # run key: its `tool.called` since, by call
    for index, data in enumerate(items):
        waits = [
            earlier
            for earlier in (last_event.get(data.event_id), last_other.get(data.run_key))
            if earlier is not None
        ]
        open_calls = calls.setdefault(data.run_key, {})
        if data.event_type is EventType.TOOL_CALLED:
            if (same_call := open_calls.get(data.call_key)) is not None:
                waits.append(same_call)
            open_calls[data.call_key] = index
        else:
            waits.extend(open_calls.values())
            open_calls.clear()
            last_other[data.run_key] = index
        last_event[data.event_id] = index
        after.append(waits)
    return after


async def _committed(
    publisher: Publisher,
    workspace_id: str,
    data: AgentEventData,
    *,
    entries: list[TimelineEntry],
    response: dict[str, Any],
    run_id: str,
    tool_call_id: str | None,
) -> AgentEventOutcome:
    """Announce the committed entries; the event's first response."""
    if entries:  # one note covers them: a hub reads every entry after its last
        newest = max(entry.id for entry in entries)
        await publisher.entry_committed(workspace_id=workspace_id, entry_id=newest)
    return AgentEventOutcome(
        response=response,
        event_type=data.event_type,
        run_id=run_id,
        tool_call_id=tool_call_id,
        duplicate=False,
    )


async def _decide(
    workspace_id: str, data: AgentEventData, seen: Seen, settings: Settings
) -> Decision | None:
    if data.event_type is not EventType.TOOL_CALLED:
        return None
    assert data.tool_name is not None
    # Held to the policies as their conditions are kept, without the spaces around them:
    # an agent calling "deploy " was let past a BLOCK of "deploy".
    call = CallFacts(
        tool_name=data.tool_name.strip(),
        agent_id=data.agent_id.strip(),
        action_hint=None if data.action_hint is None else data.action_hint.strip(),
        input_payload=data.input_payload,
    )
    return await decide_tool_call(
        workspace_id=workspace_id, call=call, settings=settings, version=seen.policy_version
    )


async def _dispatch(workspace_id: str, data: AgentEventData, *, sender: str) -> runs.Step:
    """Every event but `tool.called` (stored in batches, see `resolvers.agent_batch`);
    `sender`: the name of the key that sent it."""
    if data.event_type is EventType.RUN_STARTED:
        return await runs.start_run(workspace_id=workspace_id, data=data, sender=sender)
    if data.event_type in {EventType.RUN_COMPLETED, EventType.RUN_FAILED}:
        failed = data.event_type is EventType.RUN_FAILED
        return await runs.finish_run(
            workspace_id=workspace_id, data=data, failed=failed, sender=sender
        )
    failed = data.event_type is EventType.TOOL_FAILED
    return await runs.finish_tool_call(
        workspace_id=workspace_id, data=data, failed=failed, sender=sender
    )
