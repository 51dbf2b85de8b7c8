"""Agent actions: the events agents post, their runs and their tool calls."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field
from models.workspace import Workspace

RUN_KEY_LENGTH = 200  # an agent's own runId


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ToolCallDecision(StrEnum):
    """What the policies decided when the tool was called (`toolCallStatus` on the wire)."""

    ALLOWED = "ALLOWED"
    BLOCKED = "BLOCKED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"


class ToolCallStatus(StrEnum):
    """Where the call is now: its decision, then an approval outcome, then its end."""

    ALLOWED = "ALLOWED"
    BLOCKED = "BLOCKED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class AgentEvent(Model):
    """One accepted agent event: its body hash and first response make `eventId` idempotent."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="agent_events", on_delete=fields.CASCADE
    )
    workspace_id: str
    event_id = fields.CharField(max_length=200)
    event_type = fields.CharField(max_length=32)
    body_hash = fields.CharField(max_length=64)
    body: fields.Field[dict[str, Any]] = json_field(default=dict)
    response: fields.Field[dict[str, Any]] = json_field(default=dict)
    # What the event created or moved (for the GraphQL result of a repeated event).
    run_ref = fields.CharField(max_length=40, null=True)
    tool_call_ref = fields.CharField(max_length=40, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agent_event"
        unique_together = (("workspace_id", "event_id"),)


class Run(Model):
    """One agent run, known to the agent by its own `run_key` (the wire's `runId`)."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="runs", on_delete=fields.CASCADE
    )
    workspace_id: str
    run_key = fields.CharField(max_length=RUN_KEY_LENGTH)
    agent_id = fields.CharField(max_length=200)
    status = fields.CharEnumField(RunStatus, max_length=16, default=RunStatus.RUNNING)
    task = fields.TextField(null=True)
    model = fields.CharField(max_length=200, null=True)
    reason = fields.TextField(null=True)
    agent_context: fields.Field[dict[str, Any]] = json_field(default=dict)
    error = fields.TextField(null=True)
    service = fields.CharField(max_length=200, null=True)
    environment = fields.CharField(max_length=200, null=True)
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agent_run"
        unique_together = (("workspace_id", "run_key"),)
        indexes = (("workspace_id", "started_at", "id"), ("workspace_id", "agent_id"))


class ToolCall(Model):
    """One tool call of a run, with the policy decision taken on it."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="tool_calls", on_delete=fields.CASCADE
    )
    workspace_id: str
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="tool_calls", on_delete=fields.CASCADE
    )
    run_id: str
    call_key = fields.CharField(max_length=200)
    agent_id = fields.CharField(max_length=200)
    tool_name = fields.CharField(max_length=200)
    action_hint = fields.CharField(max_length=200, null=True)
    input_payload: fields.Field[dict[str, Any]] = json_field(default=dict)
    output_payload: fields.Field[dict[str, Any] | None] = json_field(null=True)
    reason = fields.TextField(null=True)
    agent_context: fields.Field[dict[str, Any]] = json_field(default=dict)
    # The service and environment the call targets, when the input or context names them.
    service = fields.CharField(max_length=200, null=True)
    environment = fields.CharField(max_length=200, null=True)
    decision = fields.CharEnumField(ToolCallDecision, max_length=24)
    decision_reason = fields.TextField()
    matched_policies: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    status = fields.CharEnumField(ToolCallStatus, max_length=24)
    violation = fields.TextField(null=True)
    error = fields.TextField(null=True)
    called_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agent_tool_call"
        unique_together = (("run_id", "call_key"),)
        indexes = (("workspace_id", "service", "called_at"), ("workspace_id", "called_at", "id"))
