"""Policy evaluation: a pure function from policies, a tool call and live facts to a decision.

No I/O here: the caller loads the policies and the set of services with an open incident
(see `services_to_check`), so every rule is tested without a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any

from models.agent import ToolCallDecision
from models.policy import MatchOp, PolicyAction

# block beats require_approval beats allow.
_RANK = {PolicyAction.BLOCK: 0, PolicyAction.REQUIRE_APPROVAL: 1, PolicyAction.ALLOW: 2}
_OUTCOME = {
    PolicyAction.BLOCK: ToolCallDecision.BLOCKED,
    PolicyAction.REQUIRE_APPROVAL: ToolCallDecision.AWAITING_APPROVAL,
    PolicyAction.ALLOW: ToolCallDecision.ALLOWED,
}
_MISSING = object()


def name_test(pattern: str) -> Callable[[str], object]:
    """`fnmatchcase(name, pattern)` as one call made once per pattern: a plain string
    comparison for a pattern without wildcards, a prefix test for one whose only wildcard
    is a final `*`, else its compiled expression (a match object, or None)."""
    start = _literal_start(pattern)
    if start == pattern:  # no wildcard
        return pattern.__eq__
    if pattern == start + "*":
        return lambda name: name.startswith(start)
    return re.compile(translate(pattern)).match


@dataclass(frozen=True, slots=True)
class InputMatch:
    """A predicate on one `inputPayload` field, named by a dotted path."""

    path: str
    op: MatchOp
    value: Any
    # The path split once, and a GLOB's pattern compiled once (None for other operators
    # and non-string values).
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    glob: Callable[[str], object] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        glob = self.op is MatchOp.GLOB and isinstance(self.value, str)
        object.__setattr__(self, "segments", tuple(self.path.split(".")))
        object.__setattr__(self, "glob", name_test(self.value) if glob else None)


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """What evaluation needs of a policy; an empty condition matches everything."""

    id: str
    name: str
    action: PolicyAction
    version: int = 1
    tool_name: str | None = None
    action_hint: str | None = None
    agent_id: str | None = None
    input_matches: tuple[InputMatch, ...] = ()
    incident_open_on_service_from: str | None = None
    dry_run: bool = False
    # The tool name and agent patterns, each compiled once (see `name_test`).
    tool_test: Callable[[str], object] | None = field(init=False, repr=False, compare=False)
    agent_test: Callable[[str], object] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tool, agent = self.tool_name, self.agent_id
        object.__setattr__(self, "tool_test", None if tool is None else name_test(tool))
        object.__setattr__(self, "agent_test", None if agent is None else name_test(agent))


def _literal_start(pattern: str | None) -> str:
    """What every name a tool name pattern matches starts with ("" for no pattern)."""
    if pattern is None:
        return ""
    cuts = [pattern.find(char) for char in "*?[" if char in pattern]
    return pattern[: min(cuts)] if cuts else pattern


# (Tool name, action hint) pairs whose candidate policies a PolicySet remembers (agents
# call a few tools).
TOOLS_REMEMBERED = 256


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A workspace's policies in evaluation order, with the literal start of each one's
    tool name pattern, so a call is evaluated only against those that could match it."""

    policies: tuple[PolicySpec, ...]
    starts: tuple[str, ...]
    _by_call: dict[tuple[str, str | None], tuple[PolicySpec, ...]] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def of(cls, policies: Iterable[PolicySpec]) -> PolicySet:
        kept = tuple(policies)
        return cls(kept, tuple(_literal_start(policy.tool_name) for policy in kept))

    def for_call(self, tool_name: str, action_hint: str | None) -> tuple[PolicySpec, ...]:
        """The policies that may match a call of `tool_name` with `action_hint`, in order:
        their tool name pattern may match it, and their action hint, if any, is this one."""
        key = (tool_name, action_hint)
        found = self._by_call.get(key)
        if found is None:
            found = tuple(
                policy
                for policy, start in zip(self.policies, self.starts, strict=True)
                if tool_name.startswith(start)
                and (policy.action_hint is None or policy.action_hint == action_hint)
            )
            if len(self._by_call) >= TOOLS_REMEMBERED:
                self._by_call.clear()
            self._by_call[key] = found
        return found


@dataclass(frozen=True, slots=True)
class CallFacts:
    """The tool call being decided."""

    tool_name: str
    agent_id: str
    action_hint: str | None
    input_payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """One matched policy, as recorded with the decision (with its version)."""

    policy_id: str
    policy_name: str
    version: int
    action: PolicyAction
    dry_run: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The stored and wire form: the seed's four fields plus version and dryRun."""
        return {
            "policyId": self.policy_id,
            "policyName": self.policy_name,
            "action": self.action.value.lower(),
            "reason": self.reason,
            "version": self.version,
            "dryRun": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome, its reason, and every matched policy (deciding ones first)."""

    outcome: ToolCallDecision
    reason: str
    matched: tuple[PolicyMatch, ...]


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path (`a.b.0.c`), or `_MISSING`; digits index into lists."""
    return _lookup(payload, path.split("."))


def _lookup(payload: Any, segments: Iterable[str]) -> Any:
    current = payload
    for segment in segments:
        if type(current) is dict or isinstance(current, Mapping):  # dict first: no ABC check
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return _MISSING
    return current


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(left: object, right: object) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    return left == right


def predicate_holds(match: InputMatch, payload: Mapping[str, Any]) -> bool:
    """Whether the payload field satisfies the predicate; a missing field never does."""
    actual = _lookup(payload, match.segments)
    if actual is _MISSING:
        return False
    expected = match.value
    if match.op is MatchOp.EQ:
        return _json_equal(actual, expected)
    if match.op is MatchOp.IN:
        return isinstance(expected, list) and any(_json_equal(actual, v) for v in expected)
    if match.op is MatchOp.GLOB:
        return isinstance(actual, str) and match.glob is not None and bool(match.glob(actual))
    if not (_is_number(actual) and _is_number(expected)):
        return False
    if match.op is MatchOp.LT:
        return bool(actual < expected)
    if match.op is MatchOp.LTE:
        return bool(actual <= expected)
    if match.op is MatchOp.GT:
        return bool(actual > expected)
    return bool(actual >= expected)


def service_named(policy: PolicySpec, payload: Mapping[str, Any]) -> str | None:
    """The service the policy's incident condition looks at, if the input names one."""
    if policy.incident_open_on_service_from is None:
        return None
    value = lookup(payload, policy.incident_open_on_service_from)
    return value if isinstance(value, str) and value else None


def services_to_check(policies: Iterable[PolicySpec], payload: Mapping[str, Any]) -> set[str]:
    """Every service whose open incidents could change the decision (for the caller to load)."""
    names = (service_named(policy, payload) for policy in policies)
    return {name for name in names if name is not None}


def policy_matches(
    policy: PolicySpec, call: CallFacts, open_incident_services: frozenset[str]
) -> bool:
    """Every condition the policy sets holds for this call."""
    tool_test, agent_test = policy.tool_test, policy.agent_test
    if tool_test is not None and not tool_test(call.tool_name):
        return False
    if policy.action_hint is not None and call.action_hint != policy.action_hint:
        return False
    if agent_test is not None and not agent_test(call.agent_id):
        return False
    for match in policy.input_matches:
        if not predicate_holds(match, call.input_payload):
            return False
    if policy.incident_open_on_service_from is not None:
        service = service_named(policy, call.input_payload)
        return service is not None and service in open_incident_services
    return True


def policy_reason(tool_name: str, policy_name: str, action: PolicyAction, dry_run: bool) -> str:
    """The sentence explaining one policy's verdict on one tool call."""
    if dry_run:
        verdict = {
            PolicyAction.BLOCK: "would be blocked by",
            PolicyAction.REQUIRE_APPROVAL: "would require human approval per",
            PolicyAction.ALLOW: "would be allowed by",
        }[action]
        return f'Dry run: tool call {tool_name} {verdict} policy "{policy_name}".'
    verdict = {
        PolicyAction.BLOCK: "is blocked by",
        PolicyAction.REQUIRE_APPROVAL: "requires human approval per",
        PolicyAction.ALLOW: "is allowed by",
    }[action]
    return f'Tool call {tool_name} {verdict} policy "{policy_name}".'


def evaluate(
    policies: Sequence[PolicySpec],
    call: CallFacts,
    *,
    open_incident_services: frozenset[str] = frozenset(),
) -> Decision:
    """Decide a tool call: block > require_approval > allow among enforced matches.

    No match (or only dry-run matches) allows the call. Dry-run matches are recorded
    with their would-be verdict but never change the outcome.
    """
    matched = [
        PolicyMatch(
            policy_id=policy.id,
            policy_name=policy.name,
            version=policy.version,
            action=policy.action,
            dry_run=policy.dry_run,
            reason=policy_reason(call.tool_name, policy.name, policy.action, policy.dry_run),
        )
        for policy in policies
        if policy_matches(policy, call, open_incident_services)
    ]
    matched.sort(key=lambda m: (m.dry_run, _RANK[m.action]))
    enforced = [m for m in matched if not m.dry_run]
    if enforced:
        deciding = enforced[0]
        return Decision(_OUTCOME[deciding.action], deciding.reason, tuple(matched))
    why = "only dry-run policies matched" if matched else "no policy matched"
    reason = f"Tool call {call.tool_name} is allowed: {why}."
    return Decision(ToolCallDecision.ALLOWED, reason, tuple(matched))
