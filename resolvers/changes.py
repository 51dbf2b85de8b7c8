"""Changes: validating and recording deploy, build, config and business events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.change import Change, ChangeCategory
from models.ids import new_id
from models.timeline import TimelineEntry, TimelineKind
from opsgraph.settings import Settings
from resolvers.auth import Principal, Scope
from resolvers.timeline import Publisher, record_entry
from resolvers.validation import Checker

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
    occurred_at = check.timestamp("timestamp", required=True)
    category = check.choice("category", CATEGORIES, required=True)
    source = check.text("source", required=True)
    environment = check.text("environment")
    service = check.text("service")
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
    """Map a PagerDuty change event (`/v2/change/enqueue`) onto our change fields."""
    payload = body.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
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
    """Store a change and its timeline entry in one transaction, then announce it."""
    principal.require(Scope.EVENTS_WRITE)
    async with in_transaction():
        change = await Change.create(
            id=new_id("chg"),
            workspace_id=principal.workspace_id,
            name=data.name,
            occurred_at=data.occurred_at,
            category=data.category,
            source=data.source,
            environment=data.environment,
            service=data.service,
            labels=data.labels,
            metadata=data.metadata,
            links=data.links,
            actor=actor or principal.name,
        )
        entry = await record_entry(
            workspace_id=principal.workspace_id,
            kind=TimelineKind.CHANGE,
            occurred_at=data.occurred_at,
            summary=data.name,
            service=data.service,
            environment=data.environment,
            labels=data.labels,
            actor=change.actor,
            details={"category": data.category.value, "source": data.source},
            subject_type="Change",
            subject_id=change.id,
        )
    await publisher.entry_committed(workspace_id=principal.workspace_id, entry_id=entry.id)
    return RecordedChange(change=change, entry=entry)


async def get_change(*, workspace_id: str, change_id: str) -> Change | None:
    """One change of the workspace, or None."""
    return await Change.get_or_none(id=change_id, workspace_id=workspace_id)
