"""Policies: validating, storing and versioning them, and deciding a tool call with them."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models.ids import new_id
from models.policy import MatchOp, Policy, PolicyAction
from models.workspace import Workspace
from opsgraph.settings import Settings
from resolvers import incident_state
from resolvers.auth import Principal, Scope, unreadable
from resolvers.errors import FieldError
from resolvers.policy_eval import (
    CallFacts,
    Decision,
    InputMatch,
    PolicySet,
    PolicySpec,
    evaluate,
)
from resolvers.policy_eval import services_to_check as _services_to_check
from resolvers.validation import Checker, text_problem

ACTIONS = [action.value for action in PolicyAction]
OPS = [op.value for op in MatchOp]
_NUMERIC = {MatchOp.LT, MatchOp.LTE, MatchOp.GT, MatchOp.GTE}


class InvalidPolicy(Exception):
    """The policy input failed validation; one FieldError per bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "Invalid policy: " + "; ".join(error.render() for error in self.errors) + "."


class PolicyNotFound(Exception):
    """No policy with that id in the workspace."""


class PolicyChanged(Exception):
    """The policy is no longer at the version the update was made from."""


class DuplicatePolicyName(Exception):
    """Another policy of the workspace already has that name."""


class TooManyPolicies(Exception):
    """The workspace holds as many policies as `max_policies` allows."""


@dataclass(frozen=True, slots=True)
class PolicyData:
    """A validated policy input."""

    name: str
    action: PolicyAction
    tool_name: str | None
    action_hint: str | None
    agent_id: str | None
    input_matches: list[dict[str, Any]]
    incident_open_on_service_from: str | None
    dry_run: bool
    description: str | None

    def columns(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "tool_name": self.tool_name,
            "action_hint": self.action_hint,
            "agent_id": self.agent_id,
            "input_matches": self.input_matches,
            "incident_open_on_service_from": self.incident_open_on_service_from,
            "dry_run": self.dry_run,
            "description": self.description,
        }


_PATH_MAX_LENGTH = 200


def _path_ok(path: str) -> bool:
    return all(segment.strip() for segment in path.split("."))


def _check_match(
    check: Checker, index: int, item: object, *, glob_max_length: int
) -> dict[str, Any] | None:
    name = f"inputMatches[{index}]"
    if not isinstance(item, Mapping):
        check.error(name, "must be an object with path, op and value")
        return None
    path, op, value = item.get("path"), item.get("op"), item.get("value", None)
    if isinstance(path, str):
        path = path.strip()  # as a condition is: a space around it matched no field
    if isinstance(path, str) and len(path) > _PATH_MAX_LENGTH:
        check.error(f"{name}.path", f"must be at most {_PATH_MAX_LENGTH} characters")
        return None
    if not isinstance(path, str) or not path or not _path_ok(path):
        check.error(f"{name}.path", "must be a dotted path such as environment or target.env")
        return None
    for field_name, part in (("path", path), ("value", value)):
        problem = text_problem(part)
        if problem is not None:
            check.error(f"{name}.{field_name}", problem)
            return None
    if op not in OPS:
        check.error(f"{name}.op", f"must be one of {', '.join(OPS)}")
        return None
    match_op = MatchOp(op)
    if match_op is MatchOp.IN and not isinstance(value, list):
        check.error(f"{name}.value", "must be a list for IN")
    elif match_op is MatchOp.GLOB and not isinstance(value, str):
        check.error(f"{name}.value", "must be a string pattern for GLOB")
    elif match_op is MatchOp.GLOB and len(value) > glob_max_length:
        check.error(f"{name}.value", f"must be at most {glob_max_length} characters for GLOB")
    elif match_op in _NUMERIC and (isinstance(value, bool) or not isinstance(value, int | float)):
        check.error(f"{name}.value", f"must be a number for {op}")
    else:
        return {"path": path, "op": match_op.value, "value": value}
    return None


def _condition(check: Checker, name: str) -> str | None:
    """A condition's text without the spaces around it (`" deploy "` matched no tool, and
    a freeze of `"service "` no field: a BLOCK that blocked nothing), or None when it is
    left out (or null): it then holds for any call. An empty one is refused rather than
    read as left out, which would turn a policy meant for one tool (an admin who cleared
    the field, a script sending "") into one for every call."""
    value = check.text(name)
    if value is not None and not value.strip():
        check.error(name, "must not be empty: leave it out (or null) to match any")
        return None
    return None if value is None else value.strip()


def validate_policy(raw: Mapping[str, Any], *, settings: Settings) -> PolicyData:
    """Check a policy input field by field; raises InvalidPolicy naming every bad field."""
    check = Checker(raw)
    name = check.text("name", required=True)
    problem = None if name is None else unreadable(name.strip())
    if problem:  # it is in every reason an agent is answered, as a key's name is an actor
        check.error("name", problem)
    action = check.choice("action", ACTIONS, required=True)
    tool_name = _condition(check, "toolName")
    action_hint = _condition(check, "actionHint")
    agent_id = _condition(check, "agentId")
    service_from = _condition(check, "incidentOpenOnServiceFrom")
    if service_from is not None and not _path_ok(service_from):
        check.error("incidentOpenOnServiceFrom", "must be a dotted path such as service")
    description = check.text("description", max_length=2000) or None
    matches: list[dict[str, Any]] = []
    raw_matches = raw.get("inputMatches")
    if raw_matches is not None and not isinstance(raw_matches, list):
        check.error("inputMatches", "must be a list")
    elif raw_matches:
        size = len(json.dumps(raw_matches, default=str).encode("utf-8"))
        if size > settings.max_metadata_bytes:
            check.error("inputMatches", f"must be at most {settings.max_metadata_bytes} bytes")
        else:
            for index, item in enumerate(raw_matches):
                checked = _check_match(
                    check, index, item, glob_max_length=settings.policy_glob_max_length
                )
                if checked is not None:
                    matches.append(checked)
    dry_run = raw.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        check.error("dryRun", "must be a boolean")
    if check.errors:
        raise InvalidPolicy(list(check.errors))
    assert name is not None and action is not None
    return PolicyData(
        name=name.strip(),
        action=PolicyAction(action),
        tool_name=tool_name,
        action_hint=action_hint,
        agent_id=agent_id,
        input_matches=matches,
        incident_open_on_service_from=service_from,
        dry_run=bool(dry_run),
        description=description,
    )


async def create_policy(
    *, principal: Principal, data: PolicyData, max_policies: int | None = None
) -> Policy:
    """Store a new policy at version 1 (admin only); TooManyPolicies past `max_policies`
    (every tool call is evaluated against them: their number bounds what a call costs)."""
    principal.require(Scope.ADMIN)
    try:
        async with in_transaction():
            await _one_change_at_a_time(principal.workspace_id)
            if max_policies is not None:  # counted after the creates before it committed
                held = await Policy.filter(workspace_id=principal.workspace_id).count()
                if held >= max_policies:
                    raise TooManyPolicies(
                        f"A workspace holds at most {max_policies} policies; delete one first."
                    )
            policy = await Policy.create(
                id=new_id("pol"),
                workspace_id=principal.workspace_id,
                created_by=principal.name,
                updated_by=principal.name,
                **data.columns(),
            )
            await _bump_version(principal.workspace_id)
            return policy
    except IntegrityError:
        raise DuplicatePolicyName(f"A policy named {data.name!r} already exists.") from None


async def update_policy(
    *, principal: Principal, policy_id: str, data: PolicyData, expected_version: int | None = None
) -> Policy:
    """Replace a policy's definition and bump its version (admin only). With
    `expected_version` (the version the new definition was made from), a policy changed
    meanwhile is left as it is: PolicyChanged, rather than another person's edit undone."""
    principal.require(Scope.ADMIN)
    rows = Policy.filter(id=policy_id, workspace_id=principal.workspace_id)
    try:
        async with in_transaction():
            await _one_change_at_a_time(principal.workspace_id)
            matching = rows if expected_version is None else rows.filter(version=expected_version)
            updated = await matching.update(
                version=F("version") + 1,
                updated_by=principal.name,
                updated_at=datetime.now(UTC),
                **data.columns(),
            )
            if updated:
                await _bump_version(principal.workspace_id)
    except IntegrityError:
        raise DuplicatePolicyName(f"A policy named {data.name!r} already exists.") from None
    if not updated:
        current = await rows.first()
        if current is None:
            raise PolicyNotFound(f"No policy {policy_id!r} in this workspace.")
        raise PolicyChanged(
            f"Policy {current.name!r} has changed since version {expected_version} (it is at "
            f"version {current.version}, by {current.updated_by or 'someone'}): reload it and "
            "edit again."
        )
    return await Policy.get(id=policy_id)


async def delete_policy(*, principal: Principal, policy_id: str) -> str | None:
    """Delete a policy (admin only); its name, or None if there was none. Past decisions
    keep its name and version."""
    principal.require(Scope.ADMIN)
    rows = Policy.filter(id=policy_id, workspace_id=principal.workspace_id)
    async with in_transaction():
        await _one_change_at_a_time(principal.workspace_id)
        names = await rows.values_list("name", flat=True)
        deleted = await rows.delete()
        if deleted:
            await _bump_version(principal.workspace_id)
    return str(names[0]) if deleted and names else None


async def _one_change_at_a_time(workspace_id: str) -> None:
    """Lock the workspace's row first in a transaction that changes its policies: they
    change one after the other. Counted without it, six creates at once against a limit of
    two stored five. (No transaction that writes the timeline locks a policy.)"""
    await Workspace.filter(id=workspace_id).select_for_update(no_key=True).only("id")


async def _bump_version(workspace_id: str) -> None:
    """Tell every process's policy cache that the workspace's policies changed.

    Called inside the change's transaction, after its policy write, so the new version and
    the change commit together.
    """
    await Workspace.filter(id=workspace_id).update(policy_version=F("policy_version") + 1)


async def list_policies(*, workspace_id: str) -> list[Policy]:
    """The workspace's policies, oldest first (the order they are evaluated in)."""
    return await Policy.filter(workspace_id=workspace_id).order_by("created_at", "id")


async def get_policy(*, workspace_id: str, policy_id: str) -> Policy | None:
    """One policy of the workspace, or None."""
    return await Policy.get_or_none(id=policy_id, workspace_id=workspace_id)


def to_spec(row: Policy) -> PolicySpec:
    """The pure evaluation's view of a stored policy."""
    return PolicySpec(
        id=row.id,
        name=row.name,
        action=PolicyAction(row.action),
        version=row.version,
        tool_name=row.tool_name,
        action_hint=row.action_hint,
        agent_id=row.agent_id,
        input_matches=tuple(
            InputMatch(path=m["path"], op=MatchOp(m["op"]), value=m.get("value"))
            for m in row.input_matches
        ),
        incident_open_on_service_from=row.incident_open_on_service_from,
        dry_run=row.dry_run,
    )


async def policy_version(*, workspace_id: str) -> int:
    """The workspace's policy version (0 for a workspace that never had a policy)."""
    workspace = await Workspace.filter(id=workspace_id).only("id", "policy_version").first()
    return workspace.policy_version if workspace is not None else 0


class PolicyCache:
    """Each workspace's compiled policies, kept while its `policy_version` is unchanged.

    The caller reads the version first and the policies after it, so a cached list is
    never older than the version it is filed under: a change committed in between only
    makes the next call reload. At most `size` workspaces are kept (least recently used
    dropped first).
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[int, PolicySet]] = OrderedDict()

    async def policies(self, *, workspace_id: str, version: int, size: int) -> PolicySet:
        """The workspace's policies in evaluation order, loaded unless cached at `version`."""
        cached = self._entries.get(workspace_id)
        if cached is not None and cached[0] == version:
            self._entries.move_to_end(workspace_id)
            return cached[1]
        specs = PolicySet.of(to_spec(row) for row in await list_policies(workspace_id=workspace_id))
        self._entries[workspace_id] = (version, specs)
        self._entries.move_to_end(workspace_id)
        while len(self._entries) > max(1, size):
            self._entries.popitem(last=False)
        return specs


_cache = PolicyCache()


async def decide_tool_call(
    *, workspace_id: str, call: CallFacts, settings: Settings, version: int | None = None
) -> Decision:
    """Evaluate a tool call against the workspace's policies and live incident state.

    `version` is the workspace's `policy_version` as the caller read it for this call
    (read here when None); the cached policies are used only at that same version.
    """
    if version is None:
        version = await policy_version(workspace_id=workspace_id)
    policies = await _cache.policies(
        workspace_id=workspace_id, version=version, size=settings.policy_cache_workspaces
    )
    specs = policies.for_call(call)
    wanted = _services_to_check(specs, call.input_payload)
    open_services = (
        await incident_state.services_with_open_incidents(workspace_id=workspace_id, names=wanted)
        if wanted
        else frozenset()
    )
    return evaluate(specs, call, open_incident_services=open_services, static_checked=True)
