"""Incidents: applying events (dedup, acknowledge, resolve) and people's transitions.

Events are decided with the pure `plan_event` and stored in batches (`incident_batch`).
What people do by incident id reads the current state and carries it out with one
race-safe step of `incident_rows`; a step lost to a concurrent writer returns None, and it
is decided again on fresh state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from models.ids import could_be_stored
from models.incident import Incident, IncidentStatus
from models.timeline import TimelineEntry
from models.workspace import Service
from opsgraph.settings import Settings
from resolvers import incident_rows as rows
from resolvers.auth import Principal, Scope, service_for_routing_key
from resolvers.incident_batch import PendingEvent, store_events
from resolvers.incident_events import IncidentEvent, Step
from resolvers.timeline import Publisher

# Each lost race means another writer made progress, so this bound is never reached in
# practice; it only turns a logic error into an error instead of a loop.
MAX_ATTEMPTS = 20


class Outcome(StrEnum):
    OPENED = "OPENED"
    UPDATED = "UPDATED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"
    DROPPED = "DROPPED"


@dataclass(frozen=True, slots=True)
class EventResult:
    """What an event did: the incident it touched (if any) and its timeline entry."""

    outcome: Outcome
    dedup_key: str
    incident: Incident | None
    entry: TimelineEntry
    reason: str | None = None


OUTCOMES = {
    Step.OPEN: Outcome.OPENED,
    Step.UPDATE: Outcome.UPDATED,
    Step.ACKNOWLEDGE: Outcome.ACKNOWLEDGED,
    Step.RESOLVE: Outcome.RESOLVED,
    Step.DROP: Outcome.DROPPED,
}


class IncidentNotFound(Exception):
    """No incident with that id in the caller's workspace."""


class IncidentConflict(Exception):
    """The transition does not apply to the incident's current status."""


async def find_service(
    *, workspace_id: str, routing_key: str | None, service_id: str | None
) -> Service | None:
    """The workspace's service named by routing key and/or id; None if unknown or they differ."""
    service = None
    if routing_key is not None:
        service = await service_for_routing_key(routing_key=routing_key)
        if service is None or (service_id is not None and service.id != service_id):
            return None
    elif service_id is not None and could_be_stored(service_id):
        service = await Service.get_or_none(id=service_id)
    if service is None or service.workspace_id != workspace_id:
        return None
    return service


async def service_not_found(
    *, workspace_id: str, routing_key: str | None, service_id: str | None
) -> str:
    """Why `find_service` found no service, in words for the event's sender."""
    if routing_key is not None and service_id is not None:
        service = await service_for_routing_key(routing_key=routing_key)
        if service is not None and service.workspace_id == workspace_id:
            return "The routing key and service_id name different services"
    return "Routing key not found" if routing_key is not None else "Service not found"


async def send_event(
    *,
    principal: Principal,
    event: IncidentEvent,
    service: Service,
    publisher: Publisher,
    settings: Settings,
) -> EventResult:
    """Apply one trigger/acknowledge/resolve event to its service's incidents, stored with
    the events that arrive meanwhile (`send_events` for one event)."""
    (result,) = await send_events(
        principal=principal, items=[(event, service)], publisher=publisher, settings=settings
    )
    if isinstance(result, BaseException):
        raise result
    return result


async def send_events(
    *,
    principal: Principal,
    items: Sequence[tuple[IncidentEvent, Service]],
    publisher: Publisher,
    settings: Settings,
) -> list[EventResult | BaseException]:
    """`send_event` for several events of one principal, queued together (one batch when
    nothing else is waiting) and announced with one note: each event's result, or the
    exception it alone failed with."""
    principal.require(Scope.EVENTS_WRITE)
    pending = [
        PendingEvent(
            workspace_id=principal.workspace_id, actor=principal.name, service=service, event=event
        )
        for event, service in items
    ]
    stored = await store_events(pending, settings=settings)
    newest = max((s.entry.id for s in stored if not isinstance(s, BaseException)), default=None)
    if newest is not None:  # the hub reads every entry up to the newest
        await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=newest)
    return [
        s if isinstance(s, BaseException) else
        EventResult(OUTCOMES[s.step], event.dedup_key, s.incident, s.entry, s.reason)
        for (event, _), s in zip(items, stored, strict=True)
    ]  # fmt: skip


async def acknowledge_incident(
    *, principal: Principal, incident_id: str, note: str | None, publisher: Publisher
) -> Incident:
    """A person acknowledges; already acknowledged keeps only the note (see `_decide`),
    resolved is a conflict."""
    return await _decide(principal, incident_id, Step.ACKNOWLEDGE, note, publisher)


async def resolve_incident(
    *, principal: Principal, incident_id: str, note: str | None, publisher: Publisher
) -> Incident:
    """A person resolves; already resolved keeps only the note (see `_decide`)."""
    return await _decide(principal, incident_id, Step.RESOLVE, note, publisher)


async def annotate_incident(
    *, principal: Principal, incident_id: str, note: str, publisher: Publisher
) -> tuple[Incident, TimelineEntry]:
    """A person adds a note to an incident, open or resolved; it goes on the timeline."""
    principal.require(Scope.EVENTS_WRITE)
    incident = await get_incident(workspace_id=principal.workspace_id, incident_id=incident_id)
    if incident is None:
        raise IncidentNotFound("No incident with that id in this workspace.")
    noted = await rows.annotate(incident=incident, actor=principal.name, note=note)
    assert noted is not None  # no status expected
    await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=noted[1].id)
    return noted


async def _decide(
    principal: Principal, incident_id: str, step: Step, note: str | None, publisher: Publisher
) -> Incident:
    principal.require(Scope.EVENTS_WRITE)
    for _ in range(MAX_ATTEMPTS):
        incident = await get_incident(workspace_id=principal.workspace_id, incident_id=incident_id)
        if incident is None:
            raise IncidentNotFound("No incident with that id in this workspace.")
        if step is Step.ACKNOWLEDGE and incident.status is IncidentStatus.RESOLVED:
            raise IncidentConflict("The incident is resolved: it cannot be acknowledged.")
        wanted = (
            IncidentStatus.ACKNOWLEDGED if step is Step.ACKNOWLEDGE else IncidentStatus.RESOLVED
        )
        if incident.status is wanted:  # nothing to move; a note is kept as a note
            if not note:
                return incident
            noted = await rows.annotate(
                incident=incident, actor=principal.name, note=note, expect=wanted
            )
            if noted is None:  # moved meanwhile (resolved while acknowledged): decide again
                continue
            await publisher.entry_committed(
                workspace_id=principal.workspace_id, entry_id=noted[1].id
            )
            return noted[0]
        moved = await rows.transition(
            incident=incident, step=step, actor=principal.name, note=note, service=incident.service
        )
        if moved is not None:
            await publisher.entry_committed(
                workspace_id=principal.workspace_id, entry_id=moved[1].id
            )
            return moved[0]
    raise RuntimeError(f"could not settle the transition of {incident_id!r}")


async def get_incident(*, workspace_id: str, incident_id: str) -> Incident | None:
    """One incident of the workspace, its service loaded, or None."""
    if not could_be_stored(incident_id):
        return None
    found: Incident | None = (
        await Incident.filter(id=incident_id, workspace_id=workspace_id)
        .select_related("service")
        .first()
    )
    return found
