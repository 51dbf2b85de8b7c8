"""Reading runs, tool calls and their approvals for GraphQL; the `*_by_*` functions read
many at once, for the schema's batch loaders."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from models.agent import RUN_KEY_LENGTH, Run, RunStatus, ToolCall
from models.approval import Approval
from models.ids import could_be_stored
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
    run = None
    if could_be_stored(run_id):
        run = await Run.get_or_none(id=run_id, workspace_id=workspace_id)
    if run is None and could_be_stored(run_id, RUN_KEY_LENGTH):
        run = await Run.get_or_none(run_key=run_id, workspace_id=workspace_id)
    return run


async def run_by_id(*, run_id: str | None) -> Run | None:
    """A run by our id (already known to be the caller's)."""
    return await Run.get_or_none(id=run_id) if run_id else None


async def tool_call_by_id(*, tool_call_id: str | None) -> ToolCall | None:
    """A tool call by our id (already known to be the caller's)."""
    return await ToolCall.get_or_none(id=tool_call_id) if tool_call_id else None


async def get_tool_call(*, workspace_id: str, tool_call_id: str) -> ToolCall | None:
    """One tool call of the workspace by our id."""
    if not could_be_stored(tool_call_id):
        return None
    return await ToolCall.get_or_none(id=tool_call_id, workspace_id=workspace_id)


async def get_approval(*, workspace_id: str, approval_id: str) -> Approval | None:
    """One approval of the workspace as stored (see `approvals.get_approval` to expire it)."""
    return await Approval.get_or_none(id=approval_id, workspace_id=workspace_id)


async def runs_by_ids(*, run_ids: Sequence[str]) -> dict[str, Run]:
    """Runs by our ids (already known to be the caller's), in one query."""
    return {run.id: run for run in await Run.filter(id__in=list(set(run_ids)))}


async def tool_calls_by_ids(*, tool_call_ids: Sequence[str]) -> dict[str, ToolCall]:
    """Tool calls by our ids (already known to be the caller's), in one query."""
    return {call.id: call for call in await ToolCall.filter(id__in=list(set(tool_call_ids)))}


async def tool_calls_by_runs(*, run_ids: Sequence[str], last: int) -> dict[str, list[ToolCall]]:
    """Each run's `last` latest tool calls, in the order they were called, in one query
    that the database limits per run (a run's calls grow without bound: all of them were
    read to answer a page)."""
    found: dict[str, list[ToolCall]] = {run_id: [] for run_id in run_ids}
    ids = sorted(set(run_ids))
    if not ids:
        return found
    # Our own ids, which `new_id` makes of [0-9a-z_] alone: written into the statement
    # (`raw` takes no parameters), each checked first all the same.
    if not all(_OWN_ID.fullmatch(run_id) for run_id in ids):
        raise ValueError("not a run id of ours")
    listed = ", ".join(f"'{run_id}'" for run_id in ids)
    table = ToolCall._meta.db_table
    statement = (
        f"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY run_id"  # nosec B608
        f' ORDER BY called_at DESC, created_at DESC, id DESC) AS latest FROM "{table}"'
        f" WHERE run_id IN ({listed})) AS ranked WHERE latest <= {int(last)}"
        " ORDER BY run_id, called_at, created_at, id"
    )
    calls: list[ToolCall] = await ToolCall.raw(statement)
    for call in calls:
        found[call.run_id].append(call)
    return found


_OWN_ID = re.compile(r"[0-9a-z_]{1,64}")


async def approvals_by_tool_calls(*, tool_call_ids: Sequence[str]) -> dict[str, Approval]:
    """The approval each tool call waited for (calls without one are absent), in one query."""
    rows = await Approval.filter(tool_call_id__in=list(set(tool_call_ids)))
    return {row.tool_call_id: row for row in rows}
