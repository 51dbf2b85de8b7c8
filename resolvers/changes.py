"""Changes: validating and recording deploy, build, config and business events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.change import Change, ChangeCategory
from models.ids import new_id
from models.timeline import TimelineEntry
from opsgraph.settings import Settings
from resolvers.auth import Principal, Scope
from resolvers.batching import Batcher, each_alone_if_refused, refused_by_database
from resolvers.change_store import store_changes
from resolvers.errors import FieldError, InvalidInput
from resolvers.rows import new_row
from resolvers.timeline import Publisher
from resolvers.validation import Checker, TimeWindow, name_of

CATEGORIES = [category.value for category in ChangeCategory]


@dataclass(frozen=True, slots=True)
class ChangeData:
    """A validated change event."""

    name: str
    occurred_at: datetime
    category: ChangeCategory
    source: str
    environment: str | None = None
    service: str | None = None
    labels: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecordedChange:
    change: Change
    entry: TimelineEntry


def validate_change(raw: Mapping[str, Any], *, settings: Settings) -> ChangeData:
    """Check a change event field by field; raises InvalidInput naming every bad field."""
    check = Checker(raw)
    name = check.text("name", required=True, max_length=settings.max_name_length)
    occurred_at = check.timestamp("timestamp", required=True, window=TimeWindow.of(settings))
    category = check.choice("category", CATEGORIES, required=True)
    source = check.text("source", required=True)
    environment = name_of(check.text("environment"))
    service = name_of(check.text("service"))
    labels = check.string_list(
        "labels", max_items=settings.max_labels, max_length=settings.max_label_length
    )
    metadata = check.json_object("metadata", max_bytes=settings.max_metadata_bytes)
    links = check.links("links", max_items=settings.max_labels)
    check.raise_if_invalid()
    assert name is not None and occurred_at is not None
    assert category is not None and source is not None
    return ChangeData(
        name=name,
        occurred_at=occurred_at,
        category=ChangeCategory(category),
        source=source,
        environment=environment,
        service=service,
        labels=labels,
        metadata=metadata,
        links=links,
    )


def pagerduty_change_to_raw(body: Mapping[str, Any]) -> dict[str, Any]:
    """Map a PagerDuty change event (`/v2/change/enqueue`) onto our change fields; a
    `payload` that is not an object is InvalidInput naming it."""
    payload = body.get("payload")
    if payload is not None and not isinstance(payload, Mapping):
        raise InvalidInput([FieldError("payload", "must be an object")])
    payload = payload or {}
    raw: dict[str, Any] = {
        "name": payload.get("summary"),
        "timestamp": payload.get("timestamp"),
        "category": "TECHNICAL",
        "source": payload.get("source") or "pagerduty",
        "metadata": payload.get("custom_details"),
        "links": body.get("links"),
    }
    return raw


async def record_change(
    *, principal: Principal, data: ChangeData, publisher: Publisher, actor: str | None = None
) -> RecordedChange:
    """Store a change and its timeline entry, then announce it.

    Concurrent calls are group-committed: they share one transaction (see `WRITER`), and
    each returns only after that transaction has committed.
    """
    principal.require(Scope.EVENTS_WRITE)
    recorded = await WRITER.submit(_Write(principal=principal, data=data, actor=actor))
    await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=recorded.entry.id)
    return recorded


async def record_changes(
    *, principal: Principal, items: Sequence[ChangeData], publisher: Publisher
) -> list[RecordedChange | Exception]:
    """Store many changes in the same group commit and announce each; every item gets its
    own outcome, in order (a change the database refused is its exception, the others are
    stored), once the transactions holding them have committed."""
    principal.require(Scope.EVENTS_WRITE)
    writes = [_Write(principal=principal, data=data, actor=None) for data in items]
    results: list[RecordedChange | Exception] = []
    for outcome in await WRITER.submit_many(writes):
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancelled (shut-down)
        results.append(outcome)
    # One note covers them all: a hub reads every entry after the last it delivered.
    newest = max((o.entry.id for o in results if isinstance(o, RecordedChange)), default=None)
    if newest is not None:
        await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=newest)
    return results


@dataclass(frozen=True, slots=True)
class _Write:
    principal: Principal
    data: ChangeData
    actor: str | None


async def _store(writes: Sequence[_Write]) -> list[RecordedChange]:
    """Store every write of a batch atomically (see `resolvers.change_store`)."""
    rows = [
        new_row(
            Change,
            id=new_id("chg"),
            workspace_id=write.principal.workspace_id,
            name=write.data.name,
            occurred_at=write.data.occurred_at,
            category=write.data.category,
            source=write.data.source,
            environment=write.data.environment,
            service=write.data.service,
            labels=write.data.labels,
            metadata=write.data.metadata,
            links=write.data.links,
            actor=write.actor or write.principal.name,
        )
        for write in writes
    ]
    entries = await store_changes(rows)
    return [
        RecordedChange(change=row, entry=entry) for row, entry in zip(rows, entries, strict=True)
    ]


async def _store_each(writes: Sequence[_Write]) -> list[RecordedChange | BaseException]:
    """The batch's transaction, or each write alone if the database refused it."""
    return await each_alone_if_refused(writes, _store, refused=refused_by_database)


# Group commit for changes: one transaction at a time per process, holding every write that
# arrived while the previous one ran (at most `Settings.batch_max`; the app sets it).
WRITER: Batcher[_Write, RecordedChange] = Batcher(_store_each, max_items=Settings().batch_max)


async def get_change(*, workspace_id: str, change_id: str) -> Change | None:
    """One change of the workspace, or None."""
    return await Change.get_or_none(id=change_id, workspace_id=workspace_id)
