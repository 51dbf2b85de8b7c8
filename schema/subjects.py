"""What a timeline entry is about: the `TimelineSubject` union and how each kind is loaded.

Each domain adds its type to the union (lazily, to avoid import cycles) and a loader to
`LOADERS`, keyed by the entry's `subject_type`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry

from models.timeline import TimelineEntry as TimelineEntryRow
from resolvers import changes
from schema.change import Change

TimelineSubject = Annotated[Change, strawberry.union("TimelineSubject")]


async def _change(row: TimelineEntryRow) -> Change | None:
    found = await changes.get_change(workspace_id=row.workspace_id, change_id=row.subject_id or "")
    return Change.from_row(found) if found else None


Loader = Callable[[TimelineEntryRow], Awaitable[object | None]]

LOADERS: dict[str, Loader] = {
    "Change": _change,
}


async def load_subject(row: TimelineEntryRow) -> object | None:
    """The entry's subject as its GraphQL type, or None (unknown kind or deleted)."""
    loader = LOADERS.get(row.subject_type or "")
    if loader is None or not row.subject_id:
        return None
    return await loader(row)
