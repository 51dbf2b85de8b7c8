"""Incident rows and their timeline entries. Events (triggers, acknowledges, resolves) are
stored in batches (`incident_batch`); here are what people do by incident id, each one
transaction that does its write with its entry or returns None because a concurrent writer
got there first (a conditional UPDATE that matched no row), and the entries both build.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.incident import OPEN, Incident, IncidentStatus
from models.timeline import TimelineEntry, TimelineKind
from models.workspace import Service
from resolvers.incident_events import IncidentEvent, Step
from resolvers.timeline import NewEntry, record_entries

SUBJECT = "Incident"

Written = tuple[Incident, TimelineEntry]


async def latest_incident(*, service_id: str, dedup_key: str) -> Incident | None:
    """The most recently opened incident of a dedup key on a service, open or not."""
    found: Incident | None = (
        await Incident.filter(service_id=service_id, dedup_key=dedup_key)
        .order_by("-opened_at", "-id")
        .first()
    )
    return found


def _details(incident: Incident, **extra: Any) -> dict[str, Any]:
    return {
        "incident_key": incident.id,
        "dedup_key": incident.dedup_key,
        "status": incident.status.value,
        "severity": incident.severity.value,
        "alert_count": incident.alert_count,
        **{name: value for name, value in extra.items() if value is not None},
    }


def new_entry(
    incident: Incident, kind: TimelineKind, summary: str, *, actor: str, **extra: Any
) -> NewEntry:
    """An entry about the incident as it stands now (its service must be loaded)."""
    return NewEntry(
        workspace_id=incident.workspace_id,
        kind=kind,
        occurred_at=datetime.now(UTC),
        summary=summary,
        service=incident.service.name,
        actor=actor,
        details=_details(incident, **extra),
        subject_type=SUBJECT,
        subject_id=incident.id,
    )


async def _entry(
    incident: Incident, kind: TimelineKind, summary: str, *, actor: str, **extra: Any
) -> TimelineEntry:
    """Store an entry about the incident inside the caller's transaction."""
    return (await record_entries([new_entry(incident, kind, summary, actor=actor, **extra)]))[0]


_MOVES = {
    Step.ACKNOWLEDGE: (TimelineKind.INCIDENT_ACKNOWLEDGED, "Acknowledged"),
    Step.RESOLVE: (TimelineKind.INCIDENT_RESOLVED, "Resolved"),
}


def transition_entry(incident: Incident, step: Step, *, actor: str, note: str | None) -> NewEntry:
    """The entry of an acknowledge or a resolve, about the incident after it."""
    kind, verb = _MOVES[step]
    return new_entry(incident, kind, f"{verb}: {incident.summary}", actor=actor, note=note)


def drop_entry(
    *,
    workspace_id: str,
    service: Service,
    event: IncidentEvent,
    incident: Incident | None,
    reason: str,
    actor: str,
) -> NewEntry:
    """The entry saying that an event changed nothing, and why."""
    details = {"event_action": event.action.value, "dedup_key": event.dedup_key, "reason": reason}
    if incident is not None:
        details["incident_key"] = incident.id
    return NewEntry(
        workspace_id=workspace_id,
        kind=TimelineKind.INCIDENT_DROPPED,
        occurred_at=datetime.now(UTC),
        summary=f"Dropped {event.action.value} for {event.dedup_key}: {reason}",
        service=service.name,
        actor=actor,
        details=details,
        subject_type=SUBJECT if incident is not None else None,
        subject_id=incident.id if incident is not None else None,
    )


async def transition(
    *, incident: Incident, step: Step, actor: str, note: str | None, service: Service
) -> Written | None:
    """A person acknowledges or resolves, by a conditional UPDATE; None if the status moved
    meanwhile. The time recorded is taken once the row is this transaction's: a trigger
    batch holding it (`resolvers.incident_batch`) commits its alerts first, and they come
    before the move in time as they do on the timeline."""
    async with in_transaction():
        # The row first (`only`: Tortoise leaves FOR UPDATE out of a values_list query).
        await Incident.filter(id=incident.id).select_for_update().only("id")
        now = datetime.now(UTC)
        if step is Step.ACKNOWLEDGE:
            changed = await Incident.filter(id=incident.id, status=IncidentStatus.TRIGGERED).update(
                status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor
            )
        else:
            changed = await Incident.filter(id=incident.id, open_marker=OPEN).update(
                status=IncidentStatus.RESOLVED, open_marker=None, resolved_at=now, resolved_by=actor
            )
        if not changed:
            return None
        fresh = await Incident.get(id=incident.id)
        fresh.service = service
        [entry] = await record_entries([transition_entry(fresh, step, actor=actor, note=note)])
    return fresh, entry


async def annotate(
    *, incident: Incident, actor: str, note: str, expect: IncidentStatus | None = None
) -> tuple[Incident, TimelineEntry] | None:
    """Add a person's note to the incident's timeline (its service must be loaded): the
    incident as it is when the note is written, and the note's entry. The row is read again
    under lock, so an acknowledge or resolve committed meanwhile comes before the note on
    the timeline and the note records the status it left. With `expect`, None (nothing
    written) if the incident's status is another by then."""
    async with in_transaction():
        fresh = await Incident.filter(id=incident.id).select_for_update().first()
        assert fresh is not None  # incidents are never deleted but with their workspace
        if expect is not None and fresh.status is not expect:
            return None
        fresh.service = incident.service
        entry = await _entry(fresh, TimelineKind.INCIDENT_ANNOTATED, note, actor=actor, note=note)
    return fresh, entry
