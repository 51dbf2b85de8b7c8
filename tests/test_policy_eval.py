"""Policy evaluation as a pure function: matching, predicates, precedence, dry runs."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.agent import ToolCallDecision
from models.policy import MatchOp, PolicyAction
from resolvers.policy_eval import (
    TOOLS_REMEMBERED,
    CallFacts,
    InputMatch,
    PolicySet,
    PolicySpec,
    evaluate,
    lookup,
    name_test,
    predicate_holds,
    services_to_check,
    the_rule,
)

ALLOW, BLOCK, APPROVE = PolicyAction.ALLOW, PolicyAction.BLOCK, PolicyAction.REQUIRE_APPROVAL

PROD_DEPLOY = PolicySpec(
    id="pol_123",
    name="Require approval for production deploys",
    action=APPROVE,
    version=3,
    tool_name="deploy",
    input_matches=(InputMatch("environment", MatchOp.EQ, "production"),),
)


def call(
    tool: str = "deploy", agent: str = "my-agent", hint: str | None = "deploy", **payload: Any
) -> CallFacts:
    return CallFacts(tool_name=tool, agent_id=agent, action_hint=hint, input_payload=payload)


def test_the_seed_decision_and_its_wording() -> None:
    decision = evaluate([PROD_DEPLOY], call(environment="production", service="api"))
    reason = (
        "Tool call deploy requires human approval per policy "
        '"Require approval for production deploys".'
    )
    assert decision.outcome is ToolCallDecision.AWAITING_APPROVAL
    assert decision.reason == reason
    [match] = decision.matched
    assert match.to_json() == {
        "policyId": "pol_123",
        "policyName": "Require approval for production deploys",
        "action": "require_approval",
        "reason": reason,
        "version": 3,
        "dryRun": False,
    }


def test_no_match_allows() -> None:
    decision = evaluate([PROD_DEPLOY], call(environment="staging"))
    assert decision.outcome is ToolCallDecision.ALLOWED
    assert decision.reason == "Tool call deploy is allowed: no policy matched."
    assert decision.matched == ()
    assert evaluate([], call()).outcome is ToolCallDecision.ALLOWED


def test_block_beats_require_approval_beats_allow() -> None:
    allow = PolicySpec(id="p1", name="Deploys are fine", action=ALLOW, tool_name="deploy")
    approve = PolicySpec(id="p2", name="Ask first", action=APPROVE, tool_name="dep*")
    block = PolicySpec(id="p3", name="Never", action=BLOCK, agent_id="my-*")

    decision = evaluate([allow, approve, block], call())
    assert decision.outcome is ToolCallDecision.BLOCKED
    assert decision.reason == 'Tool call deploy is blocked by policy "Never".'
    assert [m.policy_id for m in decision.matched] == ["p3", "p2", "p1"]

    decision = evaluate([allow, approve], call())
    assert decision.outcome is ToolCallDecision.AWAITING_APPROVAL
    assert decision.reason == 'Tool call deploy requires human approval per policy "Ask first".'

    decision = evaluate([allow], call())
    assert decision.outcome is ToolCallDecision.ALLOWED
    assert decision.reason == 'Tool call deploy is allowed by policy "Deploys are fine".'


def test_dry_run_is_recorded_but_not_enforced() -> None:
    trial = PolicySpec(id="p1", name="Trial block", action=BLOCK, tool_name="deploy", dry_run=True)
    decision = evaluate([trial], call())
    assert decision.outcome is ToolCallDecision.ALLOWED
    assert decision.reason == "Tool call deploy is allowed: only dry-run policies matched."
    [match] = decision.matched
    assert match.dry_run and match.action is BLOCK
    assert match.reason == 'Dry run: tool call deploy would be blocked by policy "Trial block".'

    enforced = PolicySpec(id="p2", name="Ask", action=APPROVE, tool_name="deploy")
    decision = evaluate([trial, enforced], call())
    assert decision.outcome is ToolCallDecision.AWAITING_APPROVAL
    assert [m.policy_id for m in decision.matched] == ["p2", "p1"]


def test_tool_hint_and_agent_conditions() -> None:
    policy = PolicySpec(
        id="p", name="n", action=BLOCK, tool_name="db_*", action_hint="delete", agent_id="ops-?"
    )
    assert (
        evaluate([policy], call("db_drop", "ops-1", "delete")).outcome is ToolCallDecision.BLOCKED
    )
    assert evaluate([policy], call("deploy", "ops-1", "delete")).matched == ()
    assert evaluate([policy], call("db_drop", "ops-12", "delete")).matched == ()
    assert evaluate([policy], call("db_drop", "ops-1", "read")).matched == ()
    assert evaluate([policy], call("db_drop", "ops-1", None)).matched == ()
    assert evaluate([policy], call("DB_drop", "ops-1", "delete")).matched == ()  # case matters


PAYLOAD: dict[str, Any] = {
    "environment": "production",
    "replicas": 5,
    "ratio": 0.5,
    "dry": True,
    "target": {"region": "eu-west-1", "hosts": [{"name": "web-1"}]},
    "tags": ["a", "b"],
    "amount": "150",
    "fraction": "-0.5e0",
    "exponent": "1e3",
    "padded": " 150\n",
    "signed": "+150",
    "zeros": "0150",
    "pointed": "150.",
    "grouped": "1,500",
    "underscored": "1_500",
    "wide": "\uff11\uff15\uff10",  # fullwidth 150
    "infinite": "inf",
    "hex": "0x10",
}


@pytest.mark.parametrize(
    ("path", "op", "value", "expected"),
    [
        ("environment", MatchOp.EQ, "production", True),
        ("environment", MatchOp.EQ, "Production", False),
        ("replicas", MatchOp.EQ, 5.0, True),
        ("dry", MatchOp.EQ, 1, False),  # true is not 1
        ("replicas", MatchOp.EQ, True, False),
        ("tags", MatchOp.EQ, ["a", "b"], True),
        ("target.region", MatchOp.EQ, "eu-west-1", True),
        ("target.hosts.0.name", MatchOp.EQ, "web-1", True),
        ("target.hosts.1.name", MatchOp.EQ, "web-1", False),
        ("missing", MatchOp.EQ, None, False),
        ("environment", MatchOp.IN, ["staging", "production"], True),
        ("environment", MatchOp.IN, ["staging"], False),
        ("replicas", MatchOp.IN, [1, 5], True),
        ("target.region", MatchOp.GLOB, "eu-*", True),
        ("target.region", MatchOp.GLOB, "us-*", False),
        ("replicas", MatchOp.GLOB, "5", False),
        ("replicas", MatchOp.LT, 6, True),
        ("replicas", MatchOp.LT, 5, False),
        ("replicas", MatchOp.LTE, 5, True),
        ("replicas", MatchOp.GT, 4.5, True),
        ("replicas", MatchOp.GT, 5, False),
        ("ratio", MatchOp.GTE, 0.5, True),
        ("environment", MatchOp.GT, 1, False),  # not a number: never matches
        ("amount", MatchOp.GT, 100, True),  # a string holding a number compares as one
        ("amount", MatchOp.LTE, 150.0, True),
        ("amount", MatchOp.LT, 150, False),
        ("fraction", MatchOp.LT, -0.25, True),
        ("exponent", MatchOp.GT, 999, True),
        # As the tools an agent calls read them: an agent writing " 150" or "+150" does not
        # slip past a limit of 100 (it did); "1,500" and the rest are not read as numbers.
        ("padded", MatchOp.GT, 100, True),
        ("signed", MatchOp.GT, 100, True),
        ("zeros", MatchOp.GT, 100, True),
        ("pointed", MatchOp.GTE, 150, True),
        ("grouped", MatchOp.GT, 1, False),
        ("underscored", MatchOp.GT, 1, False),
        ("wide", MatchOp.GT, 1, False),
        ("infinite", MatchOp.GT, 1, False),
        ("hex", MatchOp.GT, 1, False),
        ("amount", MatchOp.EQ, 150, False),  # EQ stays JSON equality: "150" is not 150
        ("dry", MatchOp.GTE, 0, False),  # booleans are not numbers
        ("missing.deeper", MatchOp.LT, 10, False),
    ],
)
def test_predicates(path: str, op: MatchOp, value: Any, expected: bool) -> None:
    assert predicate_holds(InputMatch(path, op, value), PAYLOAD) is expected


def test_all_predicates_must_hold() -> None:
    policy = PolicySpec(
        id="p",
        name="Big prod deploys",
        action=BLOCK,
        input_matches=(
            InputMatch("environment", MatchOp.EQ, "production"),
            InputMatch("replicas", MatchOp.GT, 3),
        ),
    )
    assert evaluate([policy], call(environment="production", replicas=4)).matched
    assert not evaluate([policy], call(environment="production", replicas=2)).matched
    assert not evaluate([policy], call(environment="staging", replicas=4)).matched


def test_lookup_reports_missing_apart_from_null() -> None:
    assert lookup({"a": None}, "a") is None
    assert lookup({"a": None}, "a.b") is not None
    assert predicate_holds(InputMatch("a", MatchOp.EQ, None), {"a": None})


def test_incident_open_on_the_named_service() -> None:
    freeze = PolicySpec(
        id="p",
        name="Change freeze during incidents",
        action=BLOCK,
        tool_name="deploy",
        incident_open_on_service_from="service",
    )
    burning = frozenset({"api"})
    decision = evaluate([freeze], call(service="api"), open_incident_services=burning)
    assert decision.outcome is ToolCallDecision.BLOCKED
    assert (
        decision.reason == 'Tool call deploy is blocked by policy "Change freeze during incidents".'
    )
    spaced = evaluate([freeze], call(service=" api\n"), open_incident_services=burning)
    assert spaced.outcome is ToolCallDecision.BLOCKED  # filed under `api`, so held as `api`
    assert not evaluate([freeze], call(service="web"), open_incident_services=burning).matched
    assert not evaluate([freeze], call(), open_incident_services=burning).matched
    assert not evaluate([freeze], call(service="api")).matched
    nested = PolicySpec(
        id="q", name="n", action=BLOCK, incident_open_on_service_from="target.service"
    )
    payload = {"target": {"service": "api"}, "service": "web"}
    assert services_to_check([freeze, nested], payload) == {"api", "web"}
    assert services_to_check([freeze], {"service": " web\t"}) == {"web"}
    assert services_to_check([freeze], {"service": "  "}) == set()
    assert services_to_check([PROD_DEPLOY], payload) == set()


def test_a_policy_set_picks_the_policies_whose_tool_name_pattern_matches() -> None:
    patterns = [None, "deploy", "deploy*", "dep?oy", "[d]eploy", "de[", "read_*", "deploy_db"]
    specs = [
        PolicySpec(id=f"p{i}", name=f"p{i}", action=BLOCK if i % 2 else ALLOW, tool_name=p)
        for i, p in enumerate(patterns)
    ]
    policies = PolicySet.of(specs)
    assert [p.tool_name for p in policies.for_call(call("deploy", hint=None))] == [
        None,
        "deploy",
        "deploy*",
        "dep?oy",
        "[d]eploy",
    ]
    assert [p.tool_name for p in policies.for_call(call("read_file", hint=None))] == [
        None,
        "read_*",
    ]
    assert [p.tool_name for p in policies.for_call(call("de[", hint=None))] == [None, "de["]
    for tool in ("deploy", "deploy_db", "depxoy", "read_file", "de[", "x"):
        facts = call(tool, hint=None)
        narrowed = policies.for_call(facts)
        assert evaluate(narrowed, facts, static_checked=True) == evaluate(specs, facts)


def test_a_policy_set_skips_policies_for_another_action_hint_or_agent() -> None:
    specs = [
        PolicySpec(id="theirs", name="t", action=BLOCK, agent_id="other-*"),
        PolicySpec(id="any", name="any", action=BLOCK, tool_name="deploy"),
        PolicySpec(id="rollout", name="r", action=BLOCK, tool_name="deploy", action_hint="rollout"),
        PolicySpec(id="scale", name="s", action=ALLOW, action_hint="scale"),
    ]
    policies = PolicySet.of(specs)
    assert [p.id for p in policies.for_call(call(hint="rollout"))] == ["any", "rollout"]
    assert [p.id for p in policies.for_call(call(hint="scale"))] == ["any", "scale"]
    assert [p.id for p in policies.for_call(call("deploy", hint=None))] == ["any"]
    assert [p.id for p in policies.for_call(call(agent="other-1", hint=None))] == ["theirs", "any"]
    for hint in ("rollout", "scale", "other", None):
        for agent in ("a", "other-2"):
            facts = CallFacts(
                tool_name="deploy", agent_id=agent, action_hint=hint, input_payload={}
            )
            narrowed = policies.for_call(facts)
            assert evaluate(narrowed, facts, static_checked=True) == evaluate(specs, facts)


PATTERN_CHARS = st.sampled_from(list("de*?[]!-x.y_\\"))


@given(
    pattern=st.text(PATTERN_CHARS, max_size=8),
    name=st.text(st.sampled_from(list("dex.y_-[]!*?\\")), max_size=8),
)
def test_compiled_patterns_match_as_fnmatchcase_does(pattern: str, name: str) -> None:
    """Tool, agent and GLOB patterns are compiled once per policy; they must decide every
    name exactly as `fnmatchcase`, wildcards, sets and stray brackets included."""
    expected = fnmatchcase(name, pattern)
    assert bool(name_test(pattern)(name)) is expected
    spec = PolicySpec(id="p", name="p", action=BLOCK, tool_name=pattern, agent_id=pattern)
    facts = CallFacts(tool_name=name, agent_id=name, action_hint=None, input_payload={"s": name})
    assert (evaluate([spec], facts).outcome is ToolCallDecision.BLOCKED) is expected
    glob = InputMatch("s", MatchOp.GLOB, pattern)
    assert predicate_holds(glob, {"s": name}) is expected


def test_a_policy_set_remembers_each_tools_candidates_and_stays_right() -> None:
    specs = [
        PolicySpec(id=f"p{i}", name=f"p{i}", action=BLOCK, tool_name=f"tool_{i}*") for i in range(3)
    ]
    policies = PolicySet.of(specs)
    for _ in range(2):  # computed, then remembered
        assert [p.id for p in policies.for_call(call("tool_1x"))] == ["p1"]
    for i in range(TOOLS_REMEMBERED + 5):  # many distinct tools: still right, still bounded
        assert policies.for_call(call(f"other_{i}")) == ()
    assert [p.id for p in policies.for_call(call("tool_2", hint="h"))] == ["p2"]


def test_a_policy_set_tests_only_the_policies_an_input_string_can_satisfy() -> None:
    """A hundred policies on one tool, each for a service, an environment or a list of
    them: a call is tested against those its input strings pick, and the ones no string
    rules out (a number, a nested path, a glob with no literal start)."""
    specs = [
        PolicySpec(id=f"svc{i}", name=f"s{i}", action=APPROVE, tool_name="deploy",
                   input_matches=(InputMatch("service", MatchOp.GLOB, f"svc-{i}-*"),))
        for i in range(40)
    ] + [
        PolicySpec(id=f"env{i}", name=f"e{i}", action=BLOCK, tool_name="deploy",
                   input_matches=(InputMatch("replicas", MatchOp.GT, 1),
                                  InputMatch("environment", MatchOp.EQ, f"env-{i}")))
        for i in range(40)
    ] + [
        PolicySpec(id="in", name="in", action=BLOCK, input_matches=(
            InputMatch("environment", MatchOp.IN, ["env-3", "prod", "prod"]),)),
        PolicySpec(id="exact-glob", name="g", action=ALLOW,
                   input_matches=(InputMatch("service", MatchOp.GLOB, "svc-1-api"),)),
        PolicySpec(id="big", name="b", action=ALLOW,
                   input_matches=(InputMatch("replicas", MatchOp.GT, 2),)),
        PolicySpec(id="nested", name="n", action=ALLOW,
                   input_matches=(InputMatch("target.service", MatchOp.EQ, "svc-1-api"),)),
        PolicySpec(id="any-glob", name="a", action=ALLOW,
                   input_matches=(InputMatch("service", MatchOp.GLOB, "*-api"),)),
        PolicySpec(id="mixed-in", name="m", action=BLOCK,
                   input_matches=(InputMatch("replicas", MatchOp.IN, ["many", 3]),)),
    ]  # fmt: skip
    policies = PolicySet.of(specs)
    facts = call(service="svc-1-api", environment="env-3", replicas=3)

    narrowed = policies.for_call(facts)

    assert [p.id for p in narrowed] == ["svc1", "env3", "in", "exact-glob", "big", "nested",
                                        "any-glob", "mixed-in"]  # fmt: skip
    assert evaluate(narrowed, facts, static_checked=True) == evaluate(specs, facts)
    for payload in (
        {},
        {"service": 7, "environment": None},
        {"service": "svc-12-x"},
        {"environment": "prod", "service": "svc-"},
        {"service": ["svc-1-api"]},
    ):
        facts = call(**payload)
        narrowed = policies.for_call(facts)
        assert evaluate(narrowed, facts, static_checked=True) == evaluate(specs, facts)
    assert [p.id for p in policies.for_call(call(service="svc-12-x"))] == [
        "svc12", "big", "nested", "any-glob", "mixed-in"]  # fmt: skip


FIELD_VALUES = (
    st.sampled_from(["api", "ap", "api-1", "web", "", "a*", "[a]pi", "2", "-0.5"])
    | st.none()
    | (st.integers(0, 3))
)
PREDICATES = st.builds(
    InputMatch,
    st.sampled_from(["a", "b", "c.d"]),
    st.sampled_from(list(MatchOp)),
    FIELD_VALUES
    | st.sampled_from(["ap*", "api*", "a?i", "[aw]*", "*", "w*b", "api-?"])
    | st.lists(FIELD_VALUES, max_size=3),
)
SPECS = st.lists(
    st.builds(
        PolicySpec,
        id=st.uuids().map(str),
        name=st.sampled_from(["p", "q"]),
        action=st.sampled_from(list(PolicyAction)),
        dry_run=st.booleans(),
        input_matches=st.lists(PREDICATES, max_size=3).map(tuple),
    ),
    max_size=8,
)
PAYLOADS = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    FIELD_VALUES | st.dictionaries(st.just("d"), FIELD_VALUES) | st.lists(FIELD_VALUES, max_size=2),
)


@settings(max_examples=400)
@given(specs=SPECS, payloads=st.lists(PAYLOADS, min_size=1, max_size=4))
def test_narrowing_by_input_never_changes_a_decision(
    specs: list[PolicySpec], payloads: list[dict[str, Any]]
) -> None:
    policies = PolicySet.of(specs)
    for payload in payloads:  # the same remembered candidates, each input in turn
        facts = call(**payload)
        assert evaluate(policies.for_call(facts), facts, static_checked=True) == evaluate(
            specs, facts
        )


SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-3, 3)
    | st.sampled_from(["api", "web", "prod", "", "a*", "2", "-1.5", "1e0", "02", " 1"])
)
VALUES = SCALAR | st.lists(SCALAR, max_size=3) | st.dictionaries(st.sampled_from("ab"), SCALAR)


@given(op=st.sampled_from(list(MatchOp)), expected=VALUES, actual=VALUES)
def test_each_predicate_decides_as_the_rule_of_its_operator(
    op: MatchOp, expected: Any, actual: Any
) -> None:
    """A predicate is compiled once with its common cases decided up front (a string to
    equal, a list of strings, a glob, a number to compare with); every value it is given
    must get the answer the operator's rule gives, on a plain and a dotted path."""
    match = InputMatch("a", op, expected)
    assert predicate_holds(match, {"a": actual}) is the_rule(op, expected, match.glob, actual)
    nested = InputMatch("x.a", op, expected)
    assert predicate_holds(nested, {"x": {"a": actual}}) is predicate_holds(match, {"a": actual})
    assert predicate_holds(match, {"b": actual}) is False  # a missing field never holds
