"""Isolation: a key of workspace B cannot read or change anything of workspace A, through
any query, mutation, subscription or REST endpoint, even with A's ids copied; and each
scope permits exactly the operations it should. Both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import strawberry
from graphql import ExecutionResult

from opsgraph.bus import Bus
from opsgraph.settings import Settings
from resolvers.auth import Scope
from schema.context import Context
from tests.conftest import GraphQL, MakeTenant, Tenant, memory_bus

NOW = "2026-11-25T10:00:00Z"


def data(result: Any) -> dict[str, Any]:
    assert result.errors is None, result.errors
    return result.data  # type: ignore[no-any-return]


def code(result: Any) -> str | None:
    return result.errors[0].extensions.get("code") if result.errors else None


@dataclass
class World:
    """Workspace A with one of everything, and workspace B next to it."""

    a: Tenant
    b: Tenant
    decider: str  # A's approvals:decide key
    routing_key: str
    service_id: str
    change_id: str
    incident_id: str
    run_id: str
    approval_id: str
    policy_id: str
    reader_key_id: str


async def build_world(gql: GraphQL, make_tenant: MakeTenant) -> World:
    a, b = await make_tenant(), await make_tenant()
    service = data(await gql('mutation { createService(name: "api") { id routingKey } }', a.admin))
    routing_key = service["createService"]["routingKey"]
    change = data(
        await gql(
            "mutation($i: ChangeInput!) { recordChange(input: $i) "
            "{ ... on ChangeRecorded { change { id } } } }",
            a.writer,
            i={"name": "A deploy", "timestamp": NOW, "category": "TECHNICAL", "source": "ci"},
        )
    )
    trigger = {
        "eventAction": "TRIGGER",
        "routingKey": routing_key,
        "dedupKey": "a-disk",
        "payload": {"summary": "A disk full", "source": "host", "severity": "CRITICAL"},
    }
    data(await gql(SEND, a.writer, i=trigger))
    incidents = data(await gql("{ incidents { edges { node { id } } } }", a.reader))
    policy = data(
        await gql(
            'mutation { createPolicy(input: {name: "gate", action: REQUIRE_APPROVAL, '
            'toolName: "deploy"}) { id } }',
            a.admin,
        )
    )
    data(await gql(AGENT, a.writer, i=agent_event("a-1", "run.started", {})))
    called = data(
        await gql(
            AGENT,
            a.writer,
            i=agent_event("a-2", "tool.called", {"toolCallId": "tc-a", "toolName": "deploy"}),
        )
    )
    runs = data(await gql("{ runs { edges { node { id } } } }", a.reader))
    keys = data(await gql("{ apiKeys { id name } }", a.admin))["apiKeys"]
    return World(
        a=a,
        b=b,
        decider=await a.key(Scope.APPROVALS_DECIDE, name="approver"),
        routing_key=routing_key,
        service_id=service["createService"]["id"],
        change_id=change["recordChange"]["change"]["id"],
        incident_id=incidents["incidents"]["edges"][0]["node"]["id"],
        run_id=runs["runs"]["edges"][0]["node"]["id"],
        approval_id=called["recordAgentEvent"]["approvalId"],
        policy_id=policy["createPolicy"]["id"],
        reader_key_id=next(key["id"] for key in keys if key["name"] == "dashboard"),
    )


SEND_MANY = """mutation($i: [IncidentEventInput!]!) { sendIncidentEvents(inputs: $i) {
  __typename } }"""
SEND = """mutation($i: IncidentEventInput!) { sendIncidentEvent(input: $i) { __typename
  ... on IncidentEventAccepted { incidentKey } ... on InvalidRoutingKey { message } } }"""
AGENT = """mutation($i: AgentEventInput!) { recordAgentEvent(input: $i) {
  __typename ... on AgentEventProcessed { approvalId toolCallStatus } } }"""


def agent_event(event_id: str, event_type: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "runId": "run-a",
        "agentId": "agent-a",
        "timestamp": NOW,
        "eventType": event_type,
        "metadata": metadata,
    }


@pytest.fixture
async def world(gql: GraphQL, make_tenant: MakeTenant) -> World:
    return await build_world(gql, make_tenant)


async def a_state(gql: GraphQL, world: World) -> dict[str, Any]:
    """Everything A can see, to compare before and after B's attempts."""
    return data(
        await gql(
            """{ timeline(first: 200) { edges { node { id summary } } }
                 incidents { edges { node { id status alertCount } } }
                 runs { edges { node { id status } } }
                 approvals { edges { node { id status } } }
                 policies { id name version }
                 services { id name } apiKeys { id revokedAt } }""",
            world.a.admin,
        )
    )


async def test_b_reads_nothing_of_a(gql: GraphQL, world: World) -> None:
    b = world.b.admin  # the strongest key B has
    seen = data(
        await gql(
            """{ timeline { edges { node { id } } } incidents { edges { node { id } } }
                 runs { edges { node { id } } } approvals { edges { node { id } } }
                 policies { id } services { id } apiKeys { id } viewer { workspace { id } } }""",
            b,
        )
    )
    assert seen["viewer"]["workspace"]["id"] == world.b.workspace_id
    for name in ("timeline", "incidents", "runs", "approvals"):
        assert seen[name]["edges"] == [], name
    assert seen["policies"] == [] and seen["services"] == []
    assert world.reader_key_id not in {key["id"] for key in seen["apiKeys"]}
    # Ids copied from A are simply not there.
    for query, ident in (
        ("query($id: ID!) { incident(id: $id) { id } }", world.incident_id),
        ("query($id: ID!) { run(id: $id) { id } }", world.run_id),
        ("query($id: ID!) { run(id: $id) { id } }", "run-a"),  # by the agent's run key
        ("query($id: ID!) { approval(id: $id) { id } }", world.approval_id),
    ):
        result = data(await gql(query, b, id=ident))
        assert list(result.values()) == [None], query


async def test_b_changes_nothing_of_a(gql: GraphQL, world: World) -> None:
    before = await a_state(gql, world)
    b = world.b.admin
    for mutation in (
        "mutation($id: ID!) { acknowledgeIncident(id: $id) { id } }",
        "mutation($id: ID!) { resolveIncident(id: $id) { id } }",
        'mutation($id: ID!) { annotateIncident(id: $id, note: "n") { id } }',
        "mutation($id: ID!) { decideApproval(id: $id, decision: APPROVE) { id } }",
        'mutation($id: ID!) { updatePolicy(id: $id, input: {name: "x", action: ALLOW}) { id } }',
    ):
        assert code(await gql(mutation, b, id=world.approval_id)) == "NOT_FOUND", mutation
        target = world.incident_id if "Incident" in mutation else world.policy_id
        assert code(await gql(mutation, b, id=target)) == "NOT_FOUND", mutation
    assert data(
        await gql("mutation($id: ID!) { deletePolicy(id: $id) }", b, id=world.policy_id)
    ) == {"deletePolicy": False}
    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) }"
    assert data(await gql(revoke, b, id=world.reader_key_id)) == {"revokeApiKey": False}
    # A's routing key or service id, used with B's key, reaches no service.
    for given in ({"routingKey": world.routing_key}, {"serviceId": world.service_id}):
        event = {"eventAction": "TRIGGER", "dedupKey": "a-disk", **given}
        event["payload"] = {"summary": "B was here", "source": "b", "severity": "INFO"}
        result = data(await gql(SEND, world.b.writer, i=event))
        assert result["sendIncidentEvent"]["__typename"] == "InvalidRoutingKey", given
        many = data(await gql(SEND_MANY, world.b.writer, i=[event]))
        assert many["sendIncidentEvents"] == [{"__typename": "InvalidRoutingKey"}], given
    # The same event and tool-call ids in B are B's own: A's run and approval are untouched.
    completed = agent_event("a-2", "tool.completed", {"toolCallId": "tc-a", "outputPayload": {}})
    data(await gql(AGENT, world.b.writer, i=completed))
    data(await gql(AGENT, world.b.writer, i=agent_event("a-1", "run.completed", {})))
    assert await a_state(gql, world) == before
    # A's reader key still works.
    assert data(await gql("{ viewer { name } }", world.a.reader))["viewer"]["name"] == "dashboard"


async def test_rest_endpoints_keep_workspaces_apart(
    client: httpx.AsyncClient, gql: GraphQL, world: World
) -> None:
    before = await a_state(gql, world)
    b_key = {"X-API-Key": world.b.reader}
    response = await client.get(f"/v1/approvals/{world.approval_id}", headers=b_key)
    assert response.status_code == 404
    bearer = {"Authorization": f"Bearer {world.b.writer}"}
    for given in ({"routing_key": world.routing_key}, {"service_id": world.service_id}):
        event = {"event_action": "resolve", "dedup_key": "a-disk", **given}
        response = await client.post("/api/events", json=event, headers=bearer)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "INVALID_ROUTING_KEY"
    event = agent_event("a-2", "tool.completed", {"toolCallId": "tc-a", "outputPayload": {}})
    response = await client.post("/v1/events", json=event, headers={"X-API-Key": world.b.writer})
    assert response.status_code == 400  # B has no such tool call: A's is not reachable
    assert "no tool.called was recorded for tc-a" in response.json()["error"]["message"]
    change = {"name": "B deploy", "timestamp": NOW, "category": "TECHNICAL", "source": "b"}
    assert (await client.post("/events", json=change, headers=bearer)).status_code == 201
    assert await a_state(gql, world) == before


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=100) as live:
        yield live


async def test_subscriptions_of_b_never_see_a(
    schema: strawberry.Schema, settings: Settings, bus: Bus, gql: GraphQL, world: World
) -> None:
    def context(key: str) -> Context:
        return Context(settings=settings, publisher=bus, secret=key, hub=bus.hub)

    timeline = await schema.subscribe(
        "subscription { timeline { summary } }", context_value=context(world.b.reader)
    )
    pending = await schema.subscribe(
        "subscription { pendingApprovals { kind approval { id } } }",
        context_value=context(world.b.reader),
    )
    approval = await schema.subscribe(
        "subscription($id: ID!) { approval(id: $id) { id } }",
        variable_values={"id": world.approval_id},
        context_value=context(world.b.reader),
    )
    refused = await asyncio.wait_for(approval.__anext__(), timeout=5)
    assert refused.errors[0].extensions == {"code": "NOT_FOUND"}
    waiting = [asyncio.ensure_future(stream.__anext__()) for stream in (timeline, pending)]
    # A writes (through the bus), then B writes: B's streams get B's entries only.
    a_context = Context(settings=settings, publisher=bus, secret=world.a.writer, hub=bus.hub)
    event = agent_event("a-3", "tool.called", {"toolCallId": "tc-a3", "toolName": "deploy"})
    await schema.execute(AGENT, variable_values={"i": event}, context_value=a_context)
    await asyncio.sleep(0.2)
    assert not any(future.done() for future in waiting)
    b_context = Context(settings=settings, publisher=bus, secret=world.b.admin, hub=bus.hub)
    await schema.execute(
        'mutation { createPolicy(input: {name: "g", action: REQUIRE_APPROVAL, '
        'toolName: "deploy"}) { id } }',
        context_value=b_context,
    )
    b_event = {**event, "eventId": "b-3"}
    result = await schema.execute(AGENT, variable_values={"i": b_event}, context_value=b_context)
    b_approval = result.data["recordAgentEvent"]["approvalId"]
    got_entry = await asyncio.wait_for(waiting[0], timeout=5)
    assert got_entry.errors is None and got_entry.data["timeline"]["summary"]
    got_approval = await asyncio.wait_for(waiting[1], timeout=5)
    assert got_approval.data["pendingApprovals"]["approval"]["id"] == b_approval
    for stream in (timeline, pending):
        await stream.aclose()


# Scopes: each operation is allowed exactly to the keys whose scopes include what it needs
# (`admin` implies every scope); the others get FORBIDDEN.

READ, WRITE, DECIDE, ADMIN = Scope.READ, Scope.EVENTS_WRITE, Scope.APPROVALS_DECIDE, Scope.ADMIN
OPERATIONS: list[tuple[str, set[Scope], str]] = [
    ("timeline", {READ}, "{ timeline { edges { cursor } } }"),
    ("incidents", {READ}, "{ incidents { edges { cursor } } }"),
    ("incident", {READ}, "query($id: ID!) { incident(id: $id) { id } }"),
    ("runs", {READ}, "{ runs { edges { cursor } } }"),
    ("run", {READ}, "query($id: ID!) { run(id: $id) { id } }"),
    ("approvals", {READ}, "{ approvals { edges { cursor } } }"),
    ("approval", {READ, WRITE}, "query($id: ID!) { approval(id: $id) { id } }"),
    ("policies", {READ}, "{ policies { id } }"),
    ("viewer", {READ}, "{ viewer { name } }"),
    ("services", {READ}, "{ services { id } }"),
    ("apiKeys", {ADMIN}, "{ apiKeys { id } }"),
    (
        "recordChange",
        {WRITE},
        'mutation { recordChange(input: {name: "s", timestamp: "2026-11-25T10:00:00Z", '
        'category: TECHNICAL, source: "s"}) { __typename } }',
    ),
    (
        "recordChanges",
        {WRITE},
        'mutation { recordChanges(inputs: [{name: "s", timestamp: "2026-11-25T10:00:00Z", '
        'category: TECHNICAL, source: "s"}]) { __typename } }',
    ),
    (
        "sendIncidentEvent",
        {WRITE},
        'mutation { sendIncidentEvent(input: {eventAction: RESOLVE, dedupKey: "none", '
        'routingKey: "Rnone"}) { __typename } }',
    ),
    (
        "sendIncidentEvents",
        {WRITE},
        'mutation { sendIncidentEvents(inputs: [{eventAction: RESOLVE, dedupKey: "none", '
        'routingKey: "Rnone"}]) { __typename } }',
    ),
    ("acknowledgeIncident", {WRITE}, "mutation($id: ID!) { acknowledgeIncident(id: $id) { id } }"),
    ("resolveIncident", {WRITE}, "mutation($id: ID!) { resolveIncident(id: $id) { id } }"),
    (
        "annotateIncident",
        {WRITE},
        'mutation($id: ID!) { annotateIncident(id: $id, note: "n") { id } }',
    ),
    (
        "recordAgentEvent",
        {WRITE},
        'mutation { recordAgentEvent(input: {eventId: "scope-e", runId: "scope-r", '
        'agentId: "s", timestamp: "2026-11-25T10:00:00Z", eventType: "run.started"}) '
        "{ __typename } }",
    ),
    (
        "recordAgentEvents",
        {WRITE},
        'mutation { recordAgentEvents(inputs: [{eventId: "scope-es", runId: "scope-rs", '
        'agentId: "s", timestamp: "2026-11-25T10:00:00Z", eventType: "run.started"}]) '
        "{ __typename } }",
    ),
    (
        "decideApproval",
        {DECIDE},
        'mutation($id: ID!) { decideApproval(id: $id, decision: REJECT, comment: "no") { id } }',
    ),
    (
        "createPolicy",
        {ADMIN},
        'mutation { createPolicy(input: {name: "p", action: ALLOW}) { id } }',
    ),
    (
        "updatePolicy",
        {ADMIN},
        'mutation($id: ID!) { updatePolicy(id: $id, input: {name: "p", action: BLOCK}) { id } }',
    ),
    ("deletePolicy", {ADMIN}, "mutation($id: ID!) { deletePolicy(id: $id) }"),
    ("createService", {ADMIN}, 'mutation { createService(name: "scoped") { id } }'),
    ("createApiKey", {ADMIN}, 'mutation { createApiKey(name: "k", scopes: [READ]) { key } }'),
    ("revokeApiKey", {ADMIN}, 'mutation { revokeApiKey(id: "key_none") }'),
    ("rotateRoutingKey", {ADMIN}, 'mutation { rotateRoutingKey(id: "svc_none") { id } }'),
]


def test_every_root_field_has_a_scope_case(schema: strawberry.Schema) -> None:
    graphql = schema._schema
    assert graphql.query_type is not None and graphql.mutation_type is not None
    roots = set(graphql.query_type.fields) | set(graphql.mutation_type.fields)
    assert roots == {name for name, _, _ in OPERATIONS}


@pytest.mark.parametrize("name, needs, document", OPERATIONS, ids=[op[0] for op in OPERATIONS])
async def test_each_scope_permits_exactly_what_it_should(
    gql: GraphQL, world: World, name: str, needs: set[Scope], document: str
) -> None:
    ids = {
        "incident": world.incident_id,
        "run": world.run_id,
        "approval": world.approval_id,
        "acknowledgeIncident": world.incident_id,
        "resolveIncident": world.incident_id,
        "annotateIncident": world.incident_id,
        "decideApproval": world.approval_id,
        "updatePolicy": world.policy_id,
        "deletePolicy": world.policy_id,
    }
    keys = {
        READ: world.a.reader,
        WRITE: world.a.writer,
        DECIDE: world.decider,
        ADMIN: world.a.admin,
    }
    variables = {"id": ids[name]} if name in ids else {}
    for scope, key in keys.items():
        result = await gql(document, key, **variables)
        allowed = scope in needs or scope is ADMIN
        if allowed:  # answered, or refused for what it asks (never the key, never a crash)
            assert result.errors is None or code(result) in ("CONFLICT", "NOT_FOUND"), (
                name, scope, result.errors,
            )  # fmt: skip
        else:
            assert code(result) == "FORBIDDEN", (name, scope, result.errors)


SUBSCRIPTIONS: list[tuple[str, set[Scope], str]] = [
    ("timeline", {READ}, "subscription { timeline { summary } }"),
    ("pendingApprovals", {READ}, "subscription { pendingApprovals { kind } }"),
    # The waiting agent's own key may follow its approval (DESIGN.md), as it may query it.
    ("approval", {READ, WRITE}, "subscription($id: ID!) { approval(id: $id) { id status } }"),
]


def test_every_subscription_has_a_scope_case(schema: strawberry.Schema) -> None:
    assert schema._schema.subscription_type is not None
    assert set(schema._schema.subscription_type.fields) == {name for name, _, _ in SUBSCRIPTIONS}


@pytest.mark.parametrize("name, needs, document", SUBSCRIPTIONS, ids=[s[0] for s in SUBSCRIPTIONS])
async def test_each_scope_subscribes_to_exactly_what_it_should(
    schema: strawberry.Schema,
    settings: Settings,
    bus: Bus,
    world: World,
    name: str,
    needs: set[Scope],
    document: str,
) -> None:
    keys = {READ: world.a.reader, WRITE: world.a.writer, DECIDE: world.decider}
    variables = {"id": world.approval_id} if name == "approval" else {}
    for scope, key in keys.items():
        context = Context(settings=settings, publisher=bus, secret=key, hub=bus.hub)
        stream = await schema.subscribe(document, variable_values=variables, context_value=context)
        assert not isinstance(stream, ExecutionResult), stream
        try:
            first = await asyncio.wait_for(stream.__anext__(), timeout=0.3)
        except TimeoutError:  # live, waiting for an entry: allowed
            first = None
        finally:
            await stream.aclose()
        if scope in needs and name == "timeline":  # live: it waits for the next entry
            assert first is None, (name, scope, first)
        elif scope in needs:  # the pending approval (its state, the queue) comes at once
            assert first is not None and code(first) is None, (name, scope, first)
            assert first.data is not None and first.data[name], (name, scope, first)
        else:
            assert first is not None and code(first) == "FORBIDDEN", (name, scope, first)


@pytest.mark.parametrize(
    "method, path, needs",
    [
        ("POST", "/events", {WRITE}),
        ("POST", "/api/events", {WRITE}),
        ("POST", "/v1/events", {WRITE}),
        ("GET", "/v1/approvals/{approval}", {READ, WRITE}),
    ],
)
async def test_rest_scopes(
    client: httpx.AsyncClient, world: World, method: str, path: str, needs: set[Scope]
) -> None:
    keys = {READ: world.a.reader, WRITE: world.a.writer, DECIDE: world.decider}
    for scope, key in keys.items():
        headers = {"Authorization": f"Bearer {key}", "X-API-Key": key}
        url = path.format(approval=world.approval_id)
        response = await client.request(method, url, json={}, headers=headers)
        if scope in needs:  # past the key: answered, or the empty body refused as such
            assert response.status_code in (200, 400), (path, scope, response.text)
            if response.status_code == 400:
                assert response.json()["error"]["code"] in ("INVALID_EVENT", "INVALID_REQUEST")
        else:
            assert response.status_code == 403, (path, scope, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("field", "document", "variables"),
    [
        (
            "toolCalls",
            """mutation($i: AgentEventInput!) { recordAgentEvent(input: $i) {
              ... on AgentEventProcessed { runId run { runId toolCalls { inputPayload } } } } }""",
            {"i": agent_event("a-3", "tool.called", {"toolCallId": "tc-b", "toolName": "ls"})},
        ),
        (
            "timeline",
            """mutation($i: IncidentEventInput!) { sendIncidentEvent(input: $i) {
              ... on IncidentEventAccepted { incident { id timeline { summary } } } } }""",
            None,
        ),
        (
            "suspectChanges",
            """mutation($i: IncidentEventInput!) { sendIncidentEvent(input: $i) {
              ... on IncidentEventAccepted { incident { id suspectChanges { summary } } } } }""",
            None,
        ),
        (
            "alerts",
            """mutation($i: IncidentEventInput!) { sendIncidentEvent(input: $i) {
              ... on IncidentEventAccepted { incident { id alerts { summary } } } } }""",
            None,
        ),
    ],
)
async def test_a_key_that_only_posts_events_reads_no_history_through_its_answers(
    gql: GraphQL, world: World, field: str, document: str, variables: dict[str, Any] | None
) -> None:
    """An `events:write` key (an agent's, a monitor's) sees what its own event stored, not
    the run's other tool calls or the incident's history: those need `read`. Selected in a
    mutation's answer, the mutation is refused before it runs (stores nothing), rather than
    committed and then answered with an error and no data."""
    if variables is None:
        trigger = {
            "eventAction": "TRIGGER",
            "routingKey": world.routing_key,
            "dedupKey": "a-disk",
            "payload": {"summary": "A disk full again", "source": "host", "severity": "ERROR"},
        }
        variables = {"i": trigger}
    before = await a_state(gql, world)
    writer = await gql(document, world.a.writer, **variables)
    assert writer.errors and code(writer) == "FORBIDDEN", writer
    assert writer.data is None
    assert await a_state(gql, world) == before  # nothing stored
    reader_and_writer = await world.a.key(Scope.READ, Scope.EVENTS_WRITE, name=f"both-{field}")
    again = await gql(document, reader_and_writer, **variables)
    assert again.errors is None, again.errors


async def test_the_waiting_agent_reads_its_approval_not_its_run_s_history(
    gql: GraphQL, world: World
) -> None:
    """`approval(id)` answers an `events:write` key (the agent waiting on it), down to the
    call and its run, but the run's tool calls need `read`."""
    own = "query($id: ID!) { approval(id: $id) { status toolCall { toolName run { runId } } } }"
    answer = await gql(own, world.a.writer, id=world.approval_id)
    assert answer.errors is None and answer.data["approval"]["toolCall"]["run"]["runId"]
    history = (
        "query($id: ID!) { approval(id: $id) { status "
        "toolCall { run { toolCalls { toolName } } } } }"
    )
    refused = await gql(history, world.a.writer, id=world.approval_id)
    assert code(refused) == "FORBIDDEN" and refused.errors[0].path[-1] == "toolCalls"
    assert (await gql(history, world.a.reader, id=world.approval_id)).errors is None
