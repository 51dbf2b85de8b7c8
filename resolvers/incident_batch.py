"""Group commit for triggers: the triggers that arrive while a batch is being stored are
stored together, in one transaction.

A batch locks the open incidents of its (service, dedup key) pairs (`FOR NO KEY UPDATE` on
PostgreSQL, in id order), applies its triggers to them in arrival order, as one after the
other would, and writes the outcome with one statement (or one prepared statement run for
each row) per table: the incidents it opens, the incidents it updates, every trigger's
alert row, then every trigger's timeline entry. Each trigger's answer is the incident as
that trigger left it.

Opening races are settled by the unique (service, dedup key, open marker) constraint: if a
concurrent writer opened one of the batch's keys first, the database refuses the batch and
nothing is stored. The batch is then tried once more on fresh state, where that key is
open; refused again (or for a value the database rejects), each trigger is stored alone,
in order, so a bad trigger fails alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise import connections
from tortoise.exceptions import ValidationError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.ids import new_id
from models.incident import OPEN, Incident, IncidentAlert, Severity
from models.timeline import TimelineEntry, TimelineKind
from models.workspace import Service
from opsgraph.settings import Settings
from resolvers.batching import Batcher, each_alone_if_refused, refused_by_database
from resolvers.incident_events import AlertData, EventAction, Step, plan_event
from resolvers.incident_rows import new_entry
from resolvers.timeline import NewEntry, record_entries

# A trigger stored alone is tried this often in all while it loses opening races: each lost
# race means another writer opened the incident, which the next attempt updates.
ATTEMPTS = 3

# What a trigger writes on its incident: the count, when it was last seen, its payload.
_ALERT_COLUMNS = tuple(AlertData(summary="", source="", severity=Severity.INFO).columns())
_UPDATED = ("alert_count", "last_seen_at", *_ALERT_COLUMNS)


@dataclass(frozen=True, slots=True)
class PendingTrigger:
    """A validated trigger for a known service, waiting for its batch."""

    workspace_id: str
    actor: str
    service: Service
    dedup_key: str
    alert: AlertData


@dataclass(frozen=True, slots=True)
class StoredTrigger:
    """A committed trigger: whether it opened its incident, the incident as it left it,
    and its timeline entry."""

    opened: bool
    incident: Incident
    entry: TimelineEntry


def _update_statement(dialect: str) -> str:
    columns = _UPDATED
    if dialect == "postgres":
        assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(columns, start=1))
        return f"UPDATE incident SET {assignments} WHERE id = ${len(columns) + 1}"
    assignments = ", ".join(f"{name} = ?" for name in columns)
    return f"UPDATE incident SET {assignments} WHERE id = ?"


def _apply(incident: Incident, alert: AlertData, now: datetime) -> None:
    for name, value in alert.columns().items():
        setattr(incident, name, value)
    incident.last_seen_at = now


async def _store(items: Sequence[PendingTrigger]) -> list[StoredTrigger]:
    """Store every trigger of a batch in one transaction (all or nothing)."""
    now = datetime.now(UTC)
    keys = {(item.service.id, item.dedup_key) for item in items}
    by_service: dict[str, set[str]] = {}
    for service_id, dedup_key in keys:
        by_service.setdefault(service_id, set()).add(dedup_key)
    pairs = [
        Q(service_id=service_id, dedup_key__in=sorted(dedup_keys))
        for service_id, dedup_keys in sorted(by_service.items())
    ]
    opened: dict[tuple[str, str], Incident] = {}
    updated: dict[tuple[str, str], Incident] = {}
    stored: list[tuple[bool, Incident, NewEntry]] = []
    async with in_transaction():
        locked = (
            await Incident.filter(Q(*pairs, join_type="OR"), open_marker=OPEN)
            .order_by("id")
            .select_for_update(no_key=True)
        )
        current = {(row.service_id, row.dedup_key): row for row in locked}
        for item in items:
            key = (item.service.id, item.dedup_key)
            incident = current.get(key)
            status = incident.status if incident is not None else None
            first = plan_event(EventAction.TRIGGER, status, known=True).step is Step.OPEN
            if first:
                incident = current[key] = opened[key] = Incident(
                    id=new_id("inc"),
                    workspace_id=item.workspace_id,
                    service=item.service,
                    dedup_key=item.dedup_key,
                    opened_at=now,
                    last_seen_at=now,
                    **item.alert.columns(),
                )
            else:
                assert incident is not None
                incident.alert_count += 1
                _apply(incident, item.alert, now)
                if key not in opened:
                    updated[key] = incident
            incident.service = item.service
            kind = TimelineKind.INCIDENT_TRIGGERED if first else TimelineKind.INCIDENT_UPDATED
            extra = {"source": item.alert.source} if first else {}
            entry = new_entry(incident, kind, item.alert.summary, actor=item.actor, **extra)
            stored.append((first, copy.copy(incident), entry))
        if opened:
            await Incident.bulk_create([opened[key] for key in sorted(opened)])
        if updated:
            await _update(sorted(updated.values(), key=lambda row: row.id))
        await IncidentAlert.bulk_create(
            [
                IncidentAlert(
                    incident_id=incident.id,
                    received_at=now,
                    actor=item.actor,
                    **item.alert.columns(),
                )
                for item, (_, incident, _) in zip(items, stored, strict=True)
            ]
        )
        entries = await record_entries([entry for _, _, entry in stored])
    for _, incident, _ in stored:
        incident._saved_in_db = True  # those it opened too: bulk_create does not say so
    return [
        StoredTrigger(opened=first, incident=incident, entry=entry)
        for (first, incident, _), entry in zip(stored, entries, strict=True)
    ]


async def _update(incidents: Sequence[Incident]) -> None:
    """Write the triggers' columns of incidents locked by this transaction, one statement."""
    connection = connections.get("default")
    fields = Incident._meta.fields_map
    values = [
        [fields[name].to_db_value(getattr(row, name), row) for name in _UPDATED] + [row.id]
        for row in incidents
    ]
    await connection.execute_many(_update_statement(connection.capabilities.dialect), values)


async def _store_retrying(items: Sequence[PendingTrigger]) -> list[StoredTrigger]:
    """`_store`, tried again on fresh state while it loses opening races: once more for a
    batch (then each trigger goes alone), up to `ATTEMPTS` times in all for one trigger."""
    attempts = ATTEMPTS if len(items) == 1 else 2
    for attempt in range(1, attempts + 1):
        try:
            return await _store(items)
        except ValidationError:  # a value the database cannot take: no retry changes that
            raise
        except Exception as exc:
            if attempt == attempts or not refused_by_database(exc):
                raise
    raise AssertionError("unreachable")


async def _store_each(items: Sequence[PendingTrigger]) -> list[StoredTrigger | BaseException]:
    """The batch's transaction; if the database refused it, each trigger alone, in order."""
    return await each_alone_if_refused(items, _store_retrying, refused=refused_by_database)


# One batch at a time per process (at most `Settings.batch_max` triggers).
TRIGGERS: Batcher[PendingTrigger, StoredTrigger] = Batcher(
    _store_each, max_items=Settings().batch_max
)


async def store_trigger(item: PendingTrigger, *, settings: Settings) -> StoredTrigger:
    """Store a trigger with the others that arrive meanwhile."""
    TRIGGERS.max_items = max(1, settings.batch_max)
    return await TRIGGERS.submit(item)
