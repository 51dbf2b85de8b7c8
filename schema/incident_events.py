"""Incident writes: `sendIncidentEvent` and `sendIncidentEvents` (behind `POST /api/events`
and `/v2/enqueue`), `acknowledgeIncident` and `resolveIncident`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import get_object_definition
from strawberry.utils.str_converters import to_camel_case

from models.incident import Incident as IncidentRow
from models.workspace import Service
from opsgraph.settings import Settings
from resolvers import incidents, validation
from resolvers.auth import Scope
from resolvers.errors import FieldError, InvalidInput
from resolvers.incident_events import EventAction, IncidentEvent, validate_event
from schema.change import LinkInput
from schema.common import InvalidEvent, record_each
from schema.context import Info, public_error
from schema.incident import Incident, Severity
from schema.scalars import JSON

IncidentEventAction = strawberry.enum(EventAction, name="IncidentEventAction")
IncidentEventOutcome = strawberry.enum(incidents.Outcome, name="IncidentEventOutcome")


@strawberry.input
class IncidentImageInput:
    src: str
    href: str | None = None
    alt: str | None = None


@strawberry.input(description="The alert; required fields are checked for triggers only.")
class IncidentPayloadInput:
    summary: str | None = None
    source: str | None = None
    severity: Severity | None = None  # type: ignore[valid-type]
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    event_class: str | None = strawberry.field(name="class", default=None)
    custom_details: JSON | None = None

    def to_raw(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "source": self.source,
            "severity": None if self.severity is None else self.severity.value,
            "timestamp": self.timestamp,
            "component": self.component,
            "group": self.group,
            "class": self.event_class,
            "custom_details": self.custom_details,
        }


@strawberry.input(description="An incident event, as in the events API (routing key or service).")
class IncidentEventInput:
    event_action: IncidentEventAction  # type: ignore[valid-type]
    routing_key: str | None = None
    service_id: strawberry.ID | None = None
    dedup_key: str | None = None
    payload: IncidentPayloadInput | None = None
    images: list[IncidentImageInput] | None = None
    links: list[LinkInput] | None = None
    client: str | None = None
    client_url: str | None = None

    def to_raw(self) -> dict[str, Any]:
        return {
            "event_action": EventAction(self.event_action).value,
            "routing_key": self.routing_key,
            "service_id": None if self.service_id is None else str(self.service_id),
            "dedup_key": self.dedup_key,
            "payload": None if self.payload is None else self.payload.to_raw(),
            "images": None if self.images is None else [asdict(i) for i in self.images],
            "links": None if self.links is None else [asdict(link) for link in self.links],
            "client": self.client,
            "client_url": self.client_url,
        }


def _graphql_names(*inputs: type[Any]) -> dict[str, str]:
    """The inputs' fields whose names the schema spells otherwise, as `{python: schema}`:
    the events API's names (what `validate_event` checks and names) are the Python ones."""
    names: dict[str, str] = {}
    for input_type in inputs:
        for field in get_object_definition(input_type, strict=True).fields:
            spelt = field.graphql_name or to_camel_case(field.python_name)
            if spelt != field.python_name:
                names[field.python_name] = spelt
    return names


_GRAPHQL_NAMES = _graphql_names(IncidentEventInput, IncidentPayloadInput)
_API_NAME = re.compile(r"\b(" + "|".join(_GRAPHQL_NAMES) + r")\b")


def _validate(input: IncidentEventInput, settings: Settings) -> IncidentEvent:
    """`validate_event` on the input, its errors naming the input's own fields (`dedupKey`,
    `payload.customDetails`), as the other mutations' errors do."""
    try:
        return validate_event(input.to_raw(), settings=settings)
    except InvalidInput as exc:
        errors = [FieldError(_named(e.field), _named(e.message)) for e in exc.errors]
        raise InvalidInput(errors) from None


def _named(text: str) -> str:
    """`text` with the events API's names of fields written as this input's."""
    return _API_NAME.sub(lambda match: _GRAPHQL_NAMES[match[1]], text)


def _incident_event_input(cls: type[Any], value: Mapping[str, Any], context: InputContext) -> Any:
    """An IncidentEventInput from its input value, as graphql-core coerced it (each field
    already of its type), instead of Strawberry's generic conversion (see `_change_input`),
    which took about a tenth of a trigger's CPU to convert the nested input."""
    payload, images, links = value.get("payload"), value.get("images"), value.get("links")
    return cls(
        event_action=value["eventAction"],
        routing_key=value.get("routingKey"),
        service_id=value.get("serviceId"),
        dedup_key=value.get("dedupKey"),
        payload=None if payload is None else _payload(payload),
        images=None
        if images is None
        else [
            IncidentImageInput(src=i["src"], href=i.get("href"), alt=i.get("alt")) for i in images
        ],
        links=None
        if links is None
        else [LinkInput(href=link["href"], text=link.get("text")) for link in links],
        client=value.get("client"),
        client_url=value.get("clientUrl"),
    )


def _payload(value: Mapping[str, Any]) -> IncidentPayloadInput:
    return IncidentPayloadInput(
        summary=value.get("summary"),
        source=value.get("source"),
        severity=value.get("severity"),
        timestamp=value.get("timestamp"),
        component=value.get("component"),
        group=value.get("group"),
        event_class=value.get("class"),
        custom_details=value.get("customDetails"),
    )


get_object_definition(IncidentEventInput, strict=True).from_input = _incident_event_input


@strawberry.type(description="The event was processed; a dropped one changed nothing.")
class IncidentEventAccepted:
    outcome: IncidentEventOutcome  # type: ignore[valid-type]
    dedup_key: str
    incident_key: str | None
    incident: Incident | None
    reason: str | None = strawberry.field(description="Why a DROPPED event changed nothing.")
    entry_id: strawberry.ID


@strawberry.type(description="No service of the workspace has that routing key (or id).")
class InvalidRoutingKey:
    code: str
    message: str


IncidentEventResult = Annotated[
    IncidentEventAccepted | InvalidRoutingKey | InvalidEvent,
    strawberry.union("IncidentEventResult"),
]


def _note(info: Info, note: str | None) -> str | None:
    limit = info.context.settings.max_summary_length
    if note is not None and len(note) > limit:
        raise public_error("BAD_USER_INPUT", f"note must be at most {limit} characters.")
    problem = None if note is None else validation.text_problem(note)
    if problem is not None:  # a NUL was refused as over the length
        raise public_error("BAD_USER_INPUT", f"note {problem}.")
    return note or None


async def _transition(
    info: Info, move: Callable[..., Awaitable[IncidentRow]], incident_id: str, note: str | None
) -> Incident:
    """A person acknowledges or resolves: the incident after it, or the public error."""
    principal = await info.context.require(Scope.EVENTS_WRITE)
    try:
        row = await move(
            principal=principal,
            incident_id=incident_id,
            note=_note(info, note),
            publisher=info.context.publisher,
        )
    except incidents.IncidentNotFound as exc:
        raise public_error("NOT_FOUND", str(exc)) from None
    except incidents.IncidentConflict as exc:
        raise public_error("CONFLICT", str(exc)) from None
    return Incident.from_row(row)


async def _service(workspace_id: str, event: IncidentEvent) -> Service | InvalidRoutingKey:
    """The event's service, or why there is none."""
    found = await incidents.find_service(
        workspace_id=workspace_id, routing_key=event.routing_key, service_id=event.service_id
    )
    if found is not None:
        return found
    message = await incidents.service_not_found(
        workspace_id=workspace_id, routing_key=event.routing_key, service_id=event.service_id
    )
    return InvalidRoutingKey(code="INVALID_ROUTING_KEY", message=message)


def _accepted(result: incidents.EventResult) -> IncidentEventAccepted:
    row = result.incident
    return IncidentEventAccepted(
        outcome=result.outcome,
        dedup_key=result.dedup_key,
        incident_key=row.id if row else None,
        incident=Incident.from_row(row) if row else None,
        reason=result.reason,
        entry_id=strawberry.ID(str(result.entry.id)),
    )


def _rendered(outcome: Any) -> Any:
    """A list item's result: accepted, an InvalidRoutingKey as it is, or the exception it
    failed with (graphql-core reports it at the item's index)."""
    if isinstance(outcome, incidents.EventResult):
        return _accepted(outcome)
    return outcome


@strawberry.type
class IncidentMutation:
    @strawberry.mutation(description="Trigger, acknowledge or resolve (`POST /api/events`).")
    async def send_incident_event(
        self, info: Info, input: IncidentEventInput
    ) -> IncidentEventResult:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        try:
            event = _validate(input, info.context.settings)
        except InvalidInput as exc:
            return InvalidEvent.from_error(exc)
        service = await _service(principal.workspace_id, event)
        if isinstance(service, InvalidRoutingKey):
            return service
        result = await incidents.send_event(
            principal=principal,
            event=event,
            service=service,
            publisher=info.context.publisher,
            settings=info.context.settings,
        )
        return _accepted(result)

    @strawberry.mutation(
        description=(
            "Send many incident events in one call (at most "
            "`OPSGRAPH_MAX_INCIDENT_EVENTS_PER_CALL`; concurrent `POST /api/events` and "
            "`/v2/enqueue` requests run as such calls, in the order they arrived). Each "
            "input has its own result, in order, as `sendIncidentEvent` answers it when sent "
            "after the inputs before it; one that fails otherwise is null with an error at "
            "its index."
        )
    )
    async def send_incident_events(
        self, info: Info, inputs: list[IncidentEventInput]
    ) -> list[IncidentEventResult | None]:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        context = info.context
        settings = context.settings

        async def record(events: list[IncidentEvent]) -> list[Any]:
            # A lookup that fails is its own event's outcome (an error at its index).
            services = await asyncio.gather(
                *(_service(principal.workspace_id, e) for e in events), return_exceptions=True
            )
            for service in services:
                if isinstance(service, BaseException) and not isinstance(service, Exception):
                    raise service  # cancelled: so is the call
            found = [
                (e, s) for e, s in zip(events, services, strict=True) if isinstance(s, Service)
            ]
            sent = iter(
                await incidents.send_events(
                    principal=principal,
                    items=found,
                    publisher=context.publisher,
                    settings=settings,
                )
            )
            # Else an InvalidRoutingKey, or the lookup's error.
            return [next(sent) if isinstance(s, Service) else s for s in services]

        results = await record_each(
            inputs,
            limit=settings.max_incident_events_per_call,
            noun="events",
            validate=lambda item: _validate(item, settings),
            record=record,
            render=_rendered,
            validated=context.validated,
        )
        return cast(list[IncidentEventResult | None], results)

    @strawberry.mutation(description="Acknowledge an incident; the actor is the key's name.")
    async def acknowledge_incident(
        self, info: Info, id: strawberry.ID, note: str | None = None
    ) -> Incident:
        return await _transition(info, incidents.acknowledge_incident, str(id), note)

    @strawberry.mutation(description="Resolve an incident; the actor is the key's name.")
    async def resolve_incident(
        self, info: Info, id: strawberry.ID, note: str | None = None
    ) -> Incident:
        return await _transition(info, incidents.resolve_incident, str(id), note)

    @strawberry.mutation(
        description="Add a note to an incident (open or resolved): an INCIDENT_ANNOTATED "
        "entry on its timeline; the actor is the key's name."
    )
    async def annotate_incident(self, info: Info, id: strawberry.ID, note: str) -> Incident:
        principal = await info.context.require(Scope.EVENTS_WRITE)
        text = _note(info, note.strip())
        if text is None:
            raise public_error("BAD_USER_INPUT", "note must not be empty.")
        try:
            row, _ = await incidents.annotate_incident(
                principal=principal,
                incident_id=str(id),
                note=text,
                publisher=info.context.publisher,
            )
        except incidents.IncidentNotFound as exc:
            raise public_error("NOT_FOUND", str(exc)) from None
        return Incident.from_row(row)
