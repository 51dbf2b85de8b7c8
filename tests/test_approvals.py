"""Approvals: deciding once (also under races), expiring (never approving), long-polling,
and policy violations when a call completes without clearance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from tortoise import connections

from models.approval import Approval, ApprovalStatus
from opsgraph.app import create_app
from opsgraph.settings import Settings
from resolvers import approvals
from resolvers.auth import Principal, Scope
from rest_compat import agents
from schema import build_schema
from schema.context import Context
from tests.agent_helpers import (
    DECIDE,
    RECORD,
    SEED_POLICY,
    api_key,
    create_policy,
    event,
    kinds,
    post,
    timeline,
    tool_called,
)
from tests.conftest import (
    GraphQL,
    Recorder,
    Tenant,
    memory_bus,
    until_waiting_for_a_lock,
    with_settings,
)
from tests.test_changes import bearer
from tests.test_timeline import b64

APPROVAL = """
query($id: ID!) { approval(id: $id) { id status reason decidedBy comment decidedAt expiresAt url
  toolCall { toolCallId status violation } run { runId } } }
"""
APPROVALS = """
query($status: ApprovalStatus, $first: Int, $after: String) {
  approvals(status: $status, first: $first, after: $after) {
    edges { cursor node { id status toolCall { toolCallId } } } pageInfo { hasNextPage endCursor } }
}
"""
# Records an event without reading its call back (a read expires a due approval).
RECORD_UNREAD = """
mutation($input: AgentEventInput!) {
  recordAgentEvent(input: $input) { ... on AgentEventProcessed { approvalId } } }
"""
VIOLATIONS = """
query { timeline(filter: {kinds: [POLICY_VIOLATION]}) { edges { node { summary service actor
  details subject { __typename ... on ToolCall { toolCallId status violation } } } } } }
"""


async def held_call(client: httpx.AsyncClient, tenant: Tenant, call_id: str = "tc_1") -> str:
    """A production deploy held for approval; returns the approval id."""
    body = tool_called(f"evt_{call_id}", call_id, environment="production", service="api")
    response = await post(client, tenant.writer, body)
    assert response.json()["toolCallStatus"] == "awaiting_approval", response.text
    approval_id: str = response.json()["approvalId"]
    return approval_id


@pytest.fixture
async def gated(gql: GraphQL, tenant: Tenant) -> Tenant:
    """A tenant whose production deploys need approval, with an approver key."""
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    return tenant


async def test_an_approval_records_who_decided(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    approval_id = await held_call(client, gated)
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="alice")
    result = await gql(DECIDE, gated.reader, id=approval_id, decision="APPROVE")
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}

    result = await gql(DECIDE, approver, id=approval_id, decision="APPROVE", comment="ship it")
    decided = result.data["decideApproval"]
    assert decided["status"] == "APPROVED" and decided["decidedBy"] == "alice"
    assert decided["comment"] == "ship it" and decided["toolCall"]["status"] == "APPROVED"
    [entry] = [e for e in await timeline(gql, gated.reader) if e["kind"] == "APPROVAL_DECIDED"]
    assert entry["actor"] == "alice" and entry["service"] == "api"
    assert entry["summary"] == "alice approved deploy for my-agent: ship it"
    assert entry["subject"] == {
        "__typename": "Approval",
        "id": approval_id,
        "approvalStatus": "APPROVED",
    }

    # Completing an approved call is fine.
    done = event("evt_done", "tool.completed", toolCallId="tc_1", outputPayload={"ok": True})
    assert (await post(client, gated.writer, done)).status_code == 200
    assert (await gql(VIOLATIONS, gated.reader)).data["timeline"]["edges"] == []


async def test_rejection_needs_a_comment_and_decisions_are_final(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    approval_id = await held_call(client, gated)
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="bob")
    result = await gql(DECIDE, approver, id=approval_id, decision="REJECT")
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert result.errors[0].message == "comment: is required to reject; say why."
    result = await gql(DECIDE, approver, id=approval_id, decision="REJECT", comment="  ")
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    # Refused on every database alike, naming the field (PostgreSQL alone refused a NUL).
    result = await gql(DECIDE, approver, id=approval_id, decision="REJECT", comment="no\x00pe")
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert result.errors[0].message == "comment: must not contain NUL characters."

    result = await gql(DECIDE, approver, id=approval_id, decision="REJECT", comment="not today")
    assert result.data["decideApproval"]["status"] == "REJECTED"
    assert result.data["decideApproval"]["toolCall"]["status"] == "REJECTED"

    result = await gql(DECIDE, gated.admin, id=approval_id, decision="APPROVE")
    [error] = result.errors
    assert error.extensions == {"code": "CONFLICT"}
    assert re.fullmatch(
        f"Approval {approval_id} was already rejected by bob at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; a decision is final\.",
        error.message,
    ), error.message
    result = await gql(APPROVAL, gated.reader, id=approval_id)
    assert result.data["approval"]["status"] == "REJECTED"
    assert result.data["approval"]["decidedBy"] == "bob"

    result = await gql(DECIDE, approver, id="ap_missing", decision="APPROVE")
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}


async def test_concurrent_decisions_have_one_winner(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    approval_id = await held_call(client, gated)
    keys = [await gated.key(Scope.APPROVALS_DECIDE, name=f"approver-{i}") for i in range(6)]
    decisions = [
        gql(DECIDE, key, id=approval_id, decision="APPROVE" if i % 2 else "REJECT", comment=f"c{i}")
        for i, key in enumerate(keys)
    ]
    results = await asyncio.gather(*decisions)
    winners = [r.data["decideApproval"] for r in results if r.errors is None]
    losers = [r.errors[0] for r in results if r.errors is not None]
    assert len(winners) == 1 and len(losers) == 5
    assert {e.extensions["code"] for e in losers} == {"CONFLICT"}
    final = (await gql(APPROVAL, gated.reader, id=approval_id)).data["approval"]
    assert final["status"] == winners[0]["status"]
    assert final["decidedBy"] == winners[0]["decidedBy"]
    assert (await kinds(gql, gated.reader)).count("APPROVAL_DECIDED") == 1


def expiring_gql(settings: Settings, recorder: Recorder) -> Any:
    """A schema whose approvals expire as soon as they are requested."""
    expiring = with_settings(settings, approval_expiry_seconds=0)
    schema = build_schema(expiring)

    async def run(document: str, key: str | None, **variables: Any) -> Any:
        context = Context(settings=expiring, publisher=recorder, secret=key)
        return await schema.execute(document, variable_values=variables, context_value=context)

    return run


async def test_expiry_never_approves_and_is_recorded_once(
    gated: Tenant, settings: Settings, recorder: Recorder, gql: GraphQL
) -> None:
    run = expiring_gql(settings, recorder)
    body = tool_called("evt_1", "tc_1", environment="production")
    result = await run(RECORD, gated.writer, input=body)
    approval_id = result.data["recordAgentEvent"]["approvalId"]

    approver = await gated.key(Scope.APPROVALS_DECIDE, name="late")
    result = await gql(DECIDE, approver, id=approval_id, decision="APPROVE")
    [error] = result.errors
    assert error.extensions == {"code": "CONFLICT"}
    assert "expired at" in error.message and "without a decision" in error.message

    for _ in range(2):  # lazy expiry on read, the sweep and the decision record it once
        approval = (await gql(APPROVAL, gated.reader, id=approval_id)).data["approval"]
        assert approval["status"] == "EXPIRED" and approval["decidedBy"] is None
        assert approval["toolCall"]["status"] == "EXPIRED"
        assert await approvals.expire_due_approvals(publisher=recorder) == 0
    assert (await kinds(gql, gated.reader)).count("APPROVAL_EXPIRED") == 1
    expired = (await gql(APPROVALS, gated.reader, status="EXPIRED")).data["approvals"]["edges"]
    assert [edge["node"]["id"] for edge in expired] == [approval_id]


async def test_an_approval_noticed_late_says_it_expired_at_its_expiry(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    """An approval whose time ran out while no server ran (or between sweeps) is recorded
    expired when noticed; the refusal quoted that moment, not when it expired."""
    approval_id = await held_call(client, gated)
    expired_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await Approval.filter(id=approval_id).update(expires_at=expired_at)
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="late")
    [error] = (await gql(DECIDE, approver, id=approval_id, decision="APPROVE")).errors
    assert error.extensions == {"code": "CONFLICT"}
    assert error.message == (
        f"Approval {approval_id} expired at 2026-01-02 03:04:05 UTC without a decision; "
        "it cannot be decided."
    )


async def test_a_call_read_beside_its_due_approval_is_expired_in_the_same_answer(
    gated: Tenant, settings: Settings, recorder: Recorder, gql: GraphQL
) -> None:
    """A run's tool call whose approval fell due, read before its approval in one query,
    said AWAITING_APPROVAL beside an EXPIRED approval (the approval's lazy expiry came
    after the call's status was read); the next read said EXPIRED for both."""
    run = expiring_gql(settings, recorder)
    body = tool_called("evt_1", "tc_1", environment="production")
    await run(RECORD_UNREAD, gated.writer, input=body)
    document = "{ runs(first: 1) { edges { node { toolCalls { status approval { status } } } } } }"
    for _ in range(2):
        [edge] = (await gql(document, gated.reader)).data["runs"]["edges"]
        assert edge["node"]["toolCalls"] == [
            {"status": "EXPIRED", "approval": {"status": "EXPIRED"}}
        ]


async def test_a_decision_the_clock_overtakes_after_the_read_does_not_approve(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval is read pending, then its time runs out before the decision is
    written: the write itself must refuse it (no approval after expiry, however close)."""
    approval_id = await held_call(client, gated)
    read = approvals.get_approval

    async def read_then_expire(**where: Any) -> Any:
        found = await read(**where)
        assert found is not None and found.status.value == "PENDING"
        past = found.expires_at + timedelta(seconds=1)
        monkeypatch.setattr(approvals, "_now", lambda: past)  # the clock passes expiry
        return found

    monkeypatch.setattr(approvals, "get_approval", read_then_expire)
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="late")
    result = await gql(DECIDE, approver, id=approval_id, decision="APPROVE")
    assert result.errors is not None and result.errors[0].extensions == {"code": "CONFLICT"}
    monkeypatch.undo()
    approval = (await gql(APPROVAL, gated.reader, id=approval_id)).data["approval"]
    assert approval["status"] == "EXPIRED" and approval["decidedBy"] is None
    assert approval["toolCall"]["status"] == "EXPIRED"


async def test_the_sweeper_expires_approvals_nobody_reads(
    gated: Tenant, settings: Settings, recorder: Recorder
) -> None:
    """The loop the server runs (`OPSGRAPH_APPROVAL_SWEEP_SECONDS`), not a direct call: an
    approval nobody looks at is expired and announced (what live approval screens hear)."""
    run = expiring_gql(settings, recorder)
    result = await run(
        RECORD_UNREAD, gated.writer, input=tool_called("evt_1", "tc_1", environment="production")
    )
    approval_id = result.data["recordAgentEvent"]["approvalId"]
    announced = len(recorder.announced)
    sweeper = asyncio.create_task(
        approvals.sweep_forever(publisher=recorder, interval_seconds=0.05)
    )
    try:
        for _ in range(100):  # until it is announced, then the row must say so
            if len(recorder.announced) > announced:
                break
            await asyncio.sleep(0.02)
        assert recorder.announced[announced:] == [(gated.workspace_id, recorder.announced[-1][1])]
        row = await Approval.get(id=approval_id)  # the row: no read expires it
        assert row.status is ApprovalStatus.EXPIRED
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


async def test_the_sweep_expires_due_approvals(
    gated: Tenant, settings: Settings, recorder: Recorder, gql: GraphQL
) -> None:
    run = expiring_gql(settings, recorder)
    for i in range(3):
        body = tool_called(f"evt_{i}", f"tc_{i}", environment="production")
        await run(RECORD_UNREAD, gated.writer, input=body)
    assert (
        await approvals.expire_due_approvals(publisher=recorder, workspace_id=gated.workspace_id)
        == 3
    )
    assert (await kinds(gql, gated.reader)).count("APPROVAL_EXPIRED") == 3


async def test_approvals_list_by_status_and_page(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    ids = [await held_call(client, gated, f"tc_{i}") for i in range(3)]
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="carol")
    await gql(DECIDE, approver, id=ids[0], decision="APPROVE")
    result = await gql(APPROVALS, gated.reader, status="PENDING", first=1)
    page = result.data["approvals"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[2]]
    assert page["pageInfo"]["hasNextPage"] is True
    after = page["pageInfo"]["endCursor"]
    result = await gql(APPROVALS, gated.reader, status="PENDING", first=5, after=after)
    assert [e["node"]["id"] for e in result.data["approvals"]["edges"]] == [ids[1]]
    result = await gql(APPROVALS, gated.reader)
    assert len(result.data["approvals"]["edges"]) == 3
    for after in ("garbage", b64("k1:1:" + "x" * 5000), b64("k1:1:ap_\u0000")):
        result = await gql(APPROVALS, gated.reader, after=after)
        assert result.errors[0].message == "Invalid cursor.", after  # not a field "id"
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}


async def test_the_agent_reads_its_approval_over_rest_and_graphql(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL, make_tenant: Any
) -> None:
    approval_id = await held_call(client, gated)
    response = await client.get(f"/v1/approvals/{approval_id}", headers=api_key(gated.writer))
    assert response.status_code == 200
    body = response.json()
    assert body["approvalId"] == approval_id and body["status"] == "pending"
    assert body["runId"] == "run_001" and body["toolCallId"] == "tc_1"
    assert body["toolName"] == "deploy" and body["toolCallStatus"] == "awaiting_approval"
    assert body["approvalUrl"] == f"http://opsgraph.test/approvals?focus={approval_id}"
    assert body["decidedBy"] is None

    result = await gql(APPROVAL, gated.writer, id=approval_id)  # events:write may read it
    assert result.data["approval"]["status"] == "PENDING"
    stranger = await make_tenant()
    response = await client.get(f"/v1/approvals/{approval_id}", headers=api_key(stranger.reader))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    response = await client.get(f"/v1/approvals/{approval_id}")
    assert response.status_code == 401
    only_decide = await gated.key(Scope.APPROVALS_DECIDE)
    response = await client.get(f"/v1/approvals/{approval_id}", headers=api_key(only_decide))
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "FORBIDDEN",
        "message": "This API key has neither the 'read' nor the 'events:write' scope.",
    }
    for bad in ("soon", "-1", "nan"):
        response = await client.get(
            f"/v1/approvals/{approval_id}?wait={bad}", headers=api_key(gated.writer)
        )
        assert response.status_code == 400
        assert response.json()["error"]["message"] == (
            "wait: must be a number of seconds, 0 or more (a longer wait is cut to 60)."
        )


async def test_the_long_poll_returns_as_soon_as_a_decision_lands(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    approval_id = await held_call(client, gated)
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="dana")
    started = time.monotonic()
    poll = asyncio.create_task(
        client.get(f"/v1/approvals/{approval_id}?wait=30", headers=api_key(gated.writer))
    )
    await asyncio.sleep(0.3)
    assert not poll.done()
    await gql(DECIDE, approver, id=approval_id, decision="APPROVE")
    response = await asyncio.wait_for(poll, timeout=5)
    assert time.monotonic() - started < 3
    assert response.json()["status"] == "approved" and response.json()["decidedBy"] == "dana"


async def test_a_key_revoked_during_the_long_poll_gets_no_answer(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    """The key is checked again once the wait ends: revoked meanwhile, it gets a 401, not
    the decision (as an open `approval` subscription of that key is ended)."""
    agent = await gated.key(Scope.EVENTS_WRITE, name="short-lived")
    body = tool_called("evt_rv", "tc_rv", environment="production", service="api")
    response = await post(client, agent, body)
    approval_id = response.json()["approvalId"]
    poll = asyncio.create_task(
        client.get(f"/v1/approvals/{approval_id}?wait=30", headers=api_key(agent))
    )
    await asyncio.sleep(0.3)
    keys = (await gql("{ apiKeys { id name } }", gated.admin)).data["apiKeys"]
    key_id = next(key["id"] for key in keys if key["name"] == "short-lived")
    revoked = await gql("mutation($id: ID!) { revokeApiKey(id: $id) }", gated.admin, id=key_id)
    assert revoked.data == {"revokeApiKey": True}
    approver = await gated.key(Scope.APPROVALS_DECIDE, name="erin")
    await gql(DECIDE, approver, id=approval_id, decision="APPROVE")
    answer = await asyncio.wait_for(poll, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_a_key_revoked_during_the_long_poll_is_told_at_once(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    """With no decision coming, the revoked key's poll held its connection to the end of
    its wait (30 s here, up to the maximum) before its 401: it now ends when the
    revocation reaches the server, as the key's subscriptions do."""
    agent = await gated.key(Scope.EVENTS_WRITE, name="short-lived")
    body = tool_called("evt_rv", "tc_rv", environment="production", service="api")
    approval_id = (await post(client, agent, body)).json()["approvalId"]
    poll = asyncio.create_task(
        client.get(f"/v1/approvals/{approval_id}?wait=30", headers=api_key(agent))
    )
    await asyncio.sleep(0.3)
    keys = (await gql("{ apiKeys { id name } }", gated.admin)).data["apiKeys"]
    key_id = next(key["id"] for key in keys if key["name"] == "short-lived")
    revoke = {"query": "mutation($id: ID!) { revokeApiKey(id: $id) }", "variables": {"id": key_id}}
    revoked = await client.post("/graphql", json=revoke, headers=bearer(gated.admin))
    assert revoked.json() == {"data": {"revokeApiKey": True}}
    answer = await asyncio.wait_for(poll, timeout=3)  # not the 30 s it asked to wait
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.fixture
async def short_wait_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(with_settings(settings, approval_wait_max_seconds=1), manage_database=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_the_long_poll_is_bounded(
    short_wait_client: httpx.AsyncClient, gated: Tenant
) -> None:
    approval_id = await held_call(short_wait_client, gated)
    started = time.monotonic()
    response = await short_wait_client.get(
        f"/v1/approvals/{approval_id}?wait=600", headers=api_key(gated.writer)
    )
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3
    assert response.json()["status"] == "pending"


async def test_one_key_holds_at_most_its_share_of_long_polls(
    settings: Settings, gated: Tenant
) -> None:
    """OPSGRAPH_APPROVAL_WAITS_PER_KEY long polls of one key at once in a process; past
    it 429 with Retry-After (each holds a task, a hub subscriber and a read every few
    seconds). Other keys, and the key once a wait ends, are not held back."""
    app = create_app(with_settings(settings, approval_waits_per_key=2), manage_database=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            approval_id = await held_call(http, gated)
            other = await gated.key(Scope.EVENTS_WRITE, name="other agent")

            hub = app.state.graphql.bus.hub  # each wait follows its approval there

            async def holding(count: int) -> None:
                for _ in range(250):
                    if hub.subscriber_count == count:
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError(f"{hub.subscriber_count} waits held, not {count}")

            def poll(key: str, approval: str = approval_id) -> asyncio.Task[httpx.Response]:
                url = f"/v1/approvals/{approval}?wait=30"
                return asyncio.create_task(http.get(url, headers=api_key(key)))

            held = [poll(gated.writer), poll(gated.writer)]
            await holding(2)
            assert not any(task.done() for task in held)
            refused = await asyncio.wait_for(poll(gated.writer), timeout=5)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            message = (
                "This key already holds 2 approval waits in this process "
                "(OPSGRAPH_APPROVAL_WAITS_PER_KEY); retry after 1 s."
            )
            assert refused.json() == {"error": {"code": "RATE_LIMITED", "message": message}}
            # Without a wait the key still reads it; another key still waits.
            plain = await http.get(f"/v1/approvals/{approval_id}", headers=api_key(gated.writer))
            assert plain.json()["status"] == "pending"
            third = poll(other)
            await holding(3)
            assert not third.done()

            approver = await gated.key(Scope.APPROVALS_DECIDE, name="dana")

            async def approve(approval: str) -> None:  # on this app, whose hub wakes the waits
                response = await http.post(
                    "/graphql",
                    json={"query": DECIDE, "variables": {"id": approval, "decision": "APPROVE"}},
                    headers={"Authorization": f"Bearer {approver}"},
                )
                assert response.json()["data"]["decideApproval"]["status"] == "APPROVED"

            await approve(approval_id)
            for task in [*held, third]:
                response = await asyncio.wait_for(task, timeout=5)
                assert response.json()["status"] == "approved"
            # Those waits ended: the key may hold two again.
            second = await held_call(http, gated, call_id="tc_2")
            again = [poll(gated.writer, second), poll(gated.writer, second)]
            await holding(2)
            assert not any(task.done() for task in again)
            await approve(second)
            for task in again:
                response = await asyncio.wait_for(task, timeout=5)
                assert response.json()["status"] == "approved"


@pytest.mark.parametrize("how", ["blocked", "pending", "rejected", "expired"])
async def test_completing_a_call_not_cleared_to_run_is_a_violation(
    how: str,
    client: httpx.AsyncClient,
    gated: Tenant,
    gql: GraphQL,
    settings: Settings,
    recorder: Recorder,
) -> None:
    await create_policy(gql, gated.admin, name="No drops", action="BLOCK", toolName="drop_*")
    if how == "blocked":
        await post(client, gated.writer, tool_called("evt_1", "tc_1", "drop_table", service="db"))
        expected = 'Tool call drop_table completed although policy "No drops" blocked it.'
    elif how == "expired":
        body = tool_called("evt_1", "tc_1", environment="production", service="api")
        result = await expiring_gql(settings, recorder)(RECORD, gated.writer, input=body)
        approval_id = result.data["recordAgentEvent"]["approvalId"]
        expected = (
            f"Tool call deploy completed although its approval {approval_id} "
            "expired without a decision."
        )
    else:
        approval_id = await held_call(client, gated)
        expected = f"Tool call deploy completed while its approval {approval_id} was still pending."
        if how == "rejected":
            await gql(DECIDE, gated.admin, id=approval_id, decision="REJECT", comment="no")
            expected = (
                f"Tool call deploy completed although its approval {approval_id} "
                "was rejected by admin."
            )
    done = event("evt_done", "tool.completed", toolCallId="tc_1", outputPayload={"done": True})
    response = await post(client, gated.writer, done)
    assert response.status_code == 200
    assert response.json() == {"eventId": "evt_done", "runId": "run_001", "processed": True}

    [edge] = (await gql(VIOLATIONS, gated.reader)).data["timeline"]["edges"]
    entry = edge["node"]
    assert entry["summary"] == expected and entry["actor"] == "ci-pipeline"  # the sending key
    assert entry["subject"] == {
        "__typename": "ToolCall",
        "toolCallId": "tc_1",
        "status": "COMPLETED",
        "violation": expected,
    }
    assert entry["details"]["statusBefore"] == how.upper().replace("PENDING", "AWAITING_APPROVAL")


@pytest.mark.parametrize("ended", ["completed", "failed"])
async def test_a_call_that_ends_while_awaiting_closes_its_approval(
    ended: str, client: httpx.AsyncClient, gated: Tenant, gql: GraphQL
) -> None:
    """The agent went ahead (or gave up) without waiting: its pending approval stayed in
    every approval screen's queue, and could still be approved, until its time ran out.
    It is closed with the call's end, without a decision, and says so to a late decider."""
    approval_id = await held_call(client, gated)
    fields = {"outputPayload": {"done": True}} if ended == "completed" else {"error": "gave up"}
    response = await post(
        client, gated.writer, event("evt_end", f"tool.{ended}", toolCallId="tc_1", **fields)
    )
    assert response.status_code == 200, response.text

    approval = (await gql(APPROVAL, gated.reader, id=approval_id)).data["approval"]
    assert approval["status"] == "EXPIRED" and approval["decidedBy"] is None
    assert approval["decidedAt"] < approval["expiresAt"]
    assert approval["toolCall"]["status"] == ended.upper()
    pending = (await gql(APPROVALS, gated.reader, status="PENDING")).data["approvals"]["edges"]
    assert approval_id not in [edge["node"]["id"] for edge in pending]
    expired = await gql(
        "{ timeline(filter: {kinds: [APPROVAL_EXPIRED]}) { edges { node { summary } } } }",
        gated.reader,
    )
    assert [edge["node"]["summary"] for edge in expired.data["timeline"]["edges"]] == [
        f"Approval for deploy closed without a decision: the call {ended} first"
    ]
    [error] = (await gql(DECIDE, gated.admin, id=approval_id, decision="APPROVE")).errors
    assert error.extensions == {"code": "CONFLICT"}
    assert error.message.startswith(f"Approval {approval_id} was closed without a decision at ")
    assert error.message.endswith(": its tool call ended first; it cannot be decided.")


async def test_a_call_ending_after_its_approval_fell_due_says_it_expired(
    client: httpx.AsyncClient, gated: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval fell due after the end's own expiry check and before its update (that
    check is skipped here to hold the moment): the record says it expired, not that it was
    closed early by the call or that it was still pending."""
    approval_id = await held_call(client, gated)
    await Approval.filter(id=approval_id).update(expires_at=datetime(2026, 1, 2, tzinfo=UTC))

    async def not_yet(**_: Any) -> None:
        return None

    monkeypatch.setattr(approvals, "expire_due_for_call", not_yet)
    done = event("evt_done", "tool.completed", toolCallId="tc_1", outputPayload={})
    assert (await post(client, gated.writer, done)).status_code == 200
    [edge] = (await gql(VIOLATIONS, gated.reader)).data["timeline"]["edges"]
    assert edge["node"]["summary"] == (
        f"Tool call deploy completed although its approval {approval_id} expired without a "
        "decision."
    )
    expired = await gql(
        "{ timeline(filter: {kinds: [APPROVAL_EXPIRED]}) { edges { node { summary } } } }",
        gated.reader,
    )
    assert [edge["node"]["summary"] for edge in expired.data["timeline"]["edges"]] == [
        "Approval for deploy expired without a decision"
    ]


async def test_a_call_s_end_takes_its_approval_before_the_call_as_a_decision_does(
    client: httpx.AsyncClient, gated: Tenant, database_url: str
) -> None:
    """A decision (and an expiry) updates the approval, then the call. The call's end, now
    closing the approval, must take them in the same order: the other order deadlocks
    against a decision on PostgreSQL. A decision's transaction holding the approval is
    held open here: the end waits for it without having taken the call."""
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("SQLite runs one transaction at a time")
    approval_id = await held_call(client, gated)
    decider = await asyncpg.connect(database_url)
    try:
        deciding = decider.transaction()
        await deciding.start()
        await decider.execute(
            "UPDATE agent_approval SET comment = 'deciding' WHERE id = $1", approval_id
        )
        body = event("evt_end", "tool.completed", toolCallId="tc_1", outputPayload={})
        ending = asyncio.create_task(post(client, gated.writer, body))
        assert await until_waiting_for_a_lock(decider), "the call's end never waited"
        await decider.execute("SET lock_timeout = '300ms'")
        call = "SELECT 1 FROM agent_tool_call WHERE call_key = 'tc_1' AND workspace_id = $1"
        await decider.execute(call + " FOR UPDATE", gated.workspace_id)  # free: no deadlock
        await deciding.rollback()
        response = await asyncio.wait_for(ending, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        await decider.close()


async def test_an_unexpected_failure_of_the_approval_endpoint_is_answered_and_logged_once(
    client: httpx.AsyncClient, gated: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored approval the code cannot read (a real fault, no mock): the documented 500,
    logged once by Opsgraph, not raised again through Starlette's error layer (which logs
    it a second time as "Exception in ASGI application")."""
    approval_id = await held_call(client, gated)
    connection = connections.get("default")
    placeholder = "$1" if connection.capabilities.dialect == "postgres" else "?"
    update = f"UPDATE agent_approval SET status = '{{}}' WHERE id = {placeholder}"
    await connection.execute_query(update.format("NOT_A_STATUS"), [approval_id])
    try:
        with caplog.at_level(logging.ERROR):
            response = await client.get(
                f"/v1/approvals/{approval_id}", headers=api_key(gated.writer)
            )
    finally:
        await connection.execute_query(update.format("PENDING"), [approval_id])
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "INTERNAL", "message": "Internal server error."}}
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == [f"unhandled error on GET /v1/approvals/{approval_id}"]


async def test_the_relay_of_a_long_poll_ends_it_for_a_revoked_key_and_never_fails(
    tenant: Tenant,
) -> None:
    """The long-poll's relay ends its wait when the key's revocation arrives, also when it
    had arrived before the wait began; and a revocation arriving after another wait ended
    first (its future cancelled) is no error left unread in a task."""
    principal = Principal(
        key_id="key_gone", workspace_id=tenant.workspace_id, name="a", scopes=frozenset()
    )
    async with memory_bus(queue_size=10) as bus:
        async with agents._relay_settlement(bus.hub, principal, "ap_1") as relayed:
            await asyncio.sleep(0)  # the relay waits on its subscriber
            relays = [task for task in asyncio.all_tasks() if "relay()" in repr(task)]
            relayed.cancel()  # what `_first_of` does when another wait ends first
            bus.hub.revoke("key_gone")
            await asyncio.wait(relays, timeout=5)
            assert relays[0].exception() is None
        async with agents._relay_settlement(bus.hub, principal, "ap_1") as relayed:
            assert relayed.done()  # revoked before: the poll ends at once, to a 401
