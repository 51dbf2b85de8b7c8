"""Incidents: the `Incident` type with its alert history, timeline and suspect changes,
and the `incidents` / `incident` queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import strawberry

from models.incident import Incident as IncidentRow
from models.incident import IncidentAlert as IncidentAlertRow
from models.incident import IncidentStatus as IncidentStatusModel
from models.incident import Severity as SeverityModel
from resolvers import incident_queries, incidents
from resolvers.auth import Scope
from schema.change import Link
from schema.common import PageInfo, bounded, page_size
from schema.context import Info, public_error
from schema.scalars import JSON
from schema.timeline import TimelineEntry
from schema.workspace import Service

Severity = strawberry.enum(SeverityModel, name="Severity")
IncidentStatus = strawberry.enum(IncidentStatusModel, name="IncidentStatus")

MAX_SUSPECT_WINDOW = timedelta(days=30)


@strawberry.type(description="An image sent with an alert (PagerDuty's `images`).")
class IncidentImage:
    src: str
    href: str | None
    alt: str | None


def _alert_fields(row: IncidentRow | IncidentAlertRow) -> dict[str, Any]:
    """The fields an incident (its latest alert) and each alert share."""
    return {
        "summary": row.summary,
        "source": row.source,
        "severity": row.severity,
        "timestamp": row.sent_at,
        "component": row.component,
        "group": row.alert_group,
        "event_class": row.event_class,
        "custom_details": cast(JSON, row.custom_details),
        "images": [
            IncidentImage(src=image["src"], href=image.get("href"), alt=image.get("alt"))
            for image in row.images
        ],
        "links": [Link(href=link["href"], text=link.get("text")) for link in row.links],
        "client": row.client,
        "client_url": row.client_url,
    }


@strawberry.type(description="One trigger event as received: an incident's alert history.")
class IncidentAlert:
    id: strawberry.ID
    received_at: datetime
    actor: str | None
    summary: str
    source: str
    severity: Severity  # type: ignore[valid-type]
    timestamp: datetime | None = strawberry.field(description="`payload.timestamp` as sent.")
    component: str | None
    group: str | None
    event_class: str | None = strawberry.field(name="class")
    custom_details: JSON
    images: list[IncidentImage]
    links: list[Link]
    client: str | None
    client_url: str | None

    @classmethod
    def from_row(cls, row: IncidentAlertRow) -> IncidentAlert:
        return cls(
            id=strawberry.ID(str(row.id)),
            received_at=row.received_at,
            actor=row.actor,
            **_alert_fields(row),
        )


@strawberry.type(description="Alerts deduplicated by service and dedup key; the latest kept.")
class Incident:
    instance: strawberry.Private[IncidentRow]
    id: strawberry.ID
    incident_key: str
    dedup_key: str
    status: IncidentStatus  # type: ignore[valid-type]
    service: Service
    alert_count: int
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    summary: str
    source: str
    severity: Severity  # type: ignore[valid-type]
    timestamp: datetime | None = strawberry.field(description="The latest `payload.timestamp`.")
    component: str | None
    group: str | None
    event_class: str | None = strawberry.field(name="class")
    custom_details: JSON
    images: list[IncidentImage]
    links: list[Link]
    client: str | None
    client_url: str | None

    @classmethod
    def from_row(cls, row: IncidentRow) -> Incident:
        """Map a row whose service is loaded."""
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            incident_key=row.id,
            dedup_key=row.dedup_key,
            status=row.status,
            service=Service.from_row(row.service),
            alert_count=row.alert_count,
            opened_at=row.opened_at,
            last_seen_at=row.last_seen_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=row.acknowledged_by,
            resolved_at=row.resolved_at,
            resolved_by=row.resolved_by,
            **_alert_fields(row),
        )

    # The incident's history (scope `read`): a key that only sends events sees the incident
    # its event touched, not what else happened to it or on its service.
    @strawberry.field(description="The alert history, one per trigger, newest first (`read`).")
    async def alerts(self, info: Info, first: int | None = None) -> list[IncidentAlert]:
        await info.context.require(Scope.READ)
        rows = await incident_queries.list_alerts(
            incident_id=self.instance.id, first=_page(info, first)
        )
        return [IncidentAlert.from_row(row) for row in rows]

    @strawberry.field(
        description="Its timeline entries (transitions and drops), newest first (`read`)."
    )
    async def timeline(self, info: Info, first: int | None = None) -> list[TimelineEntry]:
        await info.context.require(Scope.READ)
        rows = await incident_queries.incident_entries(
            workspace_id=self.instance.workspace_id,
            incident_id=self.instance.id,
            first=_page(info, first),
        )
        return [TimelineEntry.from_row(row) for row in rows]

    @strawberry.field(
        description="What changed before it: changes and agent tool calls on its service in "
        "the `window` seconds before it opened, newest first (`read`)."
    )
    async def suspect_changes(
        self, info: Info, window: int | None = None, first: int | None = None
    ) -> list[TimelineEntry]:
        await info.context.require(Scope.READ)
        settings = info.context.settings
        span = timedelta(seconds=settings.suspect_window_seconds if window is None else window)
        if not timedelta(0) < span <= MAX_SUSPECT_WINDOW:
            limit = int(MAX_SUSPECT_WINDOW.total_seconds())
            raise public_error("BAD_USER_INPUT", f"window must be 1 to {limit} seconds.")
        rows = await incident_queries.suspect_entries(
            incident=self.instance, window=span, first=_page(info, first)
        )
        return [TimelineEntry.from_row(row) for row in rows]


def _page(info: Info, first: int | None) -> int:
    settings = info.context.settings
    return page_size(first, default=settings.page_size_default, maximum=settings.page_size_max)


@strawberry.input(description="Empty fields match everything; since/until bound `openedAt`.")
class IncidentFilter:
    statuses: list[IncidentStatus] | None = None  # type: ignore[valid-type]
    services: list[str] | None = None
    severities: list[Severity] | None = None  # type: ignore[valid-type]
    since: datetime | None = None
    until: datetime | None = None

    def to_domain(self) -> incident_queries.IncidentFilter:
        return incident_queries.IncidentFilter(
            statuses=tuple(self.statuses or ()),
            services=tuple(self.services or ()),
            severities=tuple(self.severities or ()),
            since=self.since,
            until=self.until,
        )


@strawberry.type
class IncidentEdge:
    cursor: str
    node: Incident


@strawberry.type
class IncidentConnection:
    edges: list[IncidentEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[Incident]:
        return [edge.node for edge in self.edges]


def _cursor(after: str | None) -> incident_queries.IncidentCursor | None:
    if after is None:
        return None
    try:
        return incident_queries.IncidentCursor.decode(after)
    except ValueError as exc:
        raise public_error("BAD_USER_INPUT", str(exc)) from None


@strawberry.type
class IncidentQuery:
    @strawberry.field(description="Incidents matching the filter, newest opened first.")
    async def incidents(
        self,
        info: Info,
        filter: IncidentFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> IncidentConnection:
        principal = await info.context.require(Scope.READ)
        page = await incident_queries.list_incidents(
            workspace_id=principal.workspace_id,
            flt=bounded(info.context.settings, filter or IncidentFilter()).to_domain(),
            first=_page(info, first),
            after=_cursor(after),
        )
        edges = [
            IncidentEdge(
                cursor=incident_queries.IncidentCursor.of(row).encode(),
                node=Incident.from_row(row),
            )
            for row in page.incidents
        ]
        return IncidentConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    @strawberry.field(description="One incident of the caller's workspace, or null.")
    async def incident(self, info: Info, id: strawberry.ID) -> Incident | None:
        principal = await info.context.require(Scope.READ)
        row = await incidents.get_incident(workspace_id=principal.workspace_id, incident_id=id)
        return Incident.from_row(row) if row else None
