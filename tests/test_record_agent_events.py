"""`recordAgentEvents`: many agent events in one call, each as if sent alone after the ones
before it; and `POST /v1/events`, whose concurrent requests run as one such call per key."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from models.agent import AgentEvent
from opsgraph.settings import Settings
from resolvers import agent_events
from resolvers.auth import Scope
from rest_compat import batched
from rest_compat.common import Endpoint
from schema import build_schema
from schema.agent_events import AgentEventInput
from schema.context import Context
from tests.agent_helpers import (
    RECORD,
    SEED_POLICY,
    SEED_REQUEST,
    create_policy,
    event,
    kinds,
    post,
    tool_called,
)
from tests.conftest import GraphQL, Recorder, Tenant, with_settings
from tests.held_calls import Held
from tests.input_hooks import built_both_ways
from tests.test_agent_events import run_of

RECORD_MANY = """
mutation($inputs: [AgentEventInput!]!) {
  recordAgentEvents(inputs: $inputs) {
    __typename
    ... on AgentEventProcessed { eventId runId processed duplicate toolCallStatus reason
      approvalId toolCall { status } }
    ... on InvalidEvent { code message fields { field message } }
    ... on AgentEventConflict { code message }
  }
}
"""


async def record_many(gql: GraphQL, key: str, *inputs: dict[str, Any]) -> list[Any]:
    result = await gql(RECORD_MANY, key, inputs=list(inputs))
    assert result.errors is None, result.errors
    answers: list[Any] = result.data["recordAgentEvents"]
    return answers


async def test_a_run_in_one_call_is_processed_in_order(gql: GraphQL, tenant: Tenant) -> None:
    """Each event depends on the one before it: processed out of order, the tool call
    would be unknown when it completes, or the run finished before its call."""
    answers = await record_many(
        gql,
        tenant.writer,
        event("e1", "run.started", task="t"),
        tool_called("e2", "tc_1", "read_file"),
        event("e3", "nope"),
        event("e4", "tool.completed", toolCallId="tc_1", outputPayload={"ok": True}),
        event("e5", "run.completed"),
    )

    assert [a["__typename"] for a in answers] == [
        "AgentEventProcessed",
        "AgentEventProcessed",
        "InvalidEvent",
        "AgentEventProcessed",
        "AgentEventProcessed",
    ]
    assert [answers[i]["eventId"] for i in (0, 1, 3, 4)] == ["e1", "e2", "e4", "e5"]
    assert answers[1]["toolCallStatus"] == "ALLOWED"
    assert [f["field"] for f in answers[2]["fields"]] == ["eventType"]
    run = await run_of(gql, tenant.reader)
    assert run["status"] == "COMPLETED" and run["task"] == "t"
    assert [call["status"] for call in run["toolCalls"]] == ["COMPLETED"]


async def test_a_repeated_event_id_in_one_call_is_answered_as_a_retry(
    gql: GraphQL, tenant: Tenant
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    changed = {**SEED_REQUEST, "timestamp": "2026-03-19T10:00:02Z"}
    first, again, conflict = await record_many(
        gql, tenant.writer, SEED_REQUEST, SEED_REQUEST, changed
    )

    assert first["toolCallStatus"] == "AWAITING_APPROVAL" and first["duplicate"] is False
    assert again["duplicate"] is True
    assert {**again, "duplicate": False} == first
    assert conflict == {
        "__typename": "AgentEventConflict",
        "code": "CONFLICT",
        "message": "Event evt_001 was already recorded with a different body; "
        "an eventId identifies one event.",
    }
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "APPROVAL_REQUESTED"]
    stored = AgentEvent.filter(workspace_id=tenant.workspace_id, event_id="evt_001")
    assert await stored.count() == 1

    # And a retry of the whole call later gets the same answers.
    retried = await record_many(gql, tenant.writer, SEED_REQUEST, changed)
    assert retried == [again, conflict]


async def test_calls_of_one_run_in_one_call(gql: GraphQL, tenant: Tenant) -> None:
    """Calls of a new run share it; a second call with a used toolCallId conflicts."""
    answers = await record_many(
        gql,
        tenant.writer,
        *(tool_called(f"e{i}", f"tc_{i}", "read_file", run="run_new") for i in range(4)),
        tool_called("e_dup", "tc_0", "read_file", run="run_new"),
    )

    assert [a["__typename"] for a in answers[:4]] == ["AgentEventProcessed"] * 4
    assert answers[4]["__typename"] == "AgentEventConflict"
    assert "Tool call tc_0 of run run_new was already recorded" in answers[4]["message"]
    run = await run_of(gql, tenant.reader, "run_new")
    assert sorted(call["toolCallId"] for call in run["toolCalls"]) == [f"tc_{i}" for i in range(4)]


async def test_an_input_that_fails_otherwise_is_null_with_an_error_at_its_index(
    gql: GraphQL, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = agent_events.record_agent_event

    async def failing(*, data: agent_events.AgentEventData, **kw: Any) -> Any:
        if data.event_id == "boom":
            raise RuntimeError("the database went away")
        return await record(data=data, **kw)

    monkeypatch.setattr(agent_events, "record_agent_event", failing)
    inputs = [tool_called("a", "tc_a"), tool_called("boom", "tc_b"), tool_called("c", "tc_c")]
    result = await gql(RECORD_MANY, tenant.writer, inputs=inputs)

    first, failed, last = result.data["recordAgentEvents"]
    assert failed is None
    [error] = result.errors
    assert error.path == ["recordAgentEvents", 1]
    assert first["__typename"] == last["__typename"] == "AgentEventProcessed"
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "TOOL_CALLED"]


async def test_the_number_of_inputs_is_limited(
    settings: Settings, recorder: Recorder, tenant: Tenant, gql: GraphQL
) -> None:
    limited = with_settings(settings, max_agent_events_per_call=2)
    context = Context(settings=limited, publisher=recorder, secret=tenant.writer)
    inputs = [tool_called(f"e{i}", f"tc_{i}") for i in range(3)]
    result = await build_schema(limited).execute(
        RECORD_MANY, variable_values={"inputs": inputs}, context_value=context
    )

    assert result.data is None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert "at most 2 events" in result.errors[0].message
    assert await kinds(gql, tenant.reader) == []
    assert await record_many(gql, tenant.writer) == []


async def test_a_read_only_key_records_nothing(gql: GraphQL, tenant: Tenant) -> None:
    result = await gql(RECORD_MANY, tenant.reader, inputs=[tool_called("e", "tc")])
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}
    assert await kinds(gql, tenant.reader) == []


@pytest.mark.settings(agent_batches_at_once=1)
async def test_concurrent_posts_run_as_one_call_per_key_each_answered_on_its_own(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    other = await tenant.key(Scope.EVENTS_WRITE, name="other-agent")
    held = Held(monkeypatch)

    def send(key: str, body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(post(client, key, body))

    first = send(tenant.writer, event("e0", "run.started", task="t"))
    await held.calls(1)  # the first call holds the batcher: the others queue meanwhile
    changed = {**SEED_REQUEST, "timestamp": "2026-03-19T10:00:02Z"}
    posts = [
        send(tenant.writer, SEED_REQUEST),
        send(other, tool_called("o1", "tc_o", run="run_o")),
        send(tenant.writer, SEED_REQUEST),
        send(tenant.writer, changed),
        send(tenant.reader, tool_called("r1", "tc_r")),
        send(tenant.writer, event("bad", "nope")),
    ]
    await held.queued(4)  # the reader's and the invalid body are answered before queueing
    held.gate.set()
    responses = [await first, *await asyncio.gather(*posts)]

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 409, 403, 400]
    assert held.sizes == [1, 3, 1]  # the first alone, then one call per key
    assert responses[1].json()["toolCallStatus"] == "awaiting_approval"
    assert responses[3].text == responses[1].text  # a repeat: the first one's answer
    assert responses[4].json() == {
        "error": {
            "code": "CONFLICT",
            "message": "Event evt_001 was already recorded with a different body; "
            "an eventId identifies one event.",
        }
    }
    assert responses[2].json()["toolCallStatus"] == "allowed"
    assert responses[5].json()["error"]["code"] == "FORBIDDEN"
    assert responses[6].json()["error"]["code"] == "INVALID_EVENT"
    stored = await kinds(gql, tenant.reader)
    assert sorted(stored) == ["APPROVAL_REQUESTED", "RUN_STARTED", "TOOL_CALLED", "TOOL_CALLED"]
    assert (await run_of(gql, tenant.reader, "run_o"))["toolCalls"][0]["toolCallId"] == "tc_o"


@pytest.mark.settings(agent_batches_at_once=1)
async def test_one_runs_events_from_two_keys_are_applied_as_they_arrived(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's tool call by one key, its completion by another, a second call by the first:
    queued together, applied in that order (three calls in turn, not one per key at once);
    another run's events in the same batch still share their key's call."""
    other = await tenant.key(Scope.EVENTS_WRITE, name="other-agent")
    held = Held(monkeypatch)

    def send(key: str, body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(post(client, key, body))

    first = send(tenant.writer, event("e0", "run.started", task="t"))
    await held.calls(1)
    posts = [
        send(tenant.writer, tool_called("e1", "tc1")),
        send(other, event("e2", "tool.completed", toolCallId="tc1", outputPayload={"ok": 1})),
        send(tenant.writer, tool_called("e3", "tc2")),
    ]
    await held.queued(3)
    held.gate.set()
    responses = [await first, *await asyncio.gather(*posts)]
    assert [r.status_code for r in responses] == [200] * 4
    assert held.sizes == [1, 1, 1, 1]
    calls = {c["toolCallId"]: c for c in (await run_of(gql, tenant.reader))["toolCalls"]}
    assert calls["tc1"]["status"] == "COMPLETED" and calls["tc1"]["outputPayload"] == {"ok": 1}
    assert calls["tc1"]["violation"] is None
    assert calls["tc2"]["status"] == "ALLOWED"


async def test_a_second_call_runs_while_the_first_waits_except_for_the_same_run(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two REST batches at once (the default): while the first call is held, the held
    run's next event waits for it (and is applied after it) and another run's event,
    sent after that one, is answered."""
    gate = asyncio.Event()
    calls: list[list[str]] = []
    queued: list[str] = []
    run, submit = Endpoint.run, batched.submit

    async def held(endpoint: Endpoint, document: str, variables: Any, **kw: Any) -> Any:
        ids = [item["eventId"] for item in variables["inputs"]]
        calls.append(ids)
        if "e0" in ids:
            await gate.wait()
        return await run(endpoint, document, variables, **kw)

    async def queue(*args: Any, validated: Any) -> Any:
        queued.append(validated.event_id)
        return await submit(*args, validated=validated)

    monkeypatch.setattr(Endpoint, "run", held)
    monkeypatch.setattr(batched, "submit", queue)

    def send(body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(post(client, tenant.writer, body))

    first = send(event("e0", "run.started", run="run_a", task="t"))
    async with asyncio.timeout(5):
        while not calls:
            await asyncio.sleep(0)
        same = send(tool_called("e1", "tc1", run="run_a"))
        while "e1" not in queued:
            await asyncio.sleep(0)
        other = await send(tool_called("e2", "tc2", run="run_b"))  # not behind e1
    assert other.status_code == 200 and other.json()["toolCallStatus"] == "allowed"
    assert not first.done() and not same.done()
    assert calls == [["e0"], ["e2"]]  # run_a's tool call is not run beside its start
    gate.set()
    assert [(await first).status_code, (await same).status_code] == [200, 200]
    assert calls == [["e0"], ["e2"], ["e1"]]
    # run_b's call, stored while the first call was held; then run_a's start and its call
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "RUN_STARTED", "TOOL_CALLED"]
    assert [c["toolCallId"] for c in (await run_of(gql, tenant.reader, "run_a"))["toolCalls"]] == [
        "tc1"
    ]


@pytest.mark.parametrize(
    "raw",
    [
        SEED_REQUEST,
        {
            "eventId": "e",
            "runId": "r",
            "agentId": "a",
            "timestamp": "2026-03-19T10:00:00Z",
            "eventType": "run.completed",
        },
    ],
)
def test_agent_event_inputs_are_built_as_strawberry_builds_them(raw: dict[str, Any]) -> None:
    built, generic = built_both_ways(AgentEventInput, raw)
    assert built == generic


async def test_the_single_mutation_still_answers(gql: GraphQL, tenant: Tenant) -> None:
    result = await gql(RECORD, tenant.writer, input=SEED_REQUEST)
    assert result.data["recordAgentEvent"]["__typename"] == "AgentEventProcessed"
