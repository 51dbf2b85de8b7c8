"""Approvals: a human's yes or no on a tool call that a policy held back."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.agent import Run, ToolCall
from models.workspace import Workspace


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class Approval(Model):
    """One approval request: pending until decided by a person or expired (never approved)."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="approvals", on_delete=fields.CASCADE
    )
    workspace_id: str
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="approvals", on_delete=fields.CASCADE
    )
    run_id: str
    tool_call: fields.ForeignKeyRelation[ToolCall] = fields.ForeignKeyField(
        "models.ToolCall", related_name="approvals", on_delete=fields.CASCADE
    )
    tool_call_id: str
    status = fields.CharEnumField(ApprovalStatus, max_length=16, default=ApprovalStatus.PENDING)
    reason = fields.TextField()
    requested_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)
    decided_by = fields.CharField(max_length=200, null=True)
    comment = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "agent_approval"
        indexes = (
            ("workspace_id", "status", "requested_at"),
            ("workspace_id", "requested_at", "id"),
            ("status", "expires_at"),
        )
