"""Policies: what an agent's tool calls may do, checked on every `tool.called`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field
from models.workspace import Workspace


class PolicyAction(StrEnum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"


class MatchOp(StrEnum):
    """How one `inputPayload` field is compared with a policy's value."""

    EQ = "EQ"
    IN = "IN"
    GLOB = "GLOB"
    LT = "LT"
    LTE = "LTE"
    GT = "GT"
    GTE = "GTE"


class Policy(Model):
    """One policy: empty conditions match everything, and `version` grows on each update."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="policies", on_delete=fields.CASCADE
    )
    workspace_id: str
    name = fields.CharField(max_length=200)
    description = fields.TextField(null=True)
    action = fields.CharEnumField(PolicyAction, max_length=24)
    tool_name = fields.CharField(max_length=200, null=True)
    action_hint = fields.CharField(max_length=200, null=True)
    agent_id = fields.CharField(max_length=200, null=True)
    input_matches: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    incident_open_on_service_from = fields.CharField(max_length=200, null=True)
    dry_run = fields.BooleanField(default=False)
    version = fields.IntField(default=1)
    created_by = fields.CharField(max_length=200, null=True)
    updated_by = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "agent_policy"
        unique_together = (("workspace_id", "name"),)
