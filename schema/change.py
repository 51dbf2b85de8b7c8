"""Changes: the `recordChange` and `recordChanges` mutations behind `POST /events` and
`/v2/change/enqueue`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition

from models.change import Change as ChangeRow
from models.change import ChangeCategory as ChangeCategoryModel
from resolvers import changes
from resolvers.auth import Scope
from resolvers.errors import InvalidInput
from schema.common import InvalidEvent, record_each
from schema.context import Info
from schema.scalars import JSON

ChangeCategory = strawberry.enum(ChangeCategoryModel, name="ChangeCategory")


@strawberry.type
class Link:
    href: str
    text: str | None


@strawberry.input
class LinkInput:
    href: str
    text: str | None = None


@strawberry.input(description="A change event, as in the change events API.")
class ChangeInput:
    name: str
    timestamp: datetime
    category: ChangeCategory  # type: ignore[valid-type]
    source: str
    environment: str | None = None
    service: str | None = None
    labels: list[str] | None = None
    metadata: JSON | None = None
    links: list[LinkInput] | None = None

    def to_raw(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timestamp": self.timestamp,
            "category": ChangeCategoryModel(self.category).value,
            "source": self.source,
            "environment": self.environment,
            "service": self.service,
            "labels": self.labels,
            "metadata": self.metadata,
            "links": [asdict(link) for link in self.links] if self.links is not None else None,
        }


def _change_input(cls: type[Any], value: Mapping[str, Any], context: InputContext) -> Any:
    """A ChangeInput from its input value, as graphql-core coerced it (each field already of
    its type): Strawberry's generic conversion resolves every field's annotation on every
    call, which cost more than validating and storing the change."""
    labels, links = value.get("labels"), value.get("links")
    return cls(
        name=value["name"],
        timestamp=value["timestamp"],
        category=value["category"],
        source=value["source"],
        environment=value.get("environment"),
        service=value.get("service"),
        labels=None if labels is None else list(labels),
        metadata=value.get("metadata"),
        links=None
        if links is None
        else [LinkInput(href=link["href"], text=link.get("text")) for link in links],
    )


get_object_definition(ChangeInput, strict=True).from_input = _change_input


@strawberry.type(description="A deploy, build, config or business event.")
class Change:
    instance: strawberry.Private[ChangeRow]
    id: strawberry.ID
    name: str
    occurred_at: datetime
    category: ChangeCategory  # type: ignore[valid-type]
    source: str
    environment: str | None
    service: str | None
    labels: list[str]
    metadata: JSON
    links: list[Link]
    actor: str | None

    @classmethod
    def from_row(cls, row: ChangeRow) -> Change:
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            name=row.name,
            occurred_at=row.occurred_at,
            category=row.category,
            source=row.source,
            environment=row.environment,
            service=row.service,
            labels=list(row.labels),
            metadata=cast(JSON, row.metadata),
            links=[Link(href=link["href"], text=link.get("text")) for link in row.links],
            actor=row.actor,
        )


@strawberry.type(description="The change was stored; `entryId` is its timeline entry.")
class ChangeRecorded:
    change: Change
    entry_id: strawberry.ID

    @classmethod
    def of(cls, recorded: changes.RecordedChange) -> ChangeRecorded:
        return cls(
            change=Change.from_row(recorded.change), entry_id=strawberry.ID(str(recorded.entry.id))
        )


RecordChangeResult = Annotated[
    ChangeRecorded | InvalidEvent, strawberry.union("RecordChangeResult")
]


@strawberry.type
class ChangeMutation:
    @strawberry.mutation(description="Record a change event (see `recordChanges` for many).")
    async def record_change(self, info: Info, input: ChangeInput) -> RecordChangeResult:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        try:
            data = changes.validate_change(input.to_raw(), settings=info.context.settings)
        except InvalidInput as exc:
            return InvalidEvent.from_error(exc)
        recorded = await changes.record_change(
            principal=principal, data=data, publisher=info.context.publisher
        )
        return ChangeRecorded.of(recorded)

    @strawberry.mutation(
        description=(
            "Record many change events in one call (at most `OPSGRAPH_MAX_CHANGES_PER_CALL`; "
            "concurrent `POST /events` and `/v2/change/enqueue` requests run as one such call). "
            "Each input has its own result, in order: an invalid one is `InvalidEvent`, one "
            "the database refuses is null with an error at its index, the others are recorded."
        )
    )
    async def record_changes(
        self, info: Info, inputs: list[ChangeInput]
    ) -> list[RecordChangeResult | None]:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        settings = info.context.settings

        async def record(
            items: list[changes.ChangeData],
        ) -> list[changes.RecordedChange | Exception]:
            return await changes.record_changes(
                principal=principal, items=items, publisher=info.context.publisher
            )

        results = await record_each(
            inputs,
            limit=settings.max_changes_per_call,
            noun="changes",
            validate=lambda item: changes.validate_change(item.to_raw(), settings=settings),
            record=record,
            render=lambda outcome: (
                outcome if isinstance(outcome, Exception) else ChangeRecorded.of(outcome)
            ),
            validated=info.context.validated,
        )
        return cast(list[RecordChangeResult | None], results)
