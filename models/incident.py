"""Incidents: alerts deduplicated per service and dedup key, acknowledged, resolved."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field
from models.ids import ID_COLUMN_LENGTH
from models.workspace import Service, Workspace

# The value of `Incident.open_marker` while an incident is open (NULL once resolved): the
# unique constraint over (service, dedup key, open marker) then allows one open incident per
# key, and any number of resolved ones, because NULLs never collide.
OPEN = 1
# Ids (ours and services') are at most this long; Tortoise refuses longer lookup values.
ID_LENGTH = ID_COLUMN_LENGTH
# Who acted (a key's name, "service:" and a service's name): as long as timeline actors.
ACTOR_LENGTH = 200


class Severity(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Incident(Model):
    """One incident: every trigger with its dedup key on its service while it is open."""

    id = fields.CharField(primary_key=True, max_length=ID_LENGTH)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="incidents", on_delete=fields.CASCADE
    )
    workspace_id: str
    service: fields.ForeignKeyRelation[Service] = fields.ForeignKeyField(
        "models.Service", related_name="incidents", on_delete=fields.CASCADE
    )
    service_id: str
    dedup_key = fields.CharField(max_length=255)
    open_marker = fields.SmallIntField(null=True, default=OPEN)
    status = fields.CharEnumField(IncidentStatus, max_length=16, default=IncidentStatus.TRIGGERED)
    alert_count = fields.IntField(default=1)
    opened_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    acknowledged_at = fields.DatetimeField(null=True)
    acknowledged_by = fields.CharField(max_length=ACTOR_LENGTH, null=True)
    resolved_at = fields.DatetimeField(null=True)
    resolved_by = fields.CharField(max_length=ACTOR_LENGTH, null=True)
    # The latest trigger's payload (each trigger is also kept as an IncidentAlert).
    summary = fields.TextField()
    source = fields.CharField(max_length=255)
    severity = fields.CharEnumField(Severity, max_length=16)
    sent_at = fields.DatetimeField(null=True)
    component = fields.CharField(max_length=255, null=True)
    alert_group = fields.CharField(max_length=255, null=True)
    event_class = fields.CharField(max_length=255, null=True)
    custom_details: fields.Field[dict[str, Any]] = json_field(default=dict)
    images: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    links: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    client = fields.CharField(max_length=255, null=True)
    client_url = fields.CharField(max_length=2048, null=True)

    class Meta:
        table = "incident"
        unique_together = (("service_id", "dedup_key", "open_marker"),)
        indexes = (
            ("workspace_id", "opened_at", "id"),
            ("service_id", "dedup_key", "opened_at"),
        )

    @property
    def is_open(self) -> bool:
        return self.open_marker is not None


class IncidentAlert(Model):
    """One trigger event as received, the alert history of its incident."""

    id = fields.BigIntField(primary_key=True)
    incident: fields.ForeignKeyRelation[Incident] = fields.ForeignKeyField(
        "models.Incident", related_name="alerts", on_delete=fields.CASCADE
    )
    incident_id: str
    received_at = fields.DatetimeField()
    actor = fields.CharField(max_length=ACTOR_LENGTH, null=True)
    summary = fields.TextField()
    source = fields.CharField(max_length=255)
    severity = fields.CharEnumField(Severity, max_length=16)
    sent_at = fields.DatetimeField(null=True)
    component = fields.CharField(max_length=255, null=True)
    alert_group = fields.CharField(max_length=255, null=True)
    event_class = fields.CharField(max_length=255, null=True)
    custom_details: fields.Field[dict[str, Any]] = json_field(default=dict)
    images: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    links: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    client = fields.CharField(max_length=255, null=True)
    client_url = fields.CharField(max_length=2048, null=True)

    class Meta:
        table = "incident_alert"
        indexes = (("incident_id", "received_at", "id"),)
