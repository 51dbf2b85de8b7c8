"""The timeline: one entry per happening, with a monotonic id that is its cursor."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field
from models.workspace import Workspace


class TimelineKind(StrEnum):
    CHANGE = "CHANGE"
    INCIDENT_TRIGGERED = "INCIDENT_TRIGGERED"
    INCIDENT_UPDATED = "INCIDENT_UPDATED"
    INCIDENT_ACKNOWLEDGED = "INCIDENT_ACKNOWLEDGED"
    INCIDENT_RESOLVED = "INCIDENT_RESOLVED"
    INCIDENT_DROPPED = "INCIDENT_DROPPED"
    INCIDENT_ANNOTATED = "INCIDENT_ANNOTATED"
    RUN_STARTED = "RUN_STARTED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_FAILED = "RUN_FAILED"
    TOOL_CALLED = "TOOL_CALLED"
    TOOL_COMPLETED = "TOOL_COMPLETED"
    TOOL_FAILED = "TOOL_FAILED"
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    APPROVAL_DECIDED = "APPROVAL_DECIDED"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    POLICY_VIOLATION = "POLICY_VIOLATION"


class TimelineEntry(Model):
    """One happening on a workspace's timeline."""

    # `seq` numbers a workspace's entries 1, 2, 3, ... in commit order with no holes: it is
    # taken under the workspace row's lock inside the writing transaction. Live
    # subscriptions resume by it, so a reconnecting client never misses an entry.

    id = fields.BigIntField(primary_key=True)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="timeline", on_delete=fields.CASCADE
    )
    workspace_id: str
    seq = fields.BigIntField()
    kind = fields.CharEnumField(TimelineKind, max_length=32)
    occurred_at = fields.DatetimeField()
    summary = fields.TextField()
    service = fields.CharField(max_length=200, null=True)
    environment = fields.CharField(max_length=200, null=True)
    labels: fields.Field[list[str]] = json_field(default=list)
    actor = fields.CharField(max_length=200, null=True)
    details: fields.Field[dict[str, Any] | None] = json_field(null=True)
    subject_type = fields.CharField(max_length=32, null=True)
    subject_id = fields.CharField(max_length=40, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "timeline_entry"
        unique_together = (("workspace_id", "seq"),)
        indexes = (
            ("workspace_id", "occurred_at", "id"),
            ("workspace_id", "service", "occurred_at", "id"),
            ("workspace_id", "kind", "occurred_at", "id"),
            ("subject_type", "subject_id"),
        )


class TimelineLabel(Model):
    """One label of one entry, so label filters use an index instead of scanning JSON."""

    id = fields.BigIntField(primary_key=True)
    entry: fields.ForeignKeyRelation[TimelineEntry] = fields.ForeignKeyField(
        "models.TimelineEntry", related_name="label_rows", on_delete=fields.CASCADE
    )
    entry_id: int
    workspace_id = fields.CharField(max_length=40)
    label = fields.CharField(max_length=200)

    class Meta:
        table = "timeline_label"
        indexes = (("workspace_id", "label", "entry_id"),)
