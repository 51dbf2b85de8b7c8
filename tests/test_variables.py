"""Variables coerced on the compiled path (`schema.variables`) give what graphql-core's own
coercion gives: the same values for valid input, the same errors for invalid input, with
the real schema's input types. A difference would change what a mutation stores or how a
bad request is answered."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, graphql_sync, parse
from graphql.execution import executor as graphql_executor
from graphql.execution import values as graphql_values
from hypothesis import given
from hypothesis import strategies as st

from opsgraph.settings import Settings
from schema import build_schema, variables

SCHEMA: GraphQLSchema = build_schema(Settings())._schema

CHANGES = "mutation($inputs: [ChangeInput!]!) { recordChanges(inputs: $inputs) { __typename } }"
AGENTS = (
    "mutation($inputs: [AgentEventInput!]!) { recordAgentEvents(inputs: $inputs) { __typename } }"
)
INCIDENTS = (
    "mutation($input: IncidentEventInput!) { sendIncidentEvent(input: $input) { __typename } }"
)
TIMELINE = """query($filter: TimelineFilter, $first: Int = 20, $after: String) {
  timeline(filter: $filter, first: $first, after: $after) { pageInfo { hasNextPage } } }"""
POLICY = "mutation($input: PolicyInput!) { createPolicy(input: $input) { id } }"

CHANGE = {
    "name": "Deploy complete",
    "timestamp": "2026-03-04T14:25:00Z",
    "category": "TECHNICAL",
    "source": "ci-cd",
    "environment": "prod",
    "service": "api",
    "labels": ["release", "backend"],
    "metadata": {"commit": "1b2c3d4", "nested": [1, {"a": None}]},
    "links": [{"href": "https://ci.example/1", "text": "run"}],
}


TRIGGER = {
    "eventAction": "TRIGGER",
    "routingKey": "r",
    "dedupKey": "k",
    "payload": {"summary": "s", "source": "m", "severity": "CRITICAL", "customDetails": {"x": 1}},
}
TOOL_CALLED = {
    "eventId": "e",
    "runId": "r",
    "agentId": "a",
    "timestamp": "2026-03-04T14:25:00.123+02:00",
    "eventType": "tool.called",
    "metadata": {"toolName": "t"},
}
BLOCK_DEPLOYS = {
    "name": "p",
    "action": "BLOCK",
    "toolName": "deploy*",
    "inputMatches": [{"path": "a.b", "op": "EQ", "value": {"x": [1]}}],
}


def _both(document: str, inputs: dict[str, Any]) -> tuple[Any, Any]:
    operation = parse(document).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    nodes = operation.variable_definitions
    ours = variables.get_variable_values(SCHEMA, nodes, inputs)
    theirs = graphql_values.get_variable_values(SCHEMA, nodes, inputs)
    return ours, theirs


def _assert_same(document: str, inputs: dict[str, Any]) -> Any:
    ours, theirs = _both(document, inputs)
    if isinstance(theirs, list):
        assert isinstance(ours, list)
        assert [error.message for error in ours] == [error.message for error in theirs]
        return None
    assert not isinstance(ours, list)
    assert ours.coerced == theirs.coerced
    assert {name: source.value for name, source in ours.sources.items()} == {
        name: source.value for name, source in theirs.sources.items()
    }
    return ours.coerced


def test_a_full_change_list_is_coerced_as_graphql_core_coerces_it() -> None:
    coerced = _assert_same(CHANGES, {"inputs": [CHANGE, {**CHANGE, "name": "second"}]})
    first = coerced["inputs"][0]
    assert first["timestamp"].isoformat() == "2026-03-04T14:25:00+00:00"
    assert first["category"].value == "TECHNICAL" and first["labels"] == ["release", "backend"]
    assert first["links"] == [{"href": "https://ci.example/1", "text": "run"}]


def test_defaults_fill_the_fields_an_input_leaves_out() -> None:
    minimal = {k: CHANGE[k] for k in ("name", "timestamp", "category", "source")}
    coerced = _assert_same(CHANGES, {"inputs": [minimal]})
    assert coerced["inputs"][0]["service"] is None and coerced["inputs"][0]["labels"] is None
    # A variable left out: its default, or nothing at all for a nullable one.
    assert _assert_same(TIMELINE, {}) == {"first": 20}
    assert _assert_same(TIMELINE, {"first": None, "filter": {"services": ["api"]}}) == {
        "first": None,
        "filter": {
            "services": ["api"], "kinds": None, "environments": None, "labels": None,
            "labelsMatch": variables_enum("Match", "ANY"), "since": None,
            "until": None, "text": None,
        },
    }  # fmt: skip


def variables_enum(type_name: str, name: str) -> Any:
    enum = SCHEMA.type_map[type_name]
    return enum.values[name].value  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("document", "inputs"),
    [
        (CHANGES, {"inputs": [{**CHANGE, "name": 7}]}),  # a number for a string
        (CHANGES, {"inputs": [{**CHANGE, "category": "NOPE"}]}),  # not an enum value
        (CHANGES, {"inputs": [{**CHANGE, "timestamp": "yesterday"}]}),  # the scalar refuses
        (CHANGES, {"inputs": [{**CHANGE, "unknown": 1}]}),  # a field the type lacks
        (CHANGES, {"inputs": [{k: v for k, v in CHANGE.items() if k != "name"}]}),
        (CHANGES, {"inputs": [{**CHANGE, "labels": ["a", None]}]}),  # null in [String!]
        (CHANGES, {"inputs": [{**CHANGE, "links": [{"text": "no href"}]}]}),
        (CHANGES, {"inputs": [CHANGE, None]}),  # null item of [ChangeInput!]!
        (CHANGES, {"inputs": None}),
        (CHANGES, {}),  # a required variable left out
        (CHANGES, {"inputs": "not a list"}),
        (CHANGES, {"inputs": [["a list", "for an object"]]}),
        (TIMELINE, {"first": "20"}),
        (TIMELINE, {"first": 2**40}),  # beyond Int
        (CHANGES, {"inputs": [{**CHANGE, "name": None}]}),  # null for a non-null field
    ],
)
def test_invalid_values_get_graphql_cores_own_errors(document: str, inputs: Any) -> None:
    ours, theirs = _both(document, inputs)
    assert isinstance(theirs, list) and theirs  # each case is invalid
    assert [e.message for e in ours] == [e.message for e in theirs]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("document", "inputs"),
    [
        (CHANGES, {"inputs": CHANGE}),  # one value as a list of one
        (TIMELINE, {"filter": {"labelsMatch": None}}),  # null for a field with a default
        (CHANGES, {"inputs": [{**CHANGE, "labels": "release"}]}),
        (CHANGES, {"inputs": [{**CHANGE, "metadata": [1, "two", None]}]}),  # JSON: any value
        (INCIDENTS, {"input": TRIGGER}),
        (AGENTS, {"inputs": [TOOL_CALLED]}),
        (POLICY, {"input": BLOCK_DEPLOYS}),
    ],
)
def test_valid_values_of_every_shape_are_coerced_alike(document: str, inputs: Any) -> None:
    assert _assert_same(document, inputs) is not None


SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                **{name: st.just(value) | JSON for name, value in CHANGE.items()},
                "extra": JSON,
            },
        ),
        max_size=3,
    )
)
def test_any_change_input_is_coerced_or_refused_alike(inputs: list[dict[str, Any]]) -> None:
    """Each field either its valid value or any JSON value: both paths agree on all."""
    _assert_same(CHANGES, {"inputs": inputs})


def test_the_executor_coerces_on_the_compiled_path() -> None:
    assert vars(graphql_executor)["get_variable_values"] is variables.get_variable_values
    # ... and a request through it gets graphql-core's error for a bad value.
    result = graphql_sync(SCHEMA, TIMELINE, variable_values={"first": "x"})
    assert result.errors and "Int cannot represent non-integer value: 'x'" in str(
        result.errors[0].message
    )
