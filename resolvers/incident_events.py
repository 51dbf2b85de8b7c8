"""Incident events: validating an Events API body and the pure dedup decision.

The body is the one of `POST /api/events` and PagerDuty's Events API v2 (`/v2/enqueue`):
`routing_key` or `service_id`, `event_action`, `dedup_key`, `payload` (`summary`,
`source`, `severity`, `timestamp`, `component`, `group`, `class`, `custom_details`), and
beside the payload `images`, `links`, `client`, `client_url`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from models.incident import IncidentStatus, Severity
from opsgraph.settings import Settings
from resolvers.validation import Checker, TimeWindow

MAX_SOURCE_LENGTH = 255
MAX_URL_LENGTH = 2048


class EventAction(StrEnum):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


ACTIONS = [action.value for action in EventAction]
SEVERITIES = [severity.value for severity in Severity]


@dataclass(frozen=True, slots=True)
class AlertData:
    """What one trigger says about the problem; kept per alert and, latest, on the incident."""

    summary: str
    source: str
    severity: Severity
    sent_at: datetime | None = None
    component: str | None = None
    group: str | None = None
    event_class: str | None = None
    custom_details: dict[str, Any] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    client: str | None = None
    client_url: str | None = None

    def columns(self) -> dict[str, Any]:
        """The model columns these fields are stored in (on Incident and IncidentAlert)."""
        return {
            "summary": self.summary,
            "source": self.source,
            "severity": self.severity,
            "sent_at": self.sent_at,
            "component": self.component,
            "alert_group": self.group,
            "event_class": self.event_class,
            "custom_details": self.custom_details,
            "images": self.images,
            "links": self.links,
            "client": self.client,
            "client_url": self.client_url,
        }


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A validated event; `alert` is set exactly for triggers."""

    action: EventAction
    dedup_key: str
    routing_key: str | None = None
    service_id: str | None = None
    alert: AlertData | None = None


def validate_event(raw: Mapping[str, Any], *, settings: Settings) -> IncidentEvent:
    """Check an event field by field; raises InvalidInput naming every bad field."""
    check = Checker(raw)
    routing_key = check.text("routing_key")
    service_id = check.text("service_id")
    if raw.get("routing_key") is None and raw.get("service_id") is None:
        check.error("routing_key", "is required (or service_id)")
    action = check.choice("event_action", ACTIONS, required=True)
    dedup_key = check.text("dedup_key", required=True, max_length=settings.max_dedup_key_length)
    # An acknowledge or resolve needs no payload, but what it sends is checked all the same:
    # a malformed event is refused, not applied. Its empty strings count as absent (a
    # sender's template that renders nothing on a resolve must not keep the incident open).
    trigger = action == EventAction.TRIGGER
    alert_check = check
    if not trigger:
        alert_check = Checker(_without_empty(raw))
        alert_check.errors = check.errors  # its errors are this event's
    alert = _alert(alert_check, settings, trigger=trigger)
    check.raise_if_invalid()
    assert action is not None and dedup_key is not None
    return IncidentEvent(
        action=EventAction(action),
        dedup_key=dedup_key,
        routing_key=routing_key,
        service_id=service_id,
        alert=alert,
    )


def _without_empty(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` without its empty strings, at the top and in its payload."""
    kept = {name: value for name, value in raw.items() if value != ""}
    payload = kept.get("payload")
    if isinstance(payload, Mapping):
        kept["payload"] = {name: value for name, value in payload.items() if value != ""}
    return kept


def _alert(check: Checker, settings: Settings, *, trigger: bool) -> AlertData | None:
    """A trigger's alert; for other actions None, once what they send is checked (the
    payload's fields optional)."""
    payload = check.nested("payload", required=trigger)
    images = _images(check, "images", max_items=settings.max_labels)
    links = check.links("links", max_items=settings.max_labels)
    client = check.text("client", max_length=MAX_SOURCE_LENGTH)
    client_url = check.text("client_url", max_length=MAX_URL_LENGTH)
    if payload is None:
        return None
    summary = payload.text("summary", required=trigger, max_length=settings.max_summary_length)
    source = payload.text("source", required=trigger, max_length=MAX_SOURCE_LENGTH)
    severity = payload.choice("severity", SEVERITIES, required=trigger)
    sent_at = payload.timestamp("timestamp", window=TimeWindow.of(settings))
    component = payload.text("component", max_length=MAX_SOURCE_LENGTH)
    group = payload.text("group", max_length=MAX_SOURCE_LENGTH)
    event_class = payload.text("class", max_length=MAX_SOURCE_LENGTH)
    details = payload.json_object("custom_details", max_bytes=settings.max_metadata_bytes)
    if not trigger or summary is None or source is None or severity is None:
        return None
    return AlertData(
        summary=summary,
        source=source,
        severity=Severity(severity),
        sent_at=sent_at,
        component=component,
        group=group,
        event_class=event_class,
        custom_details=details,
        images=images,
        links=links,
        client=client,
        client_url=client_url,
    )


def _images(check: Checker, name: str, *, max_items: int) -> list[dict[str, Any]]:
    value = check.raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items:
        check.error(name, f"must be a list of at most {max_items} images")
        return []
    images: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            check.error(f"{name}[{index}]", "must be an object with src")
            continue
        image = Checker(item, prefix=f"{check.prefix}{name}[{index}].")
        image.errors = check.errors
        src = image.text("src", required=True, max_length=MAX_URL_LENGTH)
        href = image.text("href", max_length=MAX_URL_LENGTH)
        alt = image.text("alt", max_length=MAX_SOURCE_LENGTH)
        if src is not None:
            images.append({"src": src, "href": href, "alt": alt})
    return images


def new_dedup_key() -> str:
    """A generated dedup key for a trigger sent without one (32 hex digits, as PagerDuty's)."""
    return secrets.token_hex(16)


class Step(StrEnum):
    OPEN = "OPEN"
    UPDATE = "UPDATE"
    ACKNOWLEDGE = "ACKNOWLEDGE"
    RESOLVE = "RESOLVE"
    DROP = "DROP"


@dataclass(frozen=True, slots=True)
class Plan:
    """What an event does; `reason` says why a dropped event changes nothing."""

    step: Step
    reason: str | None = None


def plan_event(action: EventAction, open_status: IncidentStatus | None, *, known: bool) -> Plan:
    """Decide an event's effect from the status of its key's open incident (None when no
    incident is open) and whether the key ever had one on this service."""
    if action is EventAction.TRIGGER:
        return Plan(Step.OPEN if open_status is None else Step.UPDATE)
    if open_status is None:
        reason = "the incident is already resolved" if known else "no incident has this dedup_key"
        return Plan(Step.DROP, reason)
    if action is EventAction.RESOLVE:
        return Plan(Step.RESOLVE)
    if open_status is IncidentStatus.ACKNOWLEDGED:
        return Plan(Step.DROP, "the incident is already acknowledged")
    return Plan(Step.ACKNOWLEDGE)
