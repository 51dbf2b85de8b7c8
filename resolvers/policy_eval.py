"""Policy evaluation: a pure function from policies, a tool call and live facts to a decision.

No I/O here: the caller loads the policies and the set of services with an open incident
(see `services_to_check`), so every rule is tested without a database.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any

from models.agent import ToolCallDecision
from models.policy import MatchOp, PolicyAction
from resolvers.validation import name_of

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
    # and non-string values); `test`: whether a value found at the path satisfies it.
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    glob: Callable[[str], object] | None = field(init=False, repr=False, compare=False)
    test: Callable[[Any], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        glob = self.op is MatchOp.GLOB and isinstance(self.value, str)
        object.__setattr__(self, "segments", tuple(self.path.split(".")))
        object.__setattr__(self, "glob", name_test(self.value) if glob else None)
        object.__setattr__(self, "test", _value_test(self.op, self.value, self.glob))


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


# Calls (tool name, action hint, agent) whose candidate policies a PolicySet remembers
# (agents call a few tools).
TOOLS_REMEMBERED = 256


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A workspace's policies in evaluation order, with the literal start of each one's
    tool name pattern, so a call is evaluated only against those that could match it."""

    policies: tuple[PolicySpec, ...]
    starts: tuple[str, ...]
    _by_call: dict[tuple[str, str | None, str], _Candidates] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def of(cls, policies: Iterable[PolicySpec]) -> PolicySet:
        kept = tuple(policies)
        return cls(kept, tuple(_literal_start(policy.tool_name) for policy in kept))

    def for_call(self, call: CallFacts) -> tuple[PolicySpec, ...]:
        """The policies whose tool name, action hint and agent conditions hold for `call`,
        in order, less those an input string rules out (`_Candidates`): what is left to
        test is their input and incident conditions (`evaluate(..., static_checked=True)`)."""
        key = (call.tool_name, call.action_hint, call.agent_id)
        found = self._by_call.get(key)
        if found is None:
            found = _Candidates.of(
                tuple(
                    policy
                    for policy, start in zip(self.policies, self.starts, strict=True)
                    if call.tool_name.startswith(start) and _static_match(policy, call)
                )
            )
            if len(self._by_call) >= TOOLS_REMEMBERED:
                self._by_call.clear()
            self._by_call[key] = found
        return found.select(call.input_payload)


# A string an input field must equal (or start with) for a policy's predicate to hold.
_Filed = tuple[str, str, bool]  # (field, string, a prefix)


def _filed_under(policy: PolicySpec) -> list[_Filed] | None:
    """The strings the first predicate of `policy` that can be looked up holds for: one of
    them equals (or starts) the value of its top-level input field, a string, or the
    predicate fails; None if no predicate can be looked up so."""
    for match in policy.input_matches:
        if len(match.segments) != 1:
            continue
        name, value = match.path, match.value
        if match.op is MatchOp.EQ and type(value) is str:
            return [(name, value, False)]
        if match.op is MatchOp.IN and type(value) is list:
            if all(type(item) is str for item in value):
                return [(name, item, False) for item in dict.fromkeys(value)]
        if match.op is MatchOp.GLOB and type(value) is str:
            start = _literal_start(value)
            if start == value:
                return [(name, value, False)]
            if start:
                return [(name, start, True)]
    return None


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The policies left for one (tool name, action hint, agent): each is tested whatever
    the input, or filed under the strings one top-level input field must equal or start
    with for its predicate on that field to hold (`_filed_under`), so a call is tested
    against those its input strings pick and the unfiled ones, in order. A workspace with
    a hundred policies on one tool, each for a service or an environment, tests a few."""

    policies: tuple[PolicySpec, ...]
    unfiled: tuple[int, ...]  # positions in `policies`
    fields: tuple[str, ...]  # the fields policies are filed under
    exact: dict[tuple[str, str], tuple[int, ...]]
    prefixes: dict[str, tuple[tuple[int, dict[str, tuple[int, ...]]], ...]]  # by length

    @classmethod
    def of(cls, policies: tuple[PolicySpec, ...]) -> _Candidates:
        unfiled: list[int] = []
        exact: dict[tuple[str, str], list[int]] = {}
        prefixes: dict[str, dict[int, dict[str, list[int]]]] = {}
        for position, policy in enumerate(policies):
            filed = _filed_under(policy)
            if filed is None:
                unfiled.append(position)
                continue
            for name, text, prefix in filed:
                if prefix:
                    by_length = prefixes.setdefault(name, {}).setdefault(len(text), {})
                    by_length.setdefault(text, []).append(position)
                else:
                    exact.setdefault((name, text), []).append(position)
        fields = dict.fromkeys([name for name, _ in exact] + list(prefixes))
        return cls(
            policies,
            tuple(unfiled),
            tuple(fields),
            {key: tuple(positions) for key, positions in exact.items()},
            {
                name: tuple(
                    (length, {text: tuple(found) for text, found in table.items()})
                    for length, table in by_length.items()
                )
                for name, by_length in prefixes.items()
            },
        )

    def select(self, payload: Mapping[str, Any]) -> tuple[PolicySpec, ...]:
        """The policies `payload`'s strings do not rule out, in order."""
        if not self.fields:
            return self.policies
        if type(payload) is not dict:
            return self.policies  # looked up otherwise: test them all
        chosen = list(self.unfiled)
        for name in self.fields:
            value = payload.get(name)
            if type(value) is not str:
                if isinstance(value, str):
                    return self.policies  # a str subclass: test them all
                continue  # missing, or not a string: every policy filed here fails
            chosen += self.exact.get((name, value), ())
            for length, table in self.prefixes.get(name, ()):
                chosen += table.get(value[:length], ())
        chosen.sort()
        policies = self.policies
        return tuple(policies[position] for position in chosen)


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


# A number as a string holds one for the tools an agent calls (Python's `float`, JavaScript's
# `Number` alike): decimal digits with a sign, a point and an exponent, spaces around. Not
# "1,500", "1_500", "0x10", "inf" or other scripts' digits, which they read differently.
_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
_LONGEST_INT_TEXT = 4000  # past this, int() refuses (Python's digit limit): read as a float


def _as_number(value: object) -> int | float | None:
    """What `LT`, `LTE`, `GT` and `GTE` compare: a number, or a string holding one (an agent
    that quotes `"150"`, or writes `" 150"` or `"+150"`, must not slip past `amount > 100`);
    None for anything else."""
    if _is_number(value):
        return value  # type: ignore[return-value]
    if type(value) is not str:
        return None
    text = value.strip()
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    whole = text.lstrip("-+").isdigit() and len(text) <= _LONGEST_INT_TEXT
    return int(text) if whole else float(text)


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


def _scalar_key(value: object) -> tuple[str, object] | None:
    """A JSON scalar as a set member under JSON equality (`true` is not `1`, `1` is `1.0`);
    None for an array or object."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("number", value)
    if type(value) is str:
        return ("string", value)
    return None


def _value_test(
    op: MatchOp, expected: Any, glob: Callable[[str], object] | None
) -> Callable[[Any], bool]:
    """`the_rule(op, expected, glob, value)` made once per predicate, with the common cases
    (a string or number to compare with, a list of strings, a glob) decided up front."""
    if op is MatchOp.EQ and type(expected) is str:
        return lambda actual: type(actual) is str and actual == expected
    if op is MatchOp.IN and type(expected) is list and all(type(v) is str for v in expected):
        strings = frozenset(expected)
        return lambda actual: type(actual) is str and actual in strings
    if op is MatchOp.IN and type(expected) is list:
        keys = [_scalar_key(value) for value in expected]
        if None not in keys:  # scalars only: one look-up, not a comparison with each value
            members = frozenset(keys)
            return lambda actual: (key := _scalar_key(actual)) is not None and key in members
    if op is MatchOp.GLOB:
        if glob is None:
            return lambda actual: False
        return lambda actual: isinstance(actual, str) and bool(glob(actual))
    if op in _COMPARE:
        if not _is_number(expected):
            return lambda actual: False
        compare = _COMPARE[op]

        def holds(actual: Any) -> bool:
            number = _as_number(actual)
            return number is not None and compare(number, expected)

        return holds
    return lambda actual: the_rule(op, expected, glob, actual)


_COMPARE: dict[MatchOp, Callable[[Any, Any], bool]] = {
    MatchOp.LT: operator.lt,
    MatchOp.LTE: operator.le,
    MatchOp.GT: operator.gt,
    MatchOp.GTE: operator.ge,
}


def predicate_holds(match: InputMatch, payload: Mapping[str, Any]) -> bool:
    """Whether the payload field satisfies the predicate; a missing field never does."""
    segments = match.segments
    if len(segments) == 1 and type(payload) is dict:
        actual = payload.get(segments[0], _MISSING)
    else:
        actual = _lookup(payload, segments)
    return actual is not _MISSING and match.test(actual)


def the_rule(op: MatchOp, expected: Any, glob: Callable[[str], object] | None, actual: Any) -> bool:
    """The rule of each operator for a value found at the path (`_value_test` in full)."""
    if op is MatchOp.EQ:
        return _json_equal(actual, expected)
    if op is MatchOp.IN:
        return isinstance(expected, list) and any(_json_equal(actual, v) for v in expected)
    if op is MatchOp.GLOB:
        return isinstance(actual, str) and glob is not None and bool(glob(actual))
    number = _as_number(actual)
    if number is None or not _is_number(expected):
        return False
    return bool(_COMPARE[op](number, expected))


def service_named(policy: PolicySpec, payload: Mapping[str, Any]) -> str | None:
    """The service the policy's incident condition looks at, if the input names one: read
    as the call's own service is stored, so that `"api "` (which is filed under `api`) is
    not let through a freeze of `api`."""
    if policy.incident_open_on_service_from is None:
        return None
    return name_of(lookup(payload, policy.incident_open_on_service_from))


def services_to_check(policies: Iterable[PolicySpec], payload: Mapping[str, Any]) -> set[str]:
    """Every service whose open incidents could change the decision (for the caller to load)."""
    names = (service_named(policy, payload) for policy in policies)
    return {name for name in names if name is not None}


def policy_matches(
    policy: PolicySpec, call: CallFacts, open_incident_services: frozenset[str]
) -> bool:
    """Every condition the policy sets holds for this call."""
    return _static_match(policy, call) and _holds_for_input(
        policy, call.input_payload, open_incident_services
    )


def _static_match(policy: PolicySpec, call: CallFacts) -> bool:
    """The conditions on the call's tool name, action hint and agent hold."""
    tool_test, agent_test = policy.tool_test, policy.agent_test
    if tool_test is not None and not tool_test(call.tool_name):
        return False
    if policy.action_hint is not None and call.action_hint != policy.action_hint:
        return False
    return agent_test is None or bool(agent_test(call.agent_id))


def _holds_for_input(
    policy: PolicySpec, payload: Mapping[str, Any], open_incident_services: frozenset[str]
) -> bool:
    """The conditions on the call's input and on open incidents hold."""
    for match in policy.input_matches:
        if not predicate_holds(match, payload):
            return False
    if policy.incident_open_on_service_from is not None:
        service = service_named(policy, payload)
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
    static_checked: bool = False,
) -> Decision:
    """Decide a tool call: block > require_approval > allow among enforced matches.

    No match (or only dry-run matches) allows the call. Dry-run matches are recorded
    with their would-be verdict but never change the outcome. `static_checked`: the
    policies' tool name, action hint and agent conditions are known to hold for `call`
    (`PolicySet.for_call` chose them), so only the others are tested.
    """
    payload = call.input_payload
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
        if (static_checked or _static_match(policy, call))
        and _holds_for_input(policy, payload, open_incident_services)
    ]
    matched.sort(key=lambda m: (m.dry_run, _RANK[m.action]))
    enforced = [m for m in matched if not m.dry_run]
    if enforced:
        deciding = enforced[0]
        return Decision(_OUTCOME[deciding.action], deciding.reason, tuple(matched))
    why = "only dry-run policies matched" if matched else "no policy matched"
    reason = f"Tool call {call.tool_name} is allowed: {why}."
    return Decision(ToolCallDecision.ALLOWED, reason, tuple(matched))
