"""GraphQL limits, each a named setting: depth, tokens, aliases, page sizes; introspection
on or off; unexpected errors masked in production mode, never with a stack trace."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
import strawberry
from graphql import ExecutionResult
from tortoise import connections

from models.change import Change
from opsgraph.app import create_app
from opsgraph.settings import Settings
from schema import TOO_COMPLEX, build_schema
from schema.context import Context
from tests.agent_helpers import tool_called
from tests.conftest import GraphQL, Recorder, Tenant, with_settings
from tests.test_changes import SEED_EVENT, bearer

DEEP = "{ timeline { edges { node { subject { __typename } } } } }"  # depth 4
INTROSPECTION = "{ __schema { queryType { name } } }"


async def run(settings: Settings, document: str, key: str, **variables: Any) -> Any:
    """Execute with a schema built from these settings (the app builds it the same way)."""
    schema = build_schema(settings)
    context = Context(settings=settings, publisher=Recorder(announced=[]), secret=key)
    return await schema.execute(document, variable_values=variables, context_value=context)


def messages(result: Any) -> list[str]:
    return [error.message for error in result.errors or []]


async def test_depth_limit(settings: Settings, tenant: Tenant) -> None:
    enough = with_settings(settings, graphql_max_depth=4)
    assert (await run(enough, DEEP, tenant.reader)).errors is None
    result = await run(with_settings(settings, graphql_max_depth=3), DEEP, tenant.reader)
    assert result.data is None
    assert messages(result) == ["'anonymous' exceeds maximum operation depth of 3"]


async def test_depth_limit_counts_through_fragments(settings: Settings, tenant: Tenant) -> None:
    document = """
    query { timeline { ...Edges } }
    fragment Edges on TimelineConnection { edges { node { subject { __typename } } } }
    """
    result = await run(with_settings(settings, graphql_max_depth=3), document, tenant.reader)
    assert result.data is None and "exceeds maximum operation depth" in messages(result)[0]


async def test_token_limit(settings: Settings, tenant: Tenant) -> None:
    document = "{ viewer { " + "name " * 60 + "} }"
    assert (
        await run(with_settings(settings, graphql_max_tokens=100), document, tenant.reader)
    ).errors is None
    result = await run(with_settings(settings, graphql_max_tokens=50), document, tenant.reader)
    assert result.data is None
    assert messages(result) == [
        "Syntax Error: Document contains more than 50 tokens. Parsing aborted."
    ]
    # The default refuses a huge document before parsing all of it.
    huge = "{ viewer { " + "name " * 6000 + "} }"
    result = await run(settings, huge, tenant.reader)
    assert f"more than {settings.graphql_max_tokens} tokens" in messages(result)[0]


async def test_a_document_too_complex_to_validate_says_so(
    settings: Settings, tenant: Tenant
) -> None:
    """900 repeats of one field: within the token limit, past graphql-core's budget for
    comparing a selection's fields (it said only "Validation aborted.")."""
    document = "{ viewer { " + "name " * 900 + "} }"
    many_fields = with_settings(settings, graphql_max_fields=1000)  # past it, below
    for _ in range(2):  # the second time from the validation cache
        result = await run(many_fields, document, tenant.reader)
        assert result.data is None
        assert messages(result) == [TOO_COMPLEX]
        assert result.errors[0].extensions == {"code": "QUERY_TOO_COMPLEX"}
    fewer = await run(settings, "{ viewer { " + "name " * 298 + "} }", tenant.reader)
    assert fewer.errors is None


async def test_a_document_of_too_many_fields_is_refused_before_validation(
    settings: Settings, tenant: Tenant
) -> None:
    """Validation compares a selection's fields pairwise: 1,199 repeats of one, under the
    token cap, took 1.2 s of CPU. Past OPSGRAPH_GRAPHQL_MAX_FIELDS (300) it is not tried."""
    fields = "{ viewer { " + "name " * 299 + "} }"  # 300 with viewer
    assert (await run(settings, fields, tenant.reader)).errors is None
    result = await run(settings, fields.replace("name ", "name name ", 1), tenant.reader)
    assert messages(result) == [
        "The document holds more than 300 fields (OPSGRAPH_GRAPHQL_MAX_FIELDS): send fewer."
    ]
    assert result.errors[0].extensions == {"code": "QUERY_TOO_COMPLEX"}


async def test_subscriptions_meet_the_same_limits(settings: Settings, tenant: Tenant) -> None:
    async def first(limits: Settings, document: str) -> Any:
        context = Context(settings=limits, publisher=Recorder(announced=[]), secret=tenant.reader)
        stream = await build_schema(limits).stream(document, context_value=context)
        if not hasattr(stream, "__anext__"):
            return stream
        try:
            return await stream.__anext__()
        finally:
            await stream.aclose()

    deep = "subscription { timeline { subject { ... on Change { name } } } }"
    shallow = with_settings(settings, graphql_max_depth=1)
    assert "exceeds maximum operation depth of 1" in messages(await first(shallow, deep))[0]
    long = "subscription { timeline { id summary kind actor service labels } }"
    short = with_settings(settings, graphql_max_tokens=10)
    assert "more than 10 tokens" in messages(await first(short, long))[0]


async def test_alias_limit(settings: Settings, tenant: Tenant) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{n}: viewer {{ name }}" for n in range(count)) + " }"

    allowed = settings.graphql_max_aliases
    result = await run(settings, aliased(allowed), tenant.reader)
    assert result.errors is None and len(result.data) == allowed
    result = await run(settings, aliased(allowed + 1), tenant.reader)
    assert result.data is None
    assert messages(result) == [f"{allowed + 1} aliases found. Allowed: {allowed}"]


@pytest.mark.parametrize(
    "field",
    [
        "timeline(first: $first) { edges { cursor } }",
        "incidents(first: $first) { edges { cursor } }",
        "runs(first: $first) { edges { cursor } }",
        "approvals(first: $first) { edges { cursor } }",
    ],
)
async def test_page_sizes_are_capped(gql: GraphQL, tenant: Tenant, field: str) -> None:
    document = f"query($first: Int) {{ {field} }}"
    for first in (1, 200):
        assert (await gql(document, tenant.reader, first=first)).errors is None
    for first in (0, -1, 201, 2**31 - 1):
        result = await gql(document, tenant.reader, first=first)
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
        assert result.errors[0].message == "first must be between 1 and 200."


async def test_page_size_cap_is_a_setting(settings: Settings, tenant: Tenant) -> None:
    small = with_settings(settings, page_size_max=10, page_size_default=5)
    document = "query($first: Int) { timeline(first: $first) { edges { cursor } } }"
    assert (await run(small, document, tenant.reader, first=10)).errors is None
    result = await run(small, document, tenant.reader, first=11)
    assert messages(result) == ["first must be between 1 and 10."]


async def test_introspection_can_be_turned_off(settings: Settings, tenant: Tenant) -> None:
    on = await run(settings, INTROSPECTION, tenant.reader)
    assert on.errors is None and on.data["__schema"]["queryType"]["name"] == "Query"
    off = with_settings(settings, graphql_introspection=False)
    result = await run(off, INTROSPECTION, tenant.reader)
    assert result.data is None
    assert messages(result)[0] == (
        "GraphQL introspection has been disabled, but the requested query contained "
        "the field '__schema'."
    )
    result = await run(off, '{ __type(name: "Query") { name } }', tenant.reader)
    assert result.data is None
    assert (await run(off, "{ __typename viewer { name } }", tenant.reader)).errors is None


async def _set_kinds(workspace_id: str, kind: str) -> None:
    connection = connections.get("default")
    placeholder = "$1" if connection.capabilities.dialect == "postgres" else "?"
    await connection.execute_query(
        f"UPDATE timeline_entry SET kind = '{kind}' WHERE workspace_id = {placeholder}",
        [workspace_id],
    )


@pytest.fixture
async def corrupt_entry(client: httpx.AsyncClient, tenant: Tenant) -> AsyncIterator[None]:
    """A stored row the code cannot read: a real fault, with no mock involved (repaired
    afterwards, so no other test trips over it)."""
    response = await client.post("/events", headers=bearer(tenant.writer), json=SEED_EVENT)
    assert response.status_code == 201
    await _set_kinds(tenant.workspace_id, "NOT_A_KIND")
    yield
    await _set_kinds(tenant.workspace_id, "CHANGE")


@pytest.mark.usefixtures("corrupt_entry")
async def test_unexpected_errors_are_masked_and_logged_not_shown(
    client: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    query = {"query": "{ timeline { edges { node { kind summary } } } }"}
    with caplog.at_level(logging.ERROR, logger="opsgraph.graphql"):
        response = await client.post("/graphql", headers=bearer(tenant.reader), json=query)
    assert response.status_code == 200
    body = response.json()
    assert body["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 3}],
            "path": ["timeline"],
            "extensions": {"code": "INTERNAL"},
        }
    ]
    assert "NOT_A_KIND" not in response.text and "Traceback" not in response.text
    # The operator sees what happened, in the log.
    [record] = [r for r in caplog.records if r.name == "opsgraph.graphql"]
    assert record.getMessage() == "unexpected error in timeline"
    assert record.exc_info is not None and "NOT_A_KIND" in str(record.exc_info[1])


@pytest.mark.usefixtures("corrupt_entry")
async def test_unmasked_in_development_mode_still_without_a_stack_trace(
    settings: Settings, tenant: Tenant
) -> None:
    app = create_app(with_settings(settings, mask_errors=False), manage_database=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as development:
            response = await development.post(
                "/graphql",
                headers=bearer(tenant.reader),
                json={"query": "{ timeline { edges { node { kind } } } }"},
            )
    [error] = response.json()["errors"]
    assert "NOT_A_KIND" in error["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text


async def test_errors_meant_for_callers_are_never_masked(gql: GraphQL, tenant: Tenant) -> None:
    result = await gql("{ apiKeys { id } }", tenant.reader)
    assert result.errors[0].message == "This API key lacks the 'admin' scope."
    result = await gql(
        '{ timeline(filter: {since: "yesterday"}) { edges { cursor } } }', tenant.reader
    )
    assert "must be an ISO-8601 timestamp" in result.errors[0].message


@pytest.mark.parametrize(
    ("document", "variables", "says"),
    [
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"f": {"labels": [f"l{n}" for n in range(51)], "labelsMatch": "ALL"}},
         "filter.labels: at most 50 values."),
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"f": {"text": "x" * 201}}, "filter.text: at most 200 characters."),
        ("query($f: IncidentFilter) { incidents(filter: $f) { edges { cursor } } }",
         {"f": {"services": [f"s{n}" for n in range(51)]}}, "filter.services: at most 50 values."),
        ("query($f: RunFilter) { runs(filter: $f) { edges { cursor } } }",
         {"f": {"agentIds": [f"a{n}" for n in range(51)]}}, "filter.agentIds: at most 50 values."),
        # Longer than any stored name: PostgreSQL refused to bind it, naming a column.
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"f": {"services": ["y" * 201]}}, "filter.services: each value at most 200 characters."),
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"f": {"environments": ["prod", "y" * 201], "kinds": ["CHANGE"]}},
         "filter.environments: each value at most 200 characters."),
        ("query($f: IncidentFilter) { incidents(filter: $f) { edges { cursor } } }",
         {"f": {"services": ["a" * 201]}}, "filter.services: each value at most 200 characters."),
        ("query($f: RunFilter) { runs(filter: $f) { edges { cursor } } }",
         {"f": {"agentIds": ["a" * 201]}}, "filter.agentIds: each value at most 200 characters."),
    ],
    ids=["timeline labels", "timeline text", "incident services", "run agents",
         "a long service", "a long environment", "a long incident service", "a long agent"],
)  # fmt: skip
async def test_filters_past_their_limits_are_refused_naming_the_field(
    gql: GraphQL, tenant: Tenant, document: str, variables: dict[str, Any], says: str
) -> None:
    """Hundreds of labels to match ALL took PostgreSQL minutes to plan, tens of thousands
    of values could not be bound at all (answered as if the database were down)."""
    result = await gql(document, tenant.reader, **variables)
    assert result.errors is not None and result.errors[0].message == says
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}


async def test_a_filter_value_as_long_as_a_stored_name_is_asked(
    gql: GraphQL, tenant: Tenant
) -> None:
    for document, variables in [
        ("query($f: TimelineFilter) { timeline(filter: $f) { edges { cursor } } }",
         {"services": ["y" * 200], "labels": ["l" * 200]}),
        ("query($f: IncidentFilter) { incidents(filter: $f) { edges { cursor } } }",
         {"services": ["a" * 200]}),
        ("query($f: RunFilter) { runs(filter: $f) { edges { cursor } } }",
         {"agentIds": ["a" * 200]}),
    ]:  # fmt: skip
        result = await gql(document, tenant.reader, f=variables)
        assert result.errors is None, result.errors


async def test_a_subscription_filter_past_its_limits_is_refused(
    schema: strawberry.Schema, settings: Settings, tenant: Tenant
) -> None:
    context = Context(settings=settings, publisher=Recorder([]), secret=tenant.reader)
    document = "subscription($f: TimelineFilter) { timeline(filter: $f) { cursor } }"
    labels = [f"l{n}" for n in range(51)]
    stream = await schema.subscribe(
        document, variable_values={"f": {"labels": labels}}, context_value=context
    )
    first = await anext(stream) if not isinstance(stream, ExecutionResult) else stream
    assert (
        first.errors is not None and first.errors[0].message == "filter.labels: at most 50 values."
    )


NESTED = """
query($f: Int) { incidents(first: 1) { edges { node { timeline(first: $f) { summary
  subject { ... on Incident { timeline(first: $f) { summary
    subject { ... on Incident { timeline(first: $f) { summary } } } } } } } } } } }
"""


async def test_nested_lists_are_counted_before_they_run(gql: GraphQL, tenant: Tenant) -> None:
    """Each level multiplies the one above: within the depth, token and alias limits this
    document asks 64,000 entries at first 40, 8,000,000 at first 200 (it ran for minutes
    and held every tenant's requests). It is refused before it runs, saying why; 50
    incidents with 200 alerts each (10,050 objects and more) is a page a dashboard asks."""
    assert (await gql(NESTED, tenant.reader, f=10)).errors is None  # 1 + 10 + 100 + 1,000 …
    result = await gql(NESTED, tenant.reader, f=40)
    [error] = result.errors
    assert error.extensions == {"code": "QUERY_TOO_COMPLEX"}
    assert error.message.startswith("The operation could return 67,283 objects")  # 40³ + …
    assert "(OPSGRAPH_GRAPHQL_MAX_COST)" in error.message
    suspects = "{ incidents(first: 200) { edges { node { suspectChanges(first: 200) { id } } } } }"
    assert (await gql(suspects, tenant.reader)).errors[0].extensions == {
        "code": "QUERY_TOO_COMPLEX"
    }


async def test_a_run_s_tool_calls_are_a_page_counted_by_the_cost_limit(
    gql: GraphQL, tenant: Tenant
) -> None:
    """`toolCalls` had no `first`: the cost limit counted any run's calls as 10, and a
    read key's `toolCalls { run { toolCalls { run { toolCalls { id } } } } }` on a run of
    100 calls returned 1,000,000 objects (33 MB, 8 s with every tenant waiting). It is a
    page now, counted as one: the run's latest calls, in the order they were called."""
    record = (
        "mutation($inputs: [AgentEventInput!]!) { recordAgentEvents(inputs: $inputs) "
        "{ __typename } }"
    )
    inputs = [tool_called(f"e{n}", f"tc{n}", run="long") for n in range(60)]
    assert (await gql(record, tenant.writer, inputs=inputs)).errors is None
    calls = 'query($f: Int) { run(id: "long") { toolCalls(first: $f) { toolCallId } } }'
    listed = (await gql(calls, tenant.reader)).data["run"]["toolCalls"]
    assert len(listed) == 50  # the default page
    listed = (await gql(calls, tenant.reader, f=60)).data["run"]["toolCalls"]
    assert len(listed) == 60
    assert (await gql(calls, tenant.reader, f=0)).errors[0].extensions == {"code": "BAD_USER_INPUT"}
    # The latest: a long run's new calls (one awaiting approval, say) are on its page.
    newest = [tool_called("e_last", "tc_last", run="long")]
    assert (await gql(record, tenant.writer, inputs=newest)).errors is None
    latest = (await gql(calls, tenant.reader, f=2)).data["run"]["toolCalls"]
    assert latest[-1] == {"toolCallId": "tc_last"} and len(latest) == 2
    nested = '{ run(id: "long") { toolCalls { run { toolCalls { run { toolCalls { id } } } } } } }'
    [error] = (await gql(nested, tenant.reader)).errors
    assert error.extensions == {"code": "QUERY_TOO_COMPLEX"}


async def test_the_cost_limit_is_a_setting_and_covers_subscriptions(
    settings: Settings, tenant: Tenant, schema: strawberry.Schema
) -> None:
    small = with_settings(settings, graphql_max_cost=100)
    document = "query($f: Int) { timeline(first: $f) { edges { node { summary } } } }"
    assert (await run(small, document, tenant.reader, f=33)).errors is None  # 33 × 3 = 99
    assert messages(await run(small, document, tenant.reader, f=34))[0].startswith(
        "The operation could return 102 objects, more than the 100 allowed"
    )
    context = Context(settings=small, publisher=Recorder([]), secret=tenant.reader)
    live = (
        "subscription { timeline { subject { ... on Incident { timeline(first: 200) { id } } } } }"
    )
    stream = await build_schema(small).subscribe(live, context_value=context)
    first = await anext(stream) if not isinstance(stream, ExecutionResult) else stream
    assert first.errors is not None and first.errors[0].extensions == {"code": "QUERY_TOO_COMPLEX"}


async def test_aliases_cannot_multiply_a_call_s_events(gql: GraphQL, tenant: Tenant) -> None:
    """`recordChanges` takes at most OPSGRAPH_MAX_CHANGES_PER_CALL changes: ten aliases of
    it in one operation stored ten times as many before."""
    inputs = [{**SEED_EVENT, "name": f"deploy {n}"} for n in range(30)]
    aliased = " ".join(f"a{n}: recordChanges(inputs: $i) {{ __typename }}" for n in range(10))
    document = f"mutation($i: [ChangeInput!]!) {{ {aliased} }}"
    small = await gql(document, tenant.writer, i=inputs[:25])  # 250 in all: within 256
    assert small.errors is None
    result = await gql(document, tenant.writer, i=inputs)  # 300 in all
    [error] = result.errors
    assert error.extensions == {"code": "BAD_USER_INPUT"}
    assert error.message == (
        "recordChanges: at most 256 inputs in one operation, aliases included "
        "(this one carries 300)."
    )
    assert await Change.filter(workspace_id=tenant.workspace_id).count() == 250  # none more


def chain(links: int, link: Callable[[str], str], last: str, spread: Sequence[int] = (0,)) -> str:
    """An operation spreading fragments `spread` in turn, of a chain F0 … F{links}: each
    fragment selects `link` of the spread of the next, the last selects `last`."""
    fragments = [f"fragment F{n} on Query {{ {link(f'...F{n + 1}')} }}" for n in range(links)]
    fragments.append(f"fragment F{links} on Query {{ {last} }}")
    return "{ " + " ".join(f"...F{n}" for n in spread) + " } " + " ".join(fragments)


def fragment_chain(links: int) -> str:
    """Fragments each spreading the next twice: 2^links selections of one small document."""
    return chain(links, lambda spread: f"{spread} {spread}", "viewer { name }")


async def test_fragments_doubling_at_every_link_are_counted_once_each(
    settings: Settings, tenant: Tenant
) -> None:
    """A 750-byte chain of 18 fragments expands to 2^18 selections: the field count (done
    before validation) counts them as spread and refuses the chain at once; expanding
    them copy by copy took seconds and doubled with every link."""
    small = await run(settings, fragment_chain(4), tenant.reader)  # 16 × 2 fields
    assert small.errors is None and small.data == {"viewer": {"name": "dashboard"}}
    started = time.process_time()
    result = await run(settings, fragment_chain(18), tenant.reader)
    assert time.process_time() - started < 1.0  # it was minutes at 25 links
    assert messages(result) == [
        "The document holds more than 300 fields (OPSGRAPH_GRAPHQL_MAX_FIELDS): send fewer."
    ]


def spread_in_turn(names: list[int], links: int) -> str:
    """An operation spreading fragments `names` in turn, of a chain F0 … F{links} each
    spreading the next once (the last selects a field)."""
    return chain(links, lambda spread: spread, "viewer { name }", spread=names)


async def test_selections_nest_at_most_the_nesting_limit_counted_through_fragments(
    settings: Settings, tenant: Tenant
) -> None:
    """The depth rule follows fragments one Python call inside the other: a chain of 300
    answered "maximum recursion depth exceeded". Selection sets nest at most
    OPSGRAPH_GRAPHQL_MAX_NESTING deep, counted through fragments, however the operation
    reaches them."""
    limits = with_settings(settings, graphql_max_nesting=12)
    refused = [
        "The document's selections nest more than 12 deep, counted through its fragments "
        "(OPSGRAPH_GRAPHQL_MAX_NESTING): nest fewer."
    ]
    # The operation's set, F0 … F9, then `viewer`'s: 12.
    deepest = await run(limits, spread_in_turn([0], 9), tenant.reader)
    assert deepest.errors is None and deepest.data == {"viewer": {"name": "dashboard"}}
    for names, links in (([0], 10), ([0], 300), ([5, 0], 10), ([10, 0], 10)):
        result = await run(limits, spread_in_turn(names, links), tenant.reader)
        assert messages(result) == refused, (names, links)
        assert result.errors[0].extensions == {"code": "QUERY_TOO_COMPLEX"}
    # Reached from the middle, the rest of the chain is within the limit (and validation
    # then finds the unused head).
    middle = await run(limits, spread_in_turn([1], 10), tenant.reader)
    assert messages(middle) == ["Fragment 'F0' is never used."]


def inline_in_turn(links: int, inline: int) -> str:
    """Fragments each nesting `inline` inline fragments and spreading the next inside."""

    def nested(inside: str) -> str:
        return "... on Query { " * inline + inside + " }" * inline

    return chain(links, nested, nested("__typename"))


async def test_inline_fragments_nested_across_spreads_count_too(
    settings: Settings, tenant: Tenant
) -> None:
    """The parser bounds how deeply each fragment nests, not the chain: three fragments of
    150 inline fragments each, spreading the next, ran the depth rule out of recursion."""
    assert settings.graphql_max_nesting == 64
    within = await run(settings, inline_in_turn(2, 20), tenant.reader)  # 64 sets
    assert within.errors is None and within.data == {"__typename": "Query"}
    for links, inline in ((2, 21), (3, 150)):
        result = await run(settings, inline_in_turn(links, inline), tenant.reader)
        assert [error.extensions for error in result.errors] == [{"code": "QUERY_TOO_COMPLEX"}]
        assert "nest more than 64 deep" in messages(result)[0], (links, inline)


def in_turns(links: int, inline: int) -> str:
    """Fragments C1 … C{links}, each nesting `inline` inline fragments around spreads of B
    of its own and the next, and B{i} spreading C{i} (a cycle of two): the operation
    spreads them from the last, so each C is first counted with its B cut short."""
    fragments = []
    for n in range(1, links + 1):
        inside = f"...B{n}" + (f" ...B{n + 1}" if n < links else " __typename")
        fragments.append(
            f"fragment C{n} on Query {{ " + "... { " * inline + inside + " }" * inline + " }"
        )
        fragments.append(f"fragment B{n} on Query {{ ...C{n} }}")
    spreads = " ".join(f"...C{n}" for n in range(links, 0, -1))
    return "{ " + spreads + " } " + " ".join(fragments)


async def test_a_fragment_spread_within_itself_or_unknown_is_refused_before_validation(
    settings: Settings, tenant: Tenant
) -> None:
    """Strawberry's depth and alias rules run before graphql-core's NoFragmentCycles and
    follow every path: a cycle whose links each spread the next twice doubled their time
    with every link (4 s at 20, in 170 tokens), and a cycle counted short let a chain
    nest past the limit into a RecursionError. An unknown fragment answered 'Nope' (the
    depth rule's KeyError)."""
    doubling = chain(20, lambda spread: f"{spread} {spread}", "...F0")
    started = time.process_time()
    result = await run(settings, doubling, tenant.reader)
    assert time.process_time() - started < 1.0
    assert messages(result) == ["Cannot spread fragment 'F0' within itself."]
    result = await run(settings, in_turns(25, 58), tenant.reader)
    assert messages(result) == ["Cannot spread fragment 'C25' within itself."]
    result = await run(settings, "{ viewer { name } ...Nope }", tenant.reader)
    assert messages(result) == ["Unknown fragment 'Nope'."]
    assert result.errors[0].locations is not None


async def test_variables_count_as_they_run_default_and_float_included(
    settings: Settings, tenant: Tenant
) -> None:
    """`first` given by a variable's default, or as 200.0 (which GraphQL takes as the Int
    200), counts as that: both counted as the default page of 50 before."""
    nested = "timeline(first: $n) { subject { ... on Incident { timeline(first: $n) { id } } } }"
    document = f"query($n: Int = 200) {{ incidents(first: 1) {{ nodes {{ {nested} }} }} }}"
    for variables in ({}, {"n": 200.0}):
        result = await run(settings, document, tenant.reader, **variables)
        assert result.errors is not None, variables
        assert result.errors[0].extensions == {"code": "QUERY_TOO_COMPLEX"}, variables
    assert (await run(settings, document, tenant.reader, n=20)).errors is None
