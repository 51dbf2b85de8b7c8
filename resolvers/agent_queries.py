"""Reading runs, tool calls and their approvals for GraphQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from models.agent import Run, RunStatus, ToolCall
from models.approval import Approval
from resolvers.keyset import KeyCursor, KeyPage, page


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list; empty fields match every run, times bound `started_at`."""

    statuses: Sequence[RunStatus] = ()
    agent_ids: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


async def list_runs(
    *, workspace_id: str, flt: RunFilter, first: int, after: KeyCursor | None
) -> KeyPage[Run]:
    """Runs newest first (by start), strictly after `after`."""
    query = Run.filter(workspace_id=workspace_id)
    if flt.statuses:
        query = query.filter(status__in=list(flt.statuses))
    if flt.agent_ids:
        query = query.filter(agent_id__in=list(flt.agent_ids))
    if flt.since is not None:
        query = query.filter(started_at__gte=flt.since)
    if flt.until is not None:
        query = query.filter(started_at__lte=flt.until)
    return await page(query, time_field="started_at", first=first, after=after)


async def get_run(*, workspace_id: str, run_id: str) -> Run | None:
    """A run by our id or by the agent's own runId."""
    run = await Run.get_or_none(id=run_id, workspace_id=workspace_id)
    return run or await Run.get_or_none(run_key=run_id, workspace_id=workspace_id)


async def run_by_id(*, run_id: str | None) -> Run | None:
    """A run by our id (already known to be the caller's)."""
    return await Run.get_or_none(id=run_id) if run_id else None


async def tool_call_by_id(*, tool_call_id: str | None) -> ToolCall | None:
    """A tool call by our id (already known to be the caller's)."""
    return await ToolCall.get_or_none(id=tool_call_id) if tool_call_id else None


async def get_tool_call(*, workspace_id: str, tool_call_id: str) -> ToolCall | None:
    """One tool call of the workspace by our id."""
    return await ToolCall.get_or_none(id=tool_call_id, workspace_id=workspace_id)


async def run_of(*, tool_call: ToolCall) -> Run:
    """The run a tool call belongs to."""
    return await Run.get(id=tool_call.run_id)


async def tool_calls_of(*, run_id: str) -> list[ToolCall]:
    """A run's tool calls in the order they were called."""
    return await ToolCall.filter(run_id=run_id).order_by("called_at", "created_at", "id")


async def approval_of(*, tool_call: ToolCall) -> Approval | None:
    """The approval a tool call waited for, if any."""
    return await Approval.filter(tool_call_id=tool_call.id).first()


async def get_approval(*, workspace_id: str, approval_id: str) -> Approval | None:
    """One approval of the workspace as stored (see `approvals.get_approval` to expire it)."""
    return await Approval.get_or_none(id=approval_id, workspace_id=workspace_id)
