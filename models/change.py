"""Changes: deploys, builds, config and business events posted by pipelines."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field
from models.workspace import Workspace


class ChangeCategory(StrEnum):
    BUSINESS = "BUSINESS"
    TECHNICAL = "TECHNICAL"
    PROVIDER = "PROVIDER"


class Change(Model):
    """One change event, as posted to `POST /events` or `POST /v2/change/enqueue`."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="changes", on_delete=fields.CASCADE
    )
    workspace_id: str
    name = fields.TextField()
    occurred_at = fields.DatetimeField()
    category = fields.CharEnumField(ChangeCategory, max_length=16)
    source = fields.CharField(max_length=200)
    environment = fields.CharField(max_length=200, null=True)
    service = fields.CharField(max_length=200, null=True)
    labels: fields.Field[list[str]] = json_field(default=list)
    metadata: fields.Field[dict[str, Any]] = json_field(default=dict)
    links: fields.Field[list[dict[str, Any]]] = json_field(default=list)
    actor = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "change"
        indexes = (("workspace_id", "service", "occurred_at"),)
