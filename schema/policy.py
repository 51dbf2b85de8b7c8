"""Policies: the `Policy` type, `policies` and the admin's create/update/delete mutations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from graphql import GraphQLError

from models.policy import MatchOp as MatchOpModel
from models.policy import Policy as PolicyRow
from models.policy import PolicyAction as PolicyActionModel
from resolvers import policies
from resolvers.audit import audit
from resolvers.auth import Scope
from schema.context import Info, public_error
from schema.scalars import JSON

PolicyAction = strawberry.enum(PolicyActionModel, name="PolicyAction")
MatchOp = strawberry.enum(MatchOpModel, name="MatchOp")


@strawberry.input(description="A predicate on one `inputPayload` field; `path` is dotted.")
class InputMatch:
    path: str
    op: MatchOp  # type: ignore[valid-type]
    value: JSON


@strawberry.input(
    description="A policy; a condition left out (or null) holds for every tool call, and an "
    "empty text condition is refused."
)
class PolicyInput:
    name: str
    action: PolicyAction  # type: ignore[valid-type]
    tool_name: str | None = strawberry.field(default=None, description="A glob, e.g. deploy*.")
    action_hint: str | None = None
    agent_id: str | None = strawberry.field(default=None, description="A glob.")
    input_matches: list[InputMatch] | None = None
    incident_open_on_service_from: str | None = strawberry.field(
        default=None,
        description="Match only while the service named by this input field has an open "
        "incident (triggered or acknowledged).",
    )
    dry_run: bool | None = False  # null: false
    description: str | None = None

    def to_raw(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": PolicyActionModel(self.action).value,
            "toolName": self.tool_name,
            "actionHint": self.action_hint,
            "agentId": self.agent_id,
            "inputMatches": [
                {"path": m.path, "op": MatchOpModel(m.op).value, "value": m.value}
                for m in self.input_matches or []
            ],
            "incidentOpenOnServiceFrom": self.incident_open_on_service_from,
            "dryRun": bool(self.dry_run),
            "description": self.description,
        }


@strawberry.type(description="One predicate of a policy on an `inputPayload` field.")
class PolicyInputMatch:
    path: str
    op: MatchOp  # type: ignore[valid-type]
    value: JSON


@strawberry.type(description="What a tool call may do; `version` grows with every update.")
class Policy:
    instance: strawberry.Private[PolicyRow]
    id: strawberry.ID
    name: str
    description: str | None
    action: PolicyAction  # type: ignore[valid-type]
    tool_name: str | None
    action_hint: str | None
    agent_id: str | None
    input_matches: list[PolicyInputMatch]
    incident_open_on_service_from: str | None
    dry_run: bool
    version: int
    created_by: str | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: PolicyRow) -> Policy:
        return cls(
            instance=row,
            id=strawberry.ID(row.id),
            name=row.name,
            description=row.description,
            action=row.action,
            tool_name=row.tool_name,
            action_hint=row.action_hint,
            agent_id=row.agent_id,
            input_matches=[
                PolicyInputMatch(
                    path=m["path"], op=MatchOpModel(m["op"]), value=cast(JSON, m.get("value"))
                )
                for m in row.input_matches
            ],
            incident_open_on_service_from=row.incident_open_on_service_from,
            dry_run=row.dry_run,
            version=row.version,
            created_by=row.created_by,
            updated_by=row.updated_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _invalid(error: policies.InvalidPolicy) -> GraphQLError:
    fields = [{"field": e.field, "message": e.message} for e in error.errors]
    return GraphQLError(error.message, extensions={"code": "BAD_USER_INPUT", "fields": fields})


def _validated(input: PolicyInput, info: Info) -> policies.PolicyData:
    try:
        return policies.validate_policy(input.to_raw(), settings=info.context.settings)
    except policies.InvalidPolicy as exc:
        raise _invalid(exc) from None


@strawberry.type
class PolicyQuery:
    @strawberry.field(description="The workspace's policies, in evaluation order.")
    async def policies(self, info: Info) -> list[Policy]:
        principal = await info.context.require(Scope.READ)
        rows = await policies.list_policies(workspace_id=principal.workspace_id)
        return [Policy.from_row(row) for row in rows]


@strawberry.type
class PolicyMutation:
    @strawberry.mutation(description="Create a policy (admin).")
    async def create_policy(self, info: Info, input: PolicyInput) -> Policy:
        principal = await info.context.require(Scope.ADMIN)
        data = _validated(input, info)
        try:
            row = await policies.create_policy(
                principal=principal, data=data, max_policies=info.context.settings.max_policies
            )
        except (policies.DuplicatePolicyName, policies.TooManyPolicies) as exc:
            raise public_error("CONFLICT", str(exc)) from None
        audit(principal, f"created policy {row.name!r} ({row.id})")
        return Policy.from_row(row)

    @strawberry.mutation(
        description="Replace a policy's definition; its version grows (admin). With "
        "`expectedVersion`, the version the definition was edited from, a policy changed since "
        "is left as it is and the answer is CONFLICT (no one's edit undone unseen)."
    )
    async def update_policy(
        self,
        info: Info,
        id: strawberry.ID,
        input: PolicyInput,
        expected_version: int | None = None,
    ) -> Policy:
        principal = await info.context.require(Scope.ADMIN)
        if expected_version is not None and expected_version < 1:
            raise public_error("BAD_USER_INPUT", "expectedVersion: must be 1 or more.")
        data = _validated(input, info)
        try:
            row = await policies.update_policy(
                principal=principal,
                policy_id=str(id),
                data=data,
                expected_version=expected_version,
            )
        except (policies.DuplicatePolicyName, policies.PolicyChanged) as exc:
            raise public_error("CONFLICT", str(exc)) from None
        except policies.PolicyNotFound as exc:
            raise public_error("NOT_FOUND", str(exc)) from None
        audit(principal, f"updated policy {row.name!r} ({row.id}) to version {row.version}")
        return Policy.from_row(row)

    @strawberry.mutation(description="Delete a policy; false if there was none (admin).")
    async def delete_policy(self, info: Info, id: strawberry.ID) -> bool:
        principal = await info.context.require(Scope.ADMIN)
        deleted = await policies.delete_policy(principal=principal, policy_id=str(id))
        if deleted is not None:
            audit(principal, f"deleted policy {deleted!r} ({id})")
        return deleted is not None
