"""Runs and tool calls: the state each agent event moves, and the timeline entries it makes.

Each function runs inside the event's transaction, writes domain rows first and leaves
its timeline entries on the returned Step, recorded last (the timeline locks the workspace).
`tool.called` is only planned here (`plan_tool_call`): its rows are inserted with the rest
of its batch (`resolvers.agent_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from models.agent import Run, RunStatus, ToolCall, ToolCallDecision, ToolCallStatus
from models.approval import Approval
from models.ids import new_id
from models.timeline import TimelineEntry, TimelineKind
from opsgraph.settings import Settings
from resolvers import approvals
from resolvers.agent_seen import KnownRun
from resolvers.errors import FieldError, InvalidInput
from resolvers.policy_eval import Decision
from resolvers.rows import new_row
from resolvers.timeline import record_entry
from resolvers.validation import name_of

if TYPE_CHECKING:
    from resolvers.agent_events import AgentEventData

OPEN_CALL_STATUSES = [
    ToolCallStatus.ALLOWED,
    ToolCallStatus.BLOCKED,
    ToolCallStatus.AWAITING_APPROVAL,
    ToolCallStatus.APPROVED,
    ToolCallStatus.REJECTED,
    ToolCallStatus.EXPIRED,
]
_STATUS_FOR_DECISION = {
    ToolCallDecision.ALLOWED: ToolCallStatus.ALLOWED,
    ToolCallDecision.BLOCKED: ToolCallStatus.BLOCKED,
    ToolCallDecision.AWAITING_APPROVAL: ToolCallStatus.AWAITING_APPROVAL,
}
_WORDS = {
    ToolCallDecision.ALLOWED: "allowed",
    ToolCallDecision.BLOCKED: "blocked",
    ToolCallDecision.AWAITING_APPROVAL: "awaiting approval",
}


class EventConflict(Exception):
    """The event contradicts what is stored (a reused eventId, a finished call or run)."""


@dataclass(slots=True)
class Step:
    """What one event did: the run (and tool call) it touched, response fields, entries."""

    run_id: str
    tool_call: ToolCall | None = None
    approval: Approval | None = None
    response: dict[str, Any] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add_entry(self, **values: Any) -> None:
        self.entries.append(values)

    async def record_entries(self) -> list[TimelineEntry]:
        """Record the pending entries (call last in the transaction)."""
        return [await record_entry(**values) for values in self.entries]


def target_of(*sources: Mapping[str, Any], key: str) -> str | None:
    """The first non-empty string under `key` among the sources (input, context, metadata)."""
    for source in sources:
        name = name_of(source.get(key))
        if name is not None:
            return name
    return None


async def _run_for(workspace_id: str, data: AgentEventData) -> Run:
    """The event's run, created running on first sight (a concurrent insert retries the event)."""
    run = await Run.get_or_none(workspace_id=workspace_id, run_key=data.run_key)
    if run is not None:
        return run
    run = new_run(workspace_id=workspace_id, data=data)
    await run.save()
    return run


def new_run(*, workspace_id: str, data: AgentEventData) -> Run:
    """The event's run as first seen: running, started at the event (not stored yet)."""
    return Run(
        id=new_id("run"),
        workspace_id=workspace_id,
        run_key=data.run_key,
        agent_id=data.agent_id,
        status=RunStatus.RUNNING,
        started_at=data.occurred_at,
    )


async def start_run(*, workspace_id: str, data: AgentEventData, sender: str) -> Step:
    """`run.started`: create the run, or fill in what an earlier event (a `tool.called` that
    arrived first) left out; a run that has started is a conflict, as ending one twice is."""
    run = await _run_for(workspace_id, data)
    # The run's row first, to the transaction's end: a concurrent `run.started` (another
    # process's) waits here, then finds this one's entry.
    await Run.filter(id=run.id).select_for_update(no_key=True).only("id")
    started = TimelineEntry.filter(
        subject_type="Run", subject_id=run.id, kind=TimelineKind.RUN_STARTED
    )
    if await started.exists():
        raise EventConflict(f"Run {data.run_key} has already started; it cannot start twice.")
    run.task = data.task or run.task
    run.model = data.model or run.model
    run.reason = data.reason or run.reason
    run.agent_context = data.agent_context or run.agent_context
    run.service = target_of(data.agent_context, data.metadata, key="service") or run.service
    run.environment = (
        target_of(data.agent_context, data.metadata, key="environment") or run.environment
    )
    run.started_at = min(run.started_at, data.occurred_at)
    fields = ["task", "model", "reason", "agent_context", "service", "environment", "started_at"]
    await run.save(update_fields=fields)  # never the status: a finish may land meanwhile
    step = Step(run_id=run.id)
    summary = f"{data.agent_id} started run {data.run_key}"
    step.add_entry(
        **_run_entry(
            run,
            TimelineKind.RUN_STARTED,
            data,
            summary + (f": {run.task}" if run.task else ""),
            sender=sender,
        ),
    )
    return step


async def finish_run(*, workspace_id: str, data: AgentEventData, failed: bool, sender: str) -> Step:
    """`run.completed` / `run.failed`: end a running run; a finished run is a conflict."""
    status = RunStatus.FAILED if failed else RunStatus.COMPLETED
    run = await _run_for(workspace_id, data)
    moved = await Run.filter(id=run.id, status=RunStatus.RUNNING).update(
        status=status, ended_at=data.occurred_at, error=data.error
    )
    if not moved:
        raise EventConflict(f"Run {data.run_key} has already ended; it cannot end twice.")
    await run.refresh_from_db()
    step = Step(run_id=run.id)
    verb = "failed" if failed else "completed"
    summary = f"{data.agent_id} {verb} run {data.run_key}" + (
        f": {data.error}" if data.error else ""
    )
    kind = TimelineKind.RUN_FAILED if failed else TimelineKind.RUN_COMPLETED
    step.add_entry(**_run_entry(run, kind, data, summary[:1000], sender=sender))
    return step


def _run_entry(
    run: Run, kind: TimelineKind, data: AgentEventData, summary: str, *, sender: str
) -> dict[str, Any]:
    """A run's entry; its actor is the name of the key that sent the event (the agent's own
    id, which any key of the workspace may claim, is in the summary and on the run)."""
    return {
        "workspace_id": run.workspace_id,
        "kind": kind,
        "occurred_at": data.occurred_at,
        "summary": summary,
        "service": run.service,
        "environment": run.environment,
        "actor": sender,
        "details": {"runId": run.run_key, "eventId": data.event_id, "status": data.status},
        "subject_type": "Run",
        "subject_id": run.id,
    }


def plan_tool_call(
    *,
    workspace_id: str,
    data: AgentEventData,
    decision: Decision,
    settings: Settings,
    run: KnownRun,
    sender: str,
) -> Step:
    """`tool.called`: the call with its policy decision, held for approval if asked.

    Nothing is stored here: the step carries the call, its approval and its entries for
    the caller to insert (see `resolvers.agent_batch`).
    """
    assert data.call_key is not None and data.tool_name is not None
    sources = (data.input_payload, data.agent_context, data.metadata)
    matched = [match.to_json() for match in decision.matched]
    call = new_row(
        ToolCall,
        id=new_id("tc"),
        workspace_id=workspace_id,
        run_id=run.id,
        call_key=data.call_key,
        agent_id=data.agent_id,
        tool_name=data.tool_name,
        action_hint=data.action_hint,
        input_payload=data.input_payload,
        reason=data.reason,
        agent_context=data.agent_context,
        service=target_of(*sources, key="service") or run.service,
        environment=target_of(*sources, key="environment") or run.environment,
        decision=decision.outcome,
        decision_reason=decision.reason,
        matched_policies=matched,
        status=_STATUS_FOR_DECISION[decision.outcome],
        called_at=data.occurred_at,
    )
    approval: Approval | None = None
    if decision.outcome is ToolCallDecision.AWAITING_APPROVAL:
        approval = approvals.new_approval(tool_call=call, reason=decision.reason, settings=settings)
    step = Step(run_id=run.id, tool_call=call, approval=approval)
    step.response = {
        "toolCallStatus": decision.outcome.value.lower(),
        "reason": decision.reason,
        "approvalId": approval.id if approval else None,
        "approvalUrl": settings.approval_url(approval.id) if approval else None,
        "matchedPolicies": matched,
    }
    step.add_entry(
        **_call_entry(
            call,
            TimelineKind.TOOL_CALLED,
            data,
            f"{data.agent_id} called {call.tool_name} ({_WORDS[decision.outcome]})",
            sender=sender,
            decision=decision.outcome.value,
            reason=decision.reason,
            matchedPolicies=matched,
            approvalId=approval.id if approval else None,
        )
    )
    if approval is not None:
        requested = approvals.requested_entry(
            approval, call, occurred_at=data.occurred_at, actor=sender
        )
        step.add_entry(**requested)
    return step


def _call_entry(
    call: ToolCall,
    kind: TimelineKind,
    data: AgentEventData,
    summary: str,
    *,
    sender: str,
    **details: Any,
) -> dict[str, Any]:
    """A tool call's entry; its actor is the name of the key that sent the event."""
    return {
        "workspace_id": call.workspace_id,
        "kind": kind,
        "occurred_at": data.occurred_at,
        "summary": summary[:1000],
        "service": call.service,
        "environment": call.environment,
        "actor": sender,
        "details": {
            "runId": data.run_key,
            "toolCallId": call.call_key,
            "toolName": call.tool_name,
            "eventId": data.event_id,
            **details,
        },
        "subject_type": "ToolCall",
        "subject_id": call.id,
    }


async def finish_tool_call(
    *, workspace_id: str, data: AgentEventData, failed: bool, sender: str
) -> Step:
    """`tool.completed` / `tool.failed`; completing a call not cleared to run is a violation."""
    assert data.call_key is not None
    run = await Run.get_or_none(workspace_id=workspace_id, run_key=data.run_key)
    call = await ToolCall.get_or_none(run_id=run.id, call_key=data.call_key) if run else None
    if run is None or call is None:
        message = f"no tool.called was recorded for {data.call_key} in run {data.run_key}"
        raise InvalidInput([FieldError("metadata.toolCallId", message)])
    verb = "failed" if failed else "completed"
    closed: dict[str, Any] | None = None  # the entry of its approval, closed unanswered
    while True:  # retry if an approval decision moves the call between read and update
        before = call.status
        if before not in OPEN_CALL_STATUSES:
            done = "completed" if before is ToolCallStatus.COMPLETED else "failed"
            raise EventConflict(f"Tool call {data.call_key} of run {data.run_key} already {done}.")
        at = approvals.clock()  # one reading: the violation and the approval's close agree
        violation = None if failed else await _violation(call, at=at)
        if before is ToolCallStatus.AWAITING_APPROVAL:
            closed = await approvals.close_unanswered(call, ended=verb, at=at)
        moved = await ToolCall.filter(id=call.id, status=before).update(
            status=ToolCallStatus.FAILED if failed else ToolCallStatus.COMPLETED,
            ended_at=data.occurred_at,
            output_payload=data.output_payload,
            error=data.error,
            violation=violation,
        )
        await call.refresh_from_db()
        if moved:
            break
    step = Step(run_id=run.id, tool_call=call)
    kind = TimelineKind.TOOL_FAILED if failed else TimelineKind.TOOL_COMPLETED
    summary = f"{data.agent_id}'s {call.tool_name} call {verb}"
    step.add_entry(**_call_entry(call, kind, data, summary, sender=sender, error=data.error))
    if violation is not None:
        step.add_entry(
            **_call_entry(
                call,
                TimelineKind.POLICY_VIOLATION,
                data,
                violation,
                sender=sender,
                statusBefore=before.value,
                decision=call.decision.value,
                matchedPolicies=call.matched_policies,
            )
        )
    if closed is not None:
        step.add_entry(**closed)
    return step


async def _violation(call: ToolCall, *, at: datetime) -> str | None:
    """Why completing this call breaks policy, or None when it was cleared to run."""
    status = call.status
    name = call.tool_name
    if status is ToolCallStatus.BLOCKED:
        deciding = next((m for m in call.matched_policies if not m.get("dryRun")), None)
        policy = f'policy "{deciding["policyName"]}"' if deciding else "policy"
        return f"Tool call {name} completed although {policy} blocked it."
    if status not in {
        ToolCallStatus.AWAITING_APPROVAL,
        ToolCallStatus.REJECTED,
        ToolCallStatus.EXPIRED,
    }:
        return None
    approval = await Approval.filter(tool_call_id=call.id).first()
    ref = f"approval {approval.id}" if approval else "approval"
    if (
        status is ToolCallStatus.AWAITING_APPROVAL
        and approval
        and approvals.is_due(approval, at=at)
    ):
        status = ToolCallStatus.EXPIRED  # due; its expiry is recorded with this end
    if status is ToolCallStatus.AWAITING_APPROVAL:
        return f"Tool call {name} completed while its {ref} was still pending."
    if status is ToolCallStatus.REJECTED:
        by = f" by {approval.decided_by}" if approval and approval.decided_by else ""
        return f"Tool call {name} completed although its {ref} was rejected{by}."
    return f"Tool call {name} completed although its {ref} expired without a decision."
