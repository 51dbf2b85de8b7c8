"""Reading incidents: filtered cursor pages, alert history, timeline, suspect changes."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tortoise.expressions import Q

from models.incident import Incident, IncidentAlert, IncidentStatus, Severity
from models.timeline import TimelineEntry, TimelineKind
from resolvers.incident_rows import SUBJECT
from resolvers.keyset import decode_position
from resolvers.timeline import EPOCH

SUSPECT_KINDS = (TimelineKind.CHANGE, TimelineKind.TOOL_CALLED)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """Empty fields match everything; `since`/`until` bound when the incident opened."""

    statuses: Sequence[IncidentStatus] = ()
    services: Sequence[str] = ()
    severities: Sequence[Severity] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class IncidentCursor:
    """A position in the newest-opened-first order: (opened_at, id)."""

    opened_at: datetime
    incident_id: str

    def encode(self) -> str:
        micros = (self.opened_at - EPOCH) // timedelta(microseconds=1)
        raw = f"i1:{micros}:{self.incident_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> IncidentCursor:
        """Parse an opaque cursor; raises ValueError on anything malformed."""
        return cls(*decode_position(value, "i1"))

    @classmethod
    def of(cls, incident: Incident) -> IncidentCursor:
        return cls(incident.opened_at, incident.id)


@dataclass(slots=True)
class IncidentPage:
    incidents: list[Incident] = field(default_factory=list)
    has_next_page: bool = False

    @property
    def end_cursor(self) -> str | None:
        return IncidentCursor.of(self.incidents[-1]).encode() if self.incidents else None


async def list_incidents(
    *, workspace_id: str, flt: IncidentFilter, first: int, after: IncidentCursor | None = None
) -> IncidentPage:
    """A page of matching incidents, newest opened first, their services loaded."""
    query = Incident.filter(workspace_id=workspace_id)
    if flt.statuses:
        query = query.filter(status__in=list(flt.statuses))
    if flt.services:
        query = query.filter(service__name__in=list(flt.services))
    if flt.severities:
        query = query.filter(severity__in=list(flt.severities))
    if flt.since is not None:
        query = query.filter(opened_at__gte=flt.since)
    if flt.until is not None:
        query = query.filter(opened_at__lte=flt.until)
    if after is not None:
        query = query.filter(
            Q(opened_at__lt=after.opened_at)
            | Q(opened_at=after.opened_at, id__lt=after.incident_id)
        )
    rows: list[Incident] = (
        await query.select_related("service").order_by("-opened_at", "-id").limit(first + 1)
    )
    return IncidentPage(incidents=rows[:first], has_next_page=len(rows) > first)


async def list_alerts(*, incident_id: str, first: int) -> list[IncidentAlert]:
    """The incident's alert history (one row per trigger), newest first."""
    rows: list[IncidentAlert] = (
        await IncidentAlert.filter(incident_id=incident_id)
        .order_by("-received_at", "-id")
        .limit(first)
    )
    return rows


async def incident_entries(
    *, workspace_id: str, incident_id: str, first: int
) -> list[TimelineEntry]:
    """The incident's timeline entries (triggers, updates, transitions, drops), newest first."""
    rows: list[TimelineEntry] = (
        await TimelineEntry.filter(
            workspace_id=workspace_id, subject_type=SUBJECT, subject_id=incident_id
        )
        .order_by("-occurred_at", "-id")
        .limit(first)
    )
    return rows


async def suspect_entries(
    *, incident: Incident, window: timedelta, first: int
) -> list[TimelineEntry]:
    """Changes and agent tool calls on the incident's service in `window` before it opened,
    newest first (the service must be loaded)."""
    rows: list[TimelineEntry] = (
        await TimelineEntry.filter(
            workspace_id=incident.workspace_id,
            service=incident.service.name,
            kind__in=list(SUSPECT_KINDS),
            occurred_at__gte=incident.opened_at - window,
            occurred_at__lte=incident.opened_at,
        )
        .order_by("-occurred_at", "-id")
        .limit(first)
    )
    return rows
