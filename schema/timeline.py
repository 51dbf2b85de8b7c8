"""The timeline: entries, their filter and the `timeline` query."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry

from models.timeline import TimelineEntry as TimelineEntryRow
from models.timeline import TimelineKind as TimelineKindModel
from resolvers import timeline
from resolvers.auth import Scope
from schema.common import PageInfo, bounded, page_size
from schema.context import Info, public_error
from schema.scalars import JSON
from schema.subjects import TimelineSubject, load_subject

TimelineKind = strawberry.enum(TimelineKindModel, name="TimelineKind")
Match = strawberry.enum(timeline.Match, name="Match")


@strawberry.input(description="Empty fields match everything; labels match ANY by default.")
class TimelineFilter:
    kinds: list[TimelineKind] | None = None  # type: ignore[valid-type]
    services: list[str] | None = None
    environments: list[str] | None = None
    labels: list[str] | None = None
    labels_match: Match | None = timeline.Match.ANY  # type: ignore[valid-type]  # null: ANY
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    def to_domain(self) -> timeline.TimelineFilter:
        return timeline.TimelineFilter(
            kinds=tuple(self.kinds or ()),
            services=tuple(self.services or ()),
            environments=tuple(self.environments or ()),
            labels=tuple(self.labels or ()),
            labels_match=self.labels_match or timeline.Match.ANY,
            since=self.since,
            until=self.until,
            text=self.text or None,
        )


@strawberry.type(description="One happening: a change, an incident transition, an agent action.")
class TimelineEntry:
    instance: strawberry.Private[TimelineEntryRow]
    id: strawberry.ID
    cursor: str
    kind: TimelineKind  # type: ignore[valid-type]
    occurred_at: datetime
    summary: str
    service: str | None
    environment: str | None
    labels: list[str]
    actor: str | None
    details: JSON | None

    @classmethod
    def from_row(cls, row: TimelineEntryRow, *, cursor: str | None = None) -> TimelineEntry:
        """The entry of a stored row; `cursor`: the row's, where the caller has it."""
        return cls(
            instance=row,
            id=strawberry.ID(str(row.id)),
            cursor=timeline.Cursor.of(row).encode() if cursor is None else cursor,
            kind=row.kind,
            occurred_at=row.occurred_at,
            summary=row.summary,
            service=row.service,
            environment=row.environment,
            labels=list(row.labels),
            actor=row.actor,
            details=cast(JSON, row.details),
        )

    @strawberry.field(description="What the entry is about.")
    async def subject(self, info: Info) -> TimelineSubject | None:
        return cast("TimelineSubject | None", await load_subject(info.context, self.instance))


@strawberry.type
class TimelineEdge:
    cursor: str
    node: TimelineEntry


@strawberry.type
class TimelineConnection:
    edges: list[TimelineEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[TimelineEntry]:
        return [edge.node for edge in self.edges]


def parse_cursor(after: str | None) -> timeline.Cursor | None:
    if after is None:
        return None
    try:
        return timeline.Cursor.decode(after)
    except ValueError as exc:
        raise public_error("BAD_USER_INPUT", str(exc)) from None


@strawberry.type
class TimelineQuery:
    @strawberry.field(description="Entries matching the filter, newest first.")
    async def timeline(
        self,
        info: Info,
        filter: TimelineFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> TimelineConnection:
        principal = await info.context.require(Scope.READ)
        settings = info.context.settings
        page = await timeline.list_entries(
            workspace_id=principal.workspace_id,
            flt=bounded(info.context.settings, filter or TimelineFilter()).to_domain(),
            first=page_size(
                first, default=settings.page_size_default, maximum=settings.page_size_max
            ),
            after=parse_cursor(after),
        )
        edges = []
        for row in page.entries:  # the edge's cursor is its node's: encoded once
            cursor = timeline.Cursor.of(row).encode()
            edges.append(
                TimelineEdge(cursor=cursor, node=TimelineEntry.from_row(row, cursor=cursor))
            )
        return TimelineConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


__all__ = ["TimelineQuery", "TimelineEntry", "TimelineFilter"]
