"""Workspaces, their API keys and their services (which carry routing keys)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.columns import json_field


class Workspace(Model):
    """A tenant: everything else belongs to exactly one workspace."""

    id = fields.CharField(primary_key=True, max_length=40)
    name = fields.CharField(max_length=200)
    # The last timeline sequence number handed out (see resolvers.timeline.record_entry).
    timeline_seq = fields.BigIntField(default=0)
    # Bumped with every policy change, in its transaction (see resolvers.policies).
    policy_version = fields.BigIntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "workspace"


class ApiKey(Model):
    """An API key: only its SHA-256 hash and a short visible prefix are stored."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="api_keys", on_delete=fields.CASCADE
    )
    workspace_id: str
    name = fields.CharField(max_length=200)
    prefix = fields.CharField(max_length=16)
    key_hash = fields.CharField(max_length=64, unique=True)
    scopes: fields.Field[list[str]] = json_field(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"


class Service(Model):
    """A service that incidents and changes attach to, with a hashed routing key."""

    id = fields.CharField(primary_key=True, max_length=40)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="services", on_delete=fields.CASCADE
    )
    workspace_id: str
    name = fields.CharField(max_length=200)
    routing_key_hash = fields.CharField(max_length=64, unique=True)
    routing_key_prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "service"
        unique_together = (("workspace_id", "name"),)
