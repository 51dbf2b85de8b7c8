"""Incidents: applying events (dedup, acknowledge, resolve) and people's transitions.

Each write reads the current state, decides with the pure `plan_event`, and carries the
decision out with one race-safe step: triggers in batches (`incident_batch`), the others
with `incident_rows`, where a step lost to a concurrent writer returns None and the event
is decided again on fresh state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from models.incident import ID_LENGTH, OPEN, Incident, IncidentStatus
from models.timeline import TimelineEntry
from models.workspace import Service
from opsgraph.settings import Settings
from resolvers import incident_rows as rows
from resolvers.auth import Principal, Scope, service_for_routing_key
from resolvers.incident_batch import PendingTrigger, store_trigger
from resolvers.incident_events import IncidentEvent, Plan, Step, plan_event
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
    elif service_id is not None and len(service_id) <= ID_LENGTH:
        service = await Service.get_or_none(id=service_id)
    if service is None or service.workspace_id != workspace_id:
        return None
    return service


async def send_event(
    *,
    principal: Principal,
    event: IncidentEvent,
    service: Service,
    publisher: Publisher,
    settings: Settings,
) -> EventResult:
    """Apply one trigger/acknowledge/resolve event to its service's incidents."""
    principal.require(Scope.EVENTS_WRITE)
    if event.alert is not None:  # a trigger: stored with the others that arrive meanwhile
        stored = await store_trigger(
            PendingTrigger(
                workspace_id=principal.workspace_id,
                actor=principal.name,
                service=service,
                dedup_key=event.dedup_key,
                alert=event.alert,
            ),
            settings=settings,
        )
        await publisher.entry_committed(
            workspace_id=principal.workspace_id, entry_id=stored.entry.id
        )
        outcome = OUTCOMES[Step.OPEN if stored.opened else Step.UPDATE]
        return EventResult(outcome, event.dedup_key, stored.incident, stored.entry)
    for _ in range(MAX_ATTEMPTS):
        current = await Incident.get_or_none(
            service_id=service.id, dedup_key=event.dedup_key, open_marker=OPEN
        )
        latest = current
        if current is None:
            latest = await rows.latest_incident(service_id=service.id, dedup_key=event.dedup_key)
        if latest is not None:
            latest.service = service
        plan = plan_event(
            event.action, current.status if current else None, known=latest is not None
        )
        result = await _apply(plan, principal, event, service, current or latest)
        if result is not None:
            await publisher.entry_committed(
                workspace_id=principal.workspace_id, entry_id=result.entry.id
            )
            return result
    raise RuntimeError(f"could not settle the event for dedup_key {event.dedup_key!r}")


async def _apply(
    plan: Plan,
    principal: Principal,
    event: IncidentEvent,
    service: Service,
    incident: Incident | None,
) -> EventResult | None:
    """Carry out an acknowledge, resolve or drop; None when a concurrent writer got there
    first (decide again)."""
    key = event.dedup_key
    if plan.step is Step.DROP:
        entry = await rows.record_drop(
            principal=principal,
            service=service,
            event=event,
            incident=incident,
            reason=plan.reason or "",
        )
        return EventResult(Outcome.DROPPED, key, incident, entry, plan.reason)
    # Triggers (OPEN, UPDATE) never get here: `send_event` hands them to the batch.
    assert incident is not None and plan.step in {Step.ACKNOWLEDGE, Step.RESOLVE}
    done = await rows.transition(
        incident=incident, step=plan.step, actor=principal.name, note=None, service=service
    )
    if done is None:
        return None
    return EventResult(OUTCOMES[plan.step], key, done[0], done[1])


async def acknowledge_incident(
    *, principal: Principal, incident_id: str, note: str | None, publisher: Publisher
) -> Incident:
    """A person acknowledges; already acknowledged is a no-op, resolved is a conflict."""
    return await _decide(principal, incident_id, Step.ACKNOWLEDGE, note, publisher)


async def resolve_incident(
    *, principal: Principal, incident_id: str, note: str | None, publisher: Publisher
) -> Incident:
    """A person resolves; already resolved is a no-op."""
    return await _decide(principal, incident_id, Step.RESOLVE, note, publisher)


async def annotate_incident(
    *, principal: Principal, incident_id: str, note: str, publisher: Publisher
) -> tuple[Incident, TimelineEntry]:
    """A person adds a note to an incident, open or resolved; it goes on the timeline."""
    principal.require(Scope.EVENTS_WRITE)
    incident = await get_incident(workspace_id=principal.workspace_id, incident_id=incident_id)
    if incident is None:
        raise IncidentNotFound("No incident with that id in this workspace.")
    entry = await rows.annotate(incident=incident, actor=principal.name, note=note)
    await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=entry.id)
    return incident, entry


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
        if incident.status is wanted:
            return incident
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
    if len(incident_id) > ID_LENGTH:
        return None
    found: Incident | None = (
        await Incident.filter(id=incident_id, workspace_id=workspace_id)
        .select_related("service")
        .first()
    )
    return found
