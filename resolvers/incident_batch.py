"""Group commit for incident events: the triggers, acknowledges and resolves that arrive
while a batch is being stored are stored together, in one transaction.

A batch locks the open incidents of its (service, dedup key) pairs (`FOR NO KEY UPDATE` on
PostgreSQL, in id order) and applies its events to them in arrival order, each decided by
`plan_event` as one after the other would be: a trigger opens or updates, an acknowledge or
a resolve moves the open incident, and an event that changes nothing is dropped with its
reason. It then writes the outcome, one INSERT or UPDATE per table (`resolvers.rows`; on
SQLite the ORM's, or one prepared statement run for each row): the incidents it changed,
the incidents it opened, every trigger's alert row and every event's timeline entry, on
PostgreSQL all in one statement (`resolvers.timeline.record_entries`). Each event's answer
is the incident as that event left it.

Opening races are settled by the unique (service, dedup key, open marker) constraint: if a
concurrent writer opened one of the batch's keys first, the database refuses the batch and
nothing is stored. The batch is then tried once more on fresh state, where that key is
open; refused again (or for a value the database rejects), each event is stored alone, in
order, so a bad event fails alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.ids import new_id
from models.incident import OPEN, Incident, IncidentAlert, IncidentStatus, Severity
from models.timeline import TimelineEntry, TimelineKind
from models.workspace import Service
from opsgraph.settings import Settings
from resolvers import incident_rows as rows
from resolvers.batching import Batcher, bad_value, each_alone_if_refused, refused_by_database
from resolvers.incident_events import AlertData, IncidentEvent, Step, plan_event
from resolvers.rows import new_row, update_rows
from resolvers.timeline import NewEntry, record_entries

# An event stored alone is tried this often in all while it loses opening races: each lost
# race means another writer opened the incident, which the next attempt finds open.
ATTEMPTS = 3

# What events change on an incident that exists: a trigger's count, time and payload, an
# acknowledge's or a resolve's status and who did it when.
_ALERT_COLUMNS = tuple(AlertData(summary="", source="", severity=Severity.INFO).columns())
_UPDATED = (
    "alert_count",
    "last_seen_at",
    *_ALERT_COLUMNS,
    "status",
    "open_marker",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
)

Key = tuple[str, str]  # (service id, dedup key)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A validated event for a known service, waiting for its batch."""

    workspace_id: str
    actor: str
    service: Service
    event: IncidentEvent

    @property
    def key(self) -> Key:
        return (self.service.id, self.event.dedup_key)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event: what it did, the incident as it left it (for a dropped event, the
    incident it concerned, if any), its timeline entry, and why it was dropped."""

    step: Step
    incident: Incident | None
    entry: TimelineEntry
    reason: str | None = None


class _Batch:
    """The incidents of one batch's keys as its events move them, and what to write."""

    def __init__(self, now: datetime, locked: Sequence[Incident]) -> None:
        self.now = now
        self.open: dict[Key, Incident] = {(row.service_id, row.dedup_key): row for row in locked}
        self.latest: dict[Key, Incident | None] = dict(self.open)  # open or not
        self.opened: dict[str, Incident] = {}  # new incidents by id, written after `changed`
        self.changed: dict[str, Incident] = {}  # stored incidents by id
        self.alerts: list[IncidentAlert] = []
        self.outcomes: list[tuple[Step, Incident | None, NewEntry, str | None]] = []

    async def apply(self, item: PendingEvent) -> None:
        event, key = item.event, item.key
        incident = self.open.get(key)
        if incident is None and key not in self.latest and event.alert is None:
            # Why an acknowledge or a resolve finds nothing open: the key's latest incident.
            self.latest[key] = await rows.latest_incident(service_id=key[0], dedup_key=key[1])
        status = incident.status if incident is not None else None
        plan = plan_event(event.action, status, known=self.latest.get(key) is not None)
        if plan.step is Step.DROP:
            shown = incident or self.latest.get(key)
            if shown is not None:
                shown.service = item.service
            entry = rows.drop_entry(
                workspace_id=item.workspace_id,
                service=item.service,
                event=event,
                incident=shown,
                reason=plan.reason or "",
                actor=item.actor,
            )
            self._done(plan.step, shown, entry, plan.reason)
            return
        if plan.step is Step.OPEN:
            assert event.alert is not None
            incident = new_row(
                Incident,
                id=new_id("inc"),
                workspace_id=item.workspace_id,
                service_id=item.service.id,
                dedup_key=event.dedup_key,
                opened_at=self.now,
                last_seen_at=self.now,
                **event.alert.columns(),
            )
            self.open[key] = self.latest[key] = self.opened[incident.id] = incident
        else:
            assert incident is not None
            if incident.id not in self.opened:
                self.changed[incident.id] = incident
        incident.service = item.service
        if plan.step in {Step.OPEN, Step.UPDATE}:
            assert event.alert is not None
            entry = self._trigger(incident, item, event.alert, first=plan.step is Step.OPEN)
        elif plan.step is Step.ACKNOWLEDGE:
            incident.status = IncidentStatus.ACKNOWLEDGED
            incident.acknowledged_at, incident.acknowledged_by = self.now, item.actor
            entry = rows.transition_entry(incident, plan.step, actor=item.actor, note=None)
        else:  # RESOLVE: the key has nothing open from here on
            incident.status, incident.open_marker = IncidentStatus.RESOLVED, None
            incident.resolved_at, incident.resolved_by = self.now, item.actor
            del self.open[key]
            entry = rows.transition_entry(incident, plan.step, actor=item.actor, note=None)
        self._done(plan.step, incident, entry, None)

    def _trigger(
        self, incident: Incident, item: PendingEvent, alert: AlertData, *, first: bool
    ) -> NewEntry:
        if not first:
            incident.alert_count += 1
            for name, value in alert.columns().items():
                setattr(incident, name, value)
            incident.last_seen_at = self.now
        self.alerts.append(
            new_row(
                IncidentAlert,
                incident_id=incident.id,
                received_at=self.now,
                actor=item.actor,
                **alert.columns(),
            )
        )
        if first:
            kind, extra = TimelineKind.INCIDENT_TRIGGERED, {"source": alert.source}
        else:
            kind, extra = TimelineKind.INCIDENT_UPDATED, {}
        return rows.new_entry(incident, kind, alert.summary, actor=item.actor, **extra)

    def _done(
        self, step: Step, incident: Incident | None, entry: NewEntry, reason: str | None
    ) -> None:
        snapshot = copy.copy(incident) if incident is not None else None  # as it stands now
        self.outcomes.append((step, snapshot, entry, reason))

    async def write(self, connection: BaseDBAsyncClient) -> list[StoredEvent]:
        """Write the batch with its entries: one statement on PostgreSQL (the incidents are
        locked already), but for a key resolved and opened again in the batch, whose
        resolve must free the key's open slot before the new incident takes it."""
        changed = sorted(self.changed.values(), key=lambda row: row.id)
        opened = [self.opened[id_] for id_ in sorted(self.opened)]
        freed = {(row.service_id, row.dedup_key) for row in changed if row.open_marker is None}
        updating: list[tuple[list[Incident], tuple[str, ...]]] = [(changed, _UPDATED)]
        if any((row.service_id, row.dedup_key) in freed for row in opened):
            await update_rows(connection, changed, _UPDATED)
            updating = []
        entries = await record_entries(
            [entry for _, _, entry, _ in self.outcomes],
            updating=updating,
            inserting=[opened, self.alerts],
        )
        stored = []
        for (step, incident, _, reason), entry in zip(self.outcomes, entries, strict=True):
            if incident is not None:
                incident._saved_in_db = True  # those it opened too: bulk_create does not say
            stored.append(StoredEvent(step=step, incident=incident, entry=entry, reason=reason))
        return stored


async def _store(items: Sequence[PendingEvent]) -> list[StoredEvent]:
    """Store every event of a batch in one transaction (all or nothing)."""
    by_service: dict[str, set[str]] = {}
    for item in items:
        by_service.setdefault(item.service.id, set()).add(item.event.dedup_key)
    pairs = [
        Q(service_id=service_id, dedup_key__in=sorted(dedup_keys))
        for service_id, dedup_keys in sorted(by_service.items())
    ]
    async with in_transaction() as connection:
        locked = (
            await Incident.filter(Q(*pairs, join_type="OR"), open_marker=OPEN)
            .order_by("id")
            .select_for_update(no_key=True)
        )
        batch = _Batch(datetime.now(UTC), locked)
        for item in items:
            await batch.apply(item)
        return await batch.write(connection)


async def _store_retrying(items: Sequence[PendingEvent]) -> list[StoredEvent]:
    """`_store`, tried again on fresh state while it loses opening races: once more for a
    batch (then each event goes alone), up to `ATTEMPTS` times in all for one event."""
    attempts = ATTEMPTS if len(items) == 1 else 2
    for attempt in range(1, attempts + 1):
        try:
            return await _store(items)
        except Exception as exc:  # a value the database cannot take: no retry changes that
            if attempt == attempts or bad_value(exc) or not refused_by_database(exc):
                raise
    raise AssertionError("unreachable")


async def _store_each(items: Sequence[PendingEvent]) -> list[StoredEvent | BaseException]:
    """The batch's transaction; if the database refused it, each event alone, in order."""
    return await each_alone_if_refused(items, _store_retrying, refused=refused_by_database)


# One batch at a time per process (at most `Settings.batch_max` events).
EVENTS: Batcher[PendingEvent, StoredEvent] = Batcher(_store_each, max_items=Settings().batch_max)


async def store_events(
    items: Sequence[PendingEvent], *, settings: Settings
) -> list[StoredEvent | BaseException]:
    """Store several events, in order, with the others that arrive meanwhile: each one's
    stored event or the exception it failed with."""
    EVENTS.max_items = max(1, settings.batch_max)
    return await EVENTS.submit_many(items)
