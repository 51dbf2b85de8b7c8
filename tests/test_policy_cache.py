"""The per-process policy cache: every policy change is honoured by the very next call."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx

from models.policy import Policy
from models.workspace import Workspace
from opsgraph.settings import Settings
from resolvers.policies import decide_tool_call
from resolvers.policy_eval import CallFacts
from tests.agent_helpers import SEED_POLICY, create_policy, event, post, tool_called
from tests.conftest import GraphQL, MakeTenant, Tenant

UPDATE = "mutation($id: ID!, $input: PolicyInput!) { updatePolicy(id: $id, input: $input) { id } }"
DELETE = "mutation($id: ID!) { deletePolicy(id: $id) }"
BLOCK_DEPLOYS: dict[str, Any] = {"name": "no deploys", "action": "BLOCK", "toolName": "deploy"}


async def answer(client: httpx.AsyncClient, key: str, n: int) -> dict[str, Any]:
    response = await post(client, key, tool_called(f"evt_{n}", f"tc_{n}", environment="staging"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def version(workspace_id: str) -> int:
    workspace = await Workspace.get(id=workspace_id)
    return workspace.policy_version


async def test_the_next_call_sees_each_create_update_and_delete(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    first = await answer(client, tenant.writer, 1)  # warms the cache with no policy
    assert first["toolCallStatus"] == "allowed" and first["matchedPolicies"] == []

    policy = await create_policy(gql, tenant.admin, **BLOCK_DEPLOYS)
    blocked = await answer(client, tenant.writer, 2)
    assert blocked["toolCallStatus"] == "blocked"
    assert blocked["reason"] == 'Tool call deploy is blocked by policy "no deploys".'

    result = await gql(
        UPDATE, tenant.admin, id=policy["id"], input={**BLOCK_DEPLOYS, "dryRun": True}
    )
    assert result.errors is None, result.errors
    dry = await answer(client, tenant.writer, 3)
    assert dry["toolCallStatus"] == "allowed"
    assert dry["reason"] == "Tool call deploy is allowed: only dry-run policies matched."

    result = await gql(DELETE, tenant.admin, id=policy["id"])
    assert result.data == {"deletePolicy": True}
    gone = await answer(client, tenant.writer, 4)
    assert gone["matchedPolicies"] == []
    assert gone["reason"] == "Tool call deploy is allowed: no policy matched."


async def test_only_committed_changes_move_the_version(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    before = await version(tenant.workspace_id)
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY)
    assert await version(tenant.workspace_id) == before + 1

    duplicate = await gql(
        "mutation($input: PolicyInput!) { createPolicy(input: $input) { id } }",
        tenant.admin,
        input=SEED_POLICY,
    )
    assert duplicate.errors is not None  # a name taken twice: nothing changed
    missing = await gql(UPDATE, tenant.admin, id="pol_missing", input=SEED_POLICY)
    assert missing.errors is not None
    deleted = await gql(DELETE, tenant.admin, id="pol_missing")
    assert deleted.data == {"deletePolicy": False}
    assert await version(tenant.workspace_id) == before + 1

    result = await gql(UPDATE, tenant.admin, id=policy["id"], input=SEED_POLICY)
    assert result.errors is None
    await gql(DELETE, tenant.admin, id=policy["id"])
    assert await version(tenant.workspace_id) == before + 3


async def test_a_change_made_by_another_process_is_seen(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings
) -> None:
    """Another process changes the rows and bumps the version; this one's cache must drop
    its copy, although nothing told it (this process's cache is warm)."""
    call = CallFacts(tool_name="deploy", agent_id="a", action_hint=None, input_payload={})
    decision = await decide_tool_call(
        workspace_id=tenant.workspace_id, call=call, settings=settings
    )
    assert decision.matched == ()
    await answer(client, tenant.writer, 1)

    await Policy.create(
        id="pol_elsewhere", workspace_id=tenant.workspace_id, name="elsewhere", action="BLOCK"
    )
    await Workspace.filter(id=tenant.workspace_id).update(policy_version=99)
    blocked = await answer(client, tenant.writer, 2)
    assert blocked["toolCallStatus"] == "blocked"
    decision = await decide_tool_call(
        workspace_id=tenant.workspace_id, call=call, settings=settings
    )
    assert [m.policy_name for m in decision.matched] == ["elsewhere"]


async def test_a_one_workspace_cache_still_decides_each_workspace_right(
    make_tenant: MakeTenant, gql: GraphQL, settings: Settings
) -> None:
    small = replace(settings, policy_cache_workspaces=1)
    tenants = [await make_tenant() for _ in range(3)]
    for index, tenant in enumerate(tenants):
        await create_policy(gql, tenant.admin, **{**BLOCK_DEPLOYS, "name": f"block {index}"})
    call = CallFacts(tool_name="deploy", agent_id="a", action_hint=None, input_payload={})
    for _ in range(2):
        for index, tenant in enumerate(tenants):
            decision = await decide_tool_call(
                workspace_id=tenant.workspace_id, call=call, settings=small
            )
            assert [m.policy_name for m in decision.matched] == [f"block {index}"]


async def test_concurrent_twins_of_a_run_end_get_the_same_answer(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A retried `run.completed` racing the original: both answered as the one event."""
    assert (await post(client, tenant.writer, event("e1", "run.started"))).status_code == 200
    done = event("e2", "run.completed", at="2026-03-19T10:00:05Z")
    responses = await asyncio.gather(*(post(client, tenant.writer, done) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert len({r.text for r in responses}) == 1
    other = event("e3", "run.completed", at="2026-03-19T10:00:06Z")
    response = await post(client, tenant.writer, other)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
