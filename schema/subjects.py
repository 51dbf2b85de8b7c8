"""What a timeline entry is about: the `TimelineSubject` union and how each kind is loaded.

Each domain adds its type to the union (lazily, to avoid import cycles) and a loader to
`LOADERS`, keyed by the entry's `subject_type`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, ForwardRef, TypeAlias

import strawberry

from models.timeline import TimelineEntry as TimelineEntryRow
from resolvers import agent_queries, changes
from resolvers.incidents import get_incident
from schema.change import Change


def lazy(name: str, module: str) -> Any:
    """A union member from a module that imports this one: `strawberry.lazy`, with the
    forward reference bound to that module (a bare `"Name"` would be looked up, and fail,
    in `schema.timeline`, where `TimelineEntry.subject`'s annotation is evaluated)."""
    return Annotated[ForwardRef(name, module=module), strawberry.lazy(module)]


if TYPE_CHECKING:
    from schema.agent import Run, ToolCall
    from schema.approval import Approval
    from schema.incident import Incident

    TimelineSubject: TypeAlias = Change | Incident
else:
    TimelineSubject = Annotated[
        Change
        | lazy("Incident", "schema.incident")
        | lazy("Run", "schema.agent")
        | lazy("ToolCall", "schema.agent")
        | lazy("Approval", "schema.approval"),
        strawberry.union("TimelineSubject"),
    ]


async def _change(row: TimelineEntryRow) -> Change | None:
    found = await changes.get_change(workspace_id=row.workspace_id, change_id=row.subject_id or "")
    return Change.from_row(found) if found else None


async def _incident(row: TimelineEntryRow) -> Incident | None:
    from schema.incident import Incident  # imported here: it imports this module

    found = await get_incident(workspace_id=row.workspace_id, incident_id=row.subject_id or "")
    return Incident.from_row(found) if found else None


async def _run(row: TimelineEntryRow) -> Run | None:
    from schema.agent import Run

    found = await agent_queries.get_run(workspace_id=row.workspace_id, run_id=row.subject_id or "")
    return Run.from_row(found) if found else None


async def _tool_call(row: TimelineEntryRow) -> ToolCall | None:
    from schema.agent import ToolCall

    found = await agent_queries.get_tool_call(
        workspace_id=row.workspace_id, tool_call_id=row.subject_id or ""
    )
    return ToolCall.from_row(found) if found else None


async def _approval(row: TimelineEntryRow) -> Approval | None:
    from schema.approval import Approval

    found = await agent_queries.get_approval(
        workspace_id=row.workspace_id, approval_id=row.subject_id or ""
    )
    return Approval.from_row(found) if found else None


Loader = Callable[[TimelineEntryRow], Awaitable[object | None]]

LOADERS: dict[str, Loader] = {
    "Change": _change,
    "Incident": _incident,
    "Run": _run,
    "ToolCall": _tool_call,
    "Approval": _approval,
}


async def load_subject(row: TimelineEntryRow) -> object | None:
    """The entry's subject as its GraphQL type, or None (unknown kind or deleted)."""
    loader = LOADERS.get(row.subject_type or "")
    if loader is None or not row.subject_id:
        return None
    return await loader(row)
