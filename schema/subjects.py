"""What a timeline entry is about: the `TimelineSubject` union, loaded in batches.

Each domain adds its type to the union (lazily, to avoid import cycles), its model to
`resolvers.timeline.SUBJECT_MODELS` and its type to `_from_row`, keyed by `subject_type`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Annotated, Any, ForwardRef, TypeAlias

import strawberry

from models.timeline import TimelineEntry as TimelineEntryRow
from resolvers import timeline
from schema.change import Change
from schema.context import Context
from schema.loaders import context_loader


def lazy(name: str, module: str) -> Any:
    """A union member from a module that imports this one: `strawberry.lazy`, with the
    forward reference bound to that module (a bare `"Name"` would be looked up, and fail,
    in `schema.timeline`, where `TimelineEntry.subject`'s annotation is evaluated)."""
    return Annotated[ForwardRef(name, module=module), strawberry.lazy(module)]


if TYPE_CHECKING:
    from schema.agent import Run, ToolCall
    from schema.approval import Approval
    from schema.incident import Incident

    TimelineSubject: TypeAlias = Change | Incident | Run | ToolCall | Approval
else:
    TimelineSubject = Annotated[
        Change
        | lazy("Incident", "schema.incident")
        | lazy("Run", "schema.agent")
        | lazy("ToolCall", "schema.agent")
        | lazy("Approval", "schema.approval"),
        strawberry.union("TimelineSubject"),
    ]


def _from_row(subject_type: str, row: Any) -> object:
    """A stored subject as its GraphQL type (imported here: those modules import this one)."""
    from schema.agent import Run, ToolCall
    from schema.approval import Approval
    from schema.incident import Incident

    types: dict[str, Any] = {
        "Change": Change,
        "Incident": Incident,
        "Run": Run,
        "ToolCall": ToolCall,
        "Approval": Approval,
    }
    return types[subject_type].from_row(row)


SubjectKey = tuple[str, str, str]  # (workspace id, subject type, subject id)


async def _load(keys: list[SubjectKey]) -> list[object | None]:
    """One query per subject type for every entry resolved in the same tick."""
    wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
    for workspace_id, subject_type, subject_id in keys:
        wanted[(workspace_id, subject_type)].append(subject_id)
    found: dict[SubjectKey, object] = {}
    for (workspace_id, subject_type), ids in wanted.items():
        rows = await timeline.subjects_by_id(
            workspace_id=workspace_id, subject_type=subject_type, subject_ids=ids
        )
        for subject_id, row in rows.items():
            found[(workspace_id, subject_type, subject_id)] = _from_row(subject_type, row)
    return [found.get(key) for key in keys]


async def load_subject(context: Context, row: TimelineEntryRow) -> object | None:
    """The entry's subject as its GraphQL type, or None (unknown kind or deleted).

    Batched per tick, never cached: a WebSocket keeps one context for all its events, and
    a cached subject would go stale between them.
    """
    if row.subject_type not in timeline.SUBJECT_MODELS or not row.subject_id:
        return None
    loader = context_loader(context, "subjects", _load)
    subject: object | None = await loader.load((row.workspace_id, row.subject_type, row.subject_id))
    return subject
