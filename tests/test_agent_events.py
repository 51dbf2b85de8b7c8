"""`POST /v1/events` and `recordAgentEvent`: the seed's examples, statuses, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx

from opsgraph.settings import Settings
from resolvers.agent_events import validate_agent_event
from resolvers.auth import Scope
from tests.agent_helpers import (
    CURL_RUN_COMPLETED,
    CURL_RUN_STARTED,
    CURL_TOOL_CALLED,
    RECORD,
    RUN_STARTED_METADATA,
    SEED_POLICY,
    SEED_POLICY_NAME,
    SEED_REASON,
    SEED_REQUEST,
    TOOL_CALLED_METADATA,
    TOOL_COMPLETED_METADATA,
    api_key,
    create_policy,
    event,
    kinds,
    post,
    timeline,
    tool_called,
)
from tests.conftest import GraphQL, Tenant, walk_pages

RUN = """
query($id: ID!) {
  run(id: $id) { id runId agentId status task model reason agentContext startedAt endedAt error
    toolCalls { id toolCallId toolName actionHint inputPayload outputPayload reason agentContext
      service environment decision decisionReason status violation calledAt endedAt
      matchedPolicies { policyId policyName action reason version dryRun }
      approval { id status } run { runId } } }
}
"""


async def run_of(gql: GraphQL, key: str, run_id: str = "run_001") -> dict[str, Any]:
    result = await gql(RUN, key, id=run_id)
    assert result.errors is None, result.errors
    run: dict[str, Any] = result.data["run"]
    return run


async def test_the_seed_curl_examples_verbatim(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY)

    response = await post(client, tenant.writer, CURL_RUN_STARTED)
    assert response.status_code == 200
    assert response.json() == {"eventId": "evt_001", "runId": "run_001", "processed": True}

    response = await post(client, tenant.writer, CURL_TOOL_CALLED)
    assert response.status_code == 200
    body = response.json()
    approval_id = body["approvalId"]
    assert approval_id.startswith("ap_")
    assert body == {
        "eventId": "evt_002",
        "runId": "run_001",
        "processed": True,
        "toolCallStatus": "awaiting_approval",
        "reason": SEED_REASON,
        "approvalId": approval_id,
        "approvalUrl": f"http://opsgraph.test/approvals?focus={approval_id}",
        "matchedPolicies": [
            {
                "policyId": policy["id"],
                "policyName": SEED_POLICY_NAME,
                "action": "require_approval",
                "reason": SEED_REASON,
            }
        ],
    }

    response = await post(client, tenant.writer, CURL_RUN_COMPLETED)
    assert response.status_code == 200
    assert response.json() == {"eventId": "evt_003", "runId": "run_001", "processed": True}

    run = await run_of(gql, tenant.reader)
    assert run["runId"] == "run_001" and run["agentId"] == "my-agent"
    assert run["status"] == "COMPLETED" and run["task"] == "Deploy hotfix"
    assert run["startedAt"] == "2026-03-19T10:00:00Z" and run["endedAt"] == "2026-03-19T10:00:10Z"
    [call] = run["toolCalls"]
    assert call["toolCallId"] == "tc_001" and call["toolName"] == "deploy"
    assert call["status"] == "AWAITING_APPROVAL" and call["decision"] == "AWAITING_APPROVAL"
    assert call["decisionReason"] == SEED_REASON
    assert call["inputPayload"] == {"environment": "production"}
    assert call["environment"] == "production"
    assert call["approval"] == {"id": approval_id, "status": "PENDING"}
    assert call["matchedPolicies"][0]["version"] == 1
    assert await kinds(gql, tenant.reader) == [
        "RUN_STARTED",
        "TOOL_CALLED",
        "APPROVAL_REQUESTED",
        "RUN_COMPLETED",
    ]


async def test_the_seed_request_gets_the_seed_response_shape(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY)
    response = await post(client, tenant.writer, SEED_REQUEST)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "eventId",
        "runId",
        "processed",
        "toolCallStatus",
        "reason",
        "approvalId",
        "approvalUrl",
        "matchedPolicies",
    ]
    assert body["toolCallStatus"] == "awaiting_approval"
    assert body["reason"] == SEED_REASON
    assert body["matchedPolicies"] == [
        {
            "policyId": policy["id"],
            "policyName": "Require approval for production deploys",
            "action": "require_approval",
            "reason": SEED_REASON,
        }
    ]
    # The call names its service: its timeline entry carries it (suspect changes use it).
    called = [e for e in await timeline(gql, tenant.reader) if e["kind"] == "TOOL_CALLED"]
    assert called[0]["service"] == "api" and called[0]["environment"] == "production"
    assert called[0]["actor"] == "ci-pipeline"  # the key's name: who sent it, not who it says
    assert called[0]["summary"] == "my-agent called deploy (awaiting approval)"


async def test_the_metadata_examples_are_stored_as_runs_and_tool_calls(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    started = event("e1", "run.started", status="started", **RUN_STARTED_METADATA)
    called = event("e2", "tool.called", at="2026-03-19T10:00:01Z", **TOOL_CALLED_METADATA)
    completed = event("e3", "tool.completed", at="2026-03-19T10:00:05Z", **TOOL_COMPLETED_METADATA)
    for body in (started, called, completed):
        response = await post(client, tenant.writer, body)
        assert response.status_code == 200, response.text
    assert response.json() == {"eventId": "e3", "runId": "run_001", "processed": True}

    run = await run_of(gql, tenant.reader)
    assert run["task"] == "Fix authentication bug"
    assert run["model"] == "claude-sonnet-4-20250514"
    assert run["reason"] == RUN_STARTED_METADATA["reason"]
    assert run["agentContext"] == RUN_STARTED_METADATA["agentContext"]
    assert run["status"] == "RUNNING" and run["endedAt"] is None
    [call] = run["toolCalls"]
    assert call["toolName"] == "create_pull_request" and call["actionHint"] == "pr_create"
    assert call["inputPayload"] == TOOL_CALLED_METADATA["inputPayload"]
    assert call["reason"] == TOOL_CALLED_METADATA["reason"]
    assert call["agentContext"] == TOOL_CALLED_METADATA["agentContext"]
    assert call["outputPayload"] == {"prNumber": 42, "url": "https://github.com/..."}
    assert call["status"] == "COMPLETED" and call["decision"] == "ALLOWED"
    assert call["decisionReason"] == "Tool call create_pull_request is allowed: no policy matched."
    assert call["calledAt"] == "2026-03-19T10:00:01Z" and call["endedAt"] == "2026-03-19T10:00:05Z"
    assert call["violation"] is None and call["approval"] is None
    assert await kinds(gql, tenant.reader) == ["RUN_STARTED", "TOOL_CALLED", "TOOL_COMPLETED"]


async def test_allowed_and_blocked_responses(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    response = await post(client, tenant.writer, tool_called("e1", "tc_1", "read_file"))
    assert response.json() == {
        "eventId": "e1",
        "runId": "run_001",
        "processed": True,
        "toolCallStatus": "allowed",
        "reason": "Tool call read_file is allowed: no policy matched.",
        "approvalId": None,
        "approvalUrl": None,
        "matchedPolicies": [],
    }
    block = await create_policy(
        gql, tenant.admin, name="No drops", action="BLOCK", toolName="drop_*"
    )
    response = await post(client, tenant.writer, tool_called("e2", "tc_2", "drop_table"))
    reason = 'Tool call drop_table is blocked by policy "No drops".'
    assert response.json()["toolCallStatus"] == "blocked"
    assert response.json()["reason"] == reason
    assert response.json()["approvalId"] is None
    assert response.json()["matchedPolicies"] == [
        {"policyId": block["id"], "policyName": "No drops", "action": "block", "reason": reason}
    ]
    calls = (await run_of(gql, tenant.reader))["toolCalls"]
    assert [c["status"] for c in calls] == ["ALLOWED", "BLOCKED"]


async def test_failures_are_statuses_too(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await post(client, tenant.writer, tool_called("e1", "tc_1", "read_file"))
    failed = event("e2", "tool.failed", toolCallId="tc_1", error="file not found")
    assert (await post(client, tenant.writer, failed)).status_code == 200
    response = await post(client, tenant.writer, event("e3", "run.failed", error="gave up"))
    assert response.json() == {"eventId": "e3", "runId": "run_001", "processed": True}
    run = await run_of(gql, tenant.reader)
    assert run["status"] == "FAILED" and run["error"] == "gave up"
    assert run["toolCalls"][0]["status"] == "FAILED"
    assert run["toolCalls"][0]["violation"] is None
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "TOOL_FAILED", "RUN_FAILED"]

    response = await post(client, tenant.writer, event("e4", "run.completed"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    response = await post(client, tenant.writer, event("e5", "tool.completed", toolCallId="tc_1"))
    assert response.status_code == 409
    assert "already failed" in response.json()["error"]["message"]


async def test_unknown_event_types_list_the_valid_values(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    response = await post(client, tenant.writer, event("e1", "tool.started"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_EVENT"
    assert (
        "eventType: must be one of run.started, run.completed, run.failed, tool.called, "
        "tool.completed, tool.failed; got 'tool.started'" in error["message"]
    )
    result = await gql(RECORD, tenant.writer, input=event("e1", "agent.sneezed"))
    outcome = result.data["recordAgentEvent"]
    assert outcome["__typename"] == "InvalidEvent"
    assert [f["field"] for f in outcome["fields"]] == ["eventType"]
    assert await kinds(gql, tenant.reader) == []


async def test_bad_fields_are_each_named_and_store_nothing(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    response = await post(client, tenant.writer, {"eventType": "tool.called"})
    message = response.json()["error"]["message"]
    for name in ("eventId", "runId", "agentId", "timestamp", "metadata"):
        assert f"{name}: is required" in message
    body = event("e1", "tool.called", toolName=7, inputPayload=[1])
    message = (await post(client, tenant.writer, body)).json()["error"]["message"]
    assert "metadata.toolCallId: is required" in message
    assert "metadata.toolName: must be a string" in message
    assert "metadata.inputPayload: must be a JSON object" in message
    bad_time = {**event("e1", "run.started"), "timestamp": "2026-03-19T10:00:00"}
    response = await post(client, tenant.writer, bad_time)
    assert "timestamp: must be an ISO-8601 timestamp with a time zone" in response.text
    unknown = event("e9", "tool.completed", toolCallId="tc_nope")
    response = await post(client, tenant.writer, unknown)
    assert response.status_code == 400
    assert "metadata.toolCallId: no tool.called was recorded for tc_nope" in response.text
    assert await kinds(gql, tenant.reader) == []
    # Nothing was stored under the rejected eventIds: a good body may use them now.
    assert (await post(client, tenant.writer, event("e9", "run.started"))).status_code == 200


async def test_auth(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = event("e1", "run.started")
    response = await client.post("/v1/events", json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    response = await client.post(
        "/v1/events", json=body, headers={"Authorization": f"Bearer {tenant.writer}"}
    )
    assert response.status_code == 401  # /v1/events takes X-API-Key
    response = await client.post("/v1/events", json=body, headers=api_key(tenant.reader))
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "FORBIDDEN", "message": "This API key lacks the 'events:write' scope."}
    }


async def test_a_repeated_event_gets_the_first_response_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    first = await post(client, tenant.writer, SEED_REQUEST)
    entries = await kinds(gql, tenant.reader)
    # Even after the policy changes, the repeat answers what the first one did.
    await create_policy(gql, tenant.admin, name="Block all", action="BLOCK")
    again = await post(client, tenant.writer, json.dumps(SEED_REQUEST, indent=2))
    assert again.status_code == 200 and again.json() == first.json()
    assert await kinds(gql, tenant.reader) == entries

    result = await gql(RECORD, tenant.writer, input=SEED_REQUEST)
    outcome = result.data["recordAgentEvent"]
    assert outcome["duplicate"] is True and outcome["approvalId"] == first.json()["approvalId"]
    assert outcome["toolCall"]["status"] == "AWAITING_APPROVAL"


async def test_a_different_body_under_a_used_event_id_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await post(client, tenant.writer, SEED_REQUEST)
    changed = {**SEED_REQUEST, "timestamp": "2026-03-19T10:00:02Z"}
    response = await post(client, tenant.writer, changed)
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "CONFLICT",
            "message": "Event evt_001 was already recorded with a different body; "
            "an eventId identifies one event.",
        }
    }
    result = await gql(RECORD, tenant.writer, input=changed)
    assert result.data["recordAgentEvent"]["__typename"] == "AgentEventConflict"
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED"]

    again = {**tool_called("evt_other", "tc_001"), "runId": "run_001"}
    response = await post(client, tenant.writer, again)  # a second call with the same toolCallId
    assert response.status_code == 409
    assert "Tool call tc_001 of run run_001 was already recorded" in response.text


async def runs_of(gql: GraphQL, key: str) -> list[dict[str, Any]]:
    result = await gql("{ runs { edges { node { runId agentId task status } } } }", key)
    assert result.errors is None, result.errors
    return [edge["node"] for edge in result.data["runs"]["edges"]]


async def test_a_run_that_has_started_cannot_start_again(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """A second `run.started` (a new eventId) would rewrite the run's task: a 409, as ending a
    run twice is, and the run stays as it was. A run a `tool.called` announced first is
    still filled in by its `run.started`."""
    started = event("evt_s1", "run.started", run="run_s", task="Deploy hotfix")
    assert (await post(client, tenant.writer, started)).status_code == 200
    assert (
        await post(client, tenant.writer, event("evt_s2", "run.completed", run="run_s"))
    ).status_code == 200
    for again in (
        event("evt_s3", "run.started", run="run_s", agent="agent-b", task="OVERWRITTEN"),
        event("evt_s4", "run.started", run="run_s", task="Deploy hotfix"),
    ):
        response = await post(client, tenant.writer, again)
        assert response.status_code == 409, response.text
        assert response.json() == {
            "error": {
                "code": "CONFLICT",
                "message": "Run run_s has already started; it cannot start twice.",
            }
        }
    result = await gql(RECORD, tenant.writer, input=event("evt_s5", "run.started", run="run_s"))
    assert result.data["recordAgentEvent"]["__typename"] == "AgentEventConflict"
    assert await kinds(gql, tenant.reader) == ["RUN_STARTED", "RUN_COMPLETED"]
    [run] = await runs_of(gql, tenant.reader)
    assert run["task"] == "Deploy hotfix" and run["status"] == "COMPLETED"

    assert (
        await post(client, tenant.writer, tool_called("evt_t1", "tc_1", run="run_t"))
    ).status_code == 200
    late = event("evt_t0", "run.started", run="run_t", task="Late start")
    assert (await post(client, tenant.writer, late)).status_code == 200
    assert (await post(client, tenant.writer, {**late, "eventId": "evt_t2"})).status_code == 409

    together = [event(f"evt_c{n}", "run.started", run="run_c", task=f"task {n}") for n in range(4)]
    responses = await asyncio.gather(*(post(client, tenant.writer, body) for body in together))
    assert sorted(response.status_code for response in responses) == [200, 409, 409, 409]
    assert {run["runId"]: run["task"] for run in await runs_of(gql, tenant.reader)} == {
        "run_s": "Deploy hotfix",
        "run_t": "Late start",
        "run_c": together[[r.status_code for r in responses].index(200)]["metadata"]["task"],
    }


async def test_run_started_at_once_from_several_processes_starts_the_run_once(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """Each `recordAgentEvent` runs alone, as in separate server processes (one process
    runs a run's events in order): on a run a `tool.called` created, only one of three
    concurrent `run.started` fills it in; the others are conflicts."""
    assert (
        await post(client, tenant.writer, tool_called("evt_t", "tc_1", run="run_p"))
    ).status_code == 200
    starts = [event(f"evt_p{n}", "run.started", run="run_p", task=f"task {n}") for n in range(3)]
    results = await asyncio.gather(*(gql(RECORD, tenant.writer, input=s) for s in starts))
    typenames = sorted(result.data["recordAgentEvent"]["__typename"] for result in results)
    assert typenames == ["AgentEventConflict", "AgentEventConflict", "AgentEventProcessed"]
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "RUN_STARTED"]


async def test_event_ids_are_per_workspace(
    client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any, gql: GraphQL
) -> None:
    other = await make_tenant()
    assert (await post(client, tenant.writer, SEED_REQUEST)).status_code == 200
    response = await post(client, other.writer, SEED_REQUEST)
    assert response.status_code == 200 and response.json()["toolCallStatus"] == "allowed"
    assert await kinds(gql, other.reader) == ["TOOL_CALLED"]


async def test_concurrent_duplicates_store_one_event(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    responses = await asyncio.gather(*(post(client, tenant.writer, SEED_REQUEST) for _ in range(6)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert await kinds(gql, tenant.reader) == ["TOOL_CALLED", "APPROVAL_REQUESTED"]

    # The same eventId with different bodies at once: one wins, the others conflict.
    bodies = [
        {**SEED_REQUEST, "eventId": "evt_race", "timestamp": f"2026-03-19T10:0{i}:00Z"}
        for i in range(4)
    ]
    for body in bodies:
        body["metadata"] = {**body["metadata"], "toolCallId": body["timestamp"]}
    responses = await asyncio.gather(*(post(client, tenant.writer, b) for b in bodies))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]

    # Different events for one new run at once: one run, every call stored.
    calls = [tool_called(f"e{i}", f"tc_{i}", "read_file", run="run_new") for i in range(5)]
    responses = await asyncio.gather(*(post(client, tenant.writer, c) for c in calls))
    assert {r.status_code for r in responses} == {200}
    run = await gql(RUN, tenant.reader, id="run_new")
    assert len(run.data["run"]["toolCalls"]) == 5


RUNS = """
query($filter: RunFilter, $first: Int, $after: String) {
  runs(filter: $filter, first: $first, after: $after) {
    edges { cursor node { runId agentId status } } pageInfo { hasNextPage endCursor } }
}
"""


async def test_runs_page_and_filter(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    for i, agent in enumerate(["alpha", "beta", "alpha"]):
        at = f"2026-03-19T1{i}:00:00Z"
        await post(
            client, tenant.writer, event(f"s{i}", "run.started", run=f"r{i}", agent=agent, at=at)
        )
    await post(client, tenant.writer, event("c0", "run.completed", run="r0", agent="alpha"))

    async def runs(**variables: Any) -> dict[str, Any]:
        result = await gql(RUNS, tenant.reader, **variables)
        assert result.errors is None, result.errors
        connection: dict[str, Any] = result.data["runs"]
        return connection

    page = await runs(first=2)
    assert [e["node"]["runId"] for e in page["edges"]] == ["r2", "r1"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await runs(first=2, after=page["pageInfo"]["endCursor"])
    assert [e["node"]["runId"] for e in rest["edges"]] == ["r0"]
    assert rest["pageInfo"]["hasNextPage"] is False
    alpha = await runs(filter={"agentIds": ["alpha"], "statuses": ["RUNNING"]})
    assert [e["node"]["runId"] for e in alpha["edges"]] == ["r2"]
    since = await runs(filter={"since": "2026-03-19T11:00:00Z"})
    assert [e["node"]["runId"] for e in since["edges"]] == ["r2", "r1"]

    [entry] = [e for e in await timeline(gql, tenant.reader) if e["kind"] == "RUN_COMPLETED"]
    assert entry["subject"] == {
        "__typename": "Run",
        "id": entry["subject"]["id"],
        "runId": "r0",
        "runStatus": "COMPLETED",
    }
    by_id = await gql(
        "query($id: ID!) { run(id: $id) { runId } }", tenant.reader, id=entry["subject"]["id"]
    )
    assert by_id.data["run"] == {"runId": "r0"}
    assert (await gql(RUNS, tenant.writer)).errors[0].extensions == {"code": "FORBIDDEN"}


def test_the_stored_body_and_its_hash_keep_their_form(settings: Settings) -> None:
    """An event's idempotency compares body hashes with events stored by earlier versions:
    the canonical text stays `json.dumps` with sorted keys, compact, non-ASCII escaped."""
    body = tool_called("e-é", "tc1", zeta={"b": [1, 2.5, None], "a": "ünï"}, alpha=True)
    data = validate_agent_event(body, settings=settings)

    text = data.canonical_json()

    assert text == json.dumps(data.canonical(), sort_keys=True, separators=(",", ":"))
    assert '"e-\\u00e9"' in text and text.index('"alpha"') < text.index('"zeta"')
    assert data.body_hash() == hashlib.sha256(text.encode("utf-8")).hexdigest()


async def test_an_event_id_used_again_for_another_type_or_status_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """The whole event is its identity: a later `run.completed` (or another status) sent
    under the `run.started`'s eventId is refused, not answered as that event's replay (the
    run would never complete while the agent believed it had)."""
    started = event("evt_r9", "run.started", run="r9")
    assert (await post(client, tenant.writer, started)).status_code == 200
    for changed in ({**started, "eventType": "run.completed"}, {**started, "status": "done"}):
        response = await post(client, tenant.writer, changed)
        assert response.status_code == 409, (changed, response.text)
        assert response.json()["error"]["code"] == "CONFLICT"
    result = await gql(RUNS, tenant.reader)
    assert [edge["node"]["status"] for edge in result.data["runs"]["edges"]] == ["RUNNING"]


async def test_runs_started_at_one_time_page_without_a_gap_or_an_empty_page(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    runs = [f"r{n}" for n in range(5)]
    for n, run in enumerate(runs):  # agents' clocks often have whole seconds only
        body = event(f"s{n}", "run.started", run=run, at="2026-03-19T10:00:00Z")
        assert (await post(client, tenant.writer, body)).status_code == 200
    for first in (1, 2, 5):
        pages = await walk_pages(gql, RUNS, tenant.reader, "runs", "runId", first=first)
        assert sorted(sum(pages, [])) == runs, first
        assert len(pages) == -(-len(runs) // first), first  # a full last page is the last


async def test_each_entry_names_the_key_that_sent_it_whatever_agent_it_claims(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """Any key of the workspace may post as any `agentId`: the actor of what an agent did
    is the name of the key that sent it (as for changes, and a person's approval), so that
    which credential acted can be told afterwards."""
    other = await tenant.key(Scope.EVENTS_WRITE, name="nightly-batch")
    await create_policy(
        gql,
        tenant.admin,
        name="Approve deploys",
        action="REQUIRE_APPROVAL",
        toolName="deploy",
    )
    sent = [
        (tenant.writer, event("e1", "run.started", run="r1")),
        (other, tool_called("e2", "tc1", run="r1")),
        (tenant.writer, tool_called("e3", "tc2", tool="read_logs", run="r1")),
        (other, event("e4", "tool.completed", run="r1", toolCallId="tc2")),
        (tenant.writer, event("e5", "run.completed", run="r1")),
    ]
    for key, body in sent:
        response = await post(client, key, body)
        assert response.status_code == 200, response.text
    actors = {(e["kind"], e["actor"]) for e in await timeline(gql, tenant.reader)}
    assert actors == {
        ("RUN_STARTED", "ci-pipeline"),
        ("TOOL_CALLED", "nightly-batch"),
        ("APPROVAL_REQUESTED", "nightly-batch"),
        ("TOOL_CALLED", "ci-pipeline"),
        ("TOOL_COMPLETED", "nightly-batch"),
        ("RUN_COMPLETED", "ci-pipeline"),
    }
