"""Policies through GraphQL and the events API: CRUD, versions, dry runs, live incident state."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from opsgraph.settings import Settings
from schema import build_schema
from schema.context import Context
from tests.agent_helpers import (
    CREATE_POLICY,
    SEED_POLICY,
    SEED_REQUEST,
    create_policy,
    post,
    tool_called,
)
from tests.conftest import GraphQL, Recorder, Tenant, with_settings
from tests.test_changes import bearer

UPDATE = """
mutation($id: ID!, $input: PolicyInput!) { updatePolicy(id: $id, input: $input) { id name action
  version updatedBy dryRun } }
"""
DELETE = "mutation($id: ID!) { deletePolicy(id: $id) }"
POLICIES = "{ policies { id name action version dryRun createdBy inputMatches { path op value } } }"
CALL = """
query($id: ID!) { run(id: $id) { toolCalls { toolCallId status decisionReason
  matchedPolicies { policyId policyName action reason version dryRun } } } }
"""


async def decision(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await post(client, key, body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_admins_create_update_and_delete_policies(gql: GraphQL, tenant: Tenant) -> None:
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY, dryRun=None)  # null: false
    assert policy["version"] == 1 and policy["dryRun"] is False
    assert policy["inputMatches"] == [{"path": "environment", "op": "EQ", "value": "production"}]

    result = await gql(
        UPDATE, tenant.admin, id=policy["id"], input={**SEED_POLICY, "action": "BLOCK"}
    )
    assert result.data["updatePolicy"]["version"] == 2
    assert result.data["updatePolicy"]["action"] == "BLOCK"
    assert result.data["updatePolicy"]["updatedBy"] == "admin"

    result = await gql(POLICIES, tenant.reader)
    [listed] = result.data["policies"]
    assert listed["version"] == 2 and listed["createdBy"] == "admin"

    for document, variables in (
        (CREATE_POLICY, {"input": SEED_POLICY}),
        (UPDATE, {"id": policy["id"], "input": SEED_POLICY}),
        (DELETE, {"id": policy["id"]}),
    ):
        result = await gql(document, tenant.writer, **variables)
        assert result.errors[0].extensions == {"code": "FORBIDDEN"}

    result = await gql(DELETE, tenant.admin, id=policy["id"])
    assert result.data == {"deletePolicy": True}
    result = await gql(DELETE, tenant.admin, id=policy["id"])
    assert result.data == {"deletePolicy": False}
    result = await gql(UPDATE, tenant.admin, id=policy["id"], input=SEED_POLICY)
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}


UPDATE_FROM = """
mutation($id: ID!, $input: PolicyInput!, $v: Int) {
  updatePolicy(id: $id, input: $input, expectedVersion: $v) { version action dryRun } }
"""


async def test_an_update_made_from_an_old_version_undoes_no_one_s_edit(
    gql: GraphQL, tenant: Tenant
) -> None:
    """Two admins edit one policy: the second, still looking at version 1, toggles dry run
    by sending the definition it shows. Named, that version makes it a CONFLICT, and the
    first admin's edit stands; from the current version it goes through."""
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY)
    first = await gql(
        UPDATE_FROM, tenant.admin, id=policy["id"], input={**SEED_POLICY, "action": "BLOCK"}, v=1
    )
    assert first.data["updatePolicy"] == {"version": 2, "action": "BLOCK", "dryRun": False}

    stale = await gql(
        UPDATE_FROM, tenant.admin, id=policy["id"], input={**SEED_POLICY, "dryRun": True}, v=1
    )
    assert stale.errors[0].extensions == {"code": "CONFLICT"}
    assert stale.errors[0].message == (
        "Policy 'Require approval for production deploys' has changed since version 1 (it is "
        "at version 2, by admin): reload it and edit again."
    )
    [listed] = (await gql(POLICIES, tenant.reader)).data["policies"]
    assert (listed["action"], listed["version"], listed["dryRun"]) == ("BLOCK", 2, False)

    current = await gql(
        UPDATE_FROM,
        tenant.admin,
        id=policy["id"],
        input={**SEED_POLICY, "action": "BLOCK", "dryRun": True},
        v=2,
    )
    assert current.data["updatePolicy"] == {"version": 3, "action": "BLOCK", "dryRun": True}
    missing = await gql(UPDATE_FROM, tenant.admin, id="pol_missing", input=SEED_POLICY, v=1)
    assert missing.errors[0].extensions == {"code": "NOT_FOUND"}
    zero = await gql(UPDATE_FROM, tenant.admin, id=policy["id"], input=SEED_POLICY, v=0)
    assert zero.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert zero.errors[0].message == "expectedVersion: must be 1 or more."


async def test_bad_policies_name_each_field(gql: GraphQL, tenant: Tenant) -> None:
    bad = {
        "name": " ",
        "action": "BLOCK",
        "inputMatches": [
            {"path": "replicas", "op": "GT", "value": "five"},
            {"path": "env", "op": "IN", "value": "prod"},
            {"path": "a..b", "op": "EQ", "value": 1},
            {"path": "replicas", "op": "LTE", "value": True},  # JSON's true is no number
        ],
        "incidentOpenOnServiceFrom": "target.",
    }
    result = await gql(CREATE_POLICY, tenant.admin, input=bad)
    [error] = result.errors
    assert error.extensions["code"] == "BAD_USER_INPUT"
    assert [f["field"] for f in error.extensions["fields"]] == [
        "name",
        "incidentOpenOnServiceFrom",
        "inputMatches[0].value",
        "inputMatches[1].value",
        "inputMatches[2].path",
        "inputMatches[3].value",
    ]
    assert error.message.startswith("Invalid policy: name: must not be empty;")
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    result = await gql(CREATE_POLICY, tenant.admin, input=SEED_POLICY)
    assert result.errors[0].extensions == {"code": "CONFLICT"}


async def test_a_condition_is_kept_without_the_spaces_around_it(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    """`toolName: " deploy "` was stored as typed and matched no tool, and a freeze of
    `"service "` no field: an admin got no error and a BLOCK that blocked nothing."""
    routing_key = await tenant.service("api")
    padded = await create_policy(
        gql,
        tenant.admin,
        name="Freeze prod deploys",
        action="BLOCK",
        toolName=" deploy ",
        actionHint="deploy\t",
        agentId=" my-agent",
        incidentOpenOnServiceFrom="service ",
        inputMatches=[{"path": " environment\n", "op": "EQ", "value": "production"}],
    )
    assert (padded["toolName"], padded["actionHint"], padded["agentId"]) == (
        "deploy",
        "deploy",
        "my-agent",
    )
    assert padded["incidentOpenOnServiceFrom"] == "service"
    assert padded["inputMatches"][0]["path"] == "environment"
    alert = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": "api-down",
        "payload": {"summary": "api down", "source": "probe", "severity": "critical"},
    }
    opened = await client.post("/api/events", json=alert, headers=bearer(tenant.writer))
    assert opened.status_code == 202
    assert (await decision(client, tenant.writer, SEED_REQUEST))["toolCallStatus"] == "blocked"
    # The call's own names are held to it the same way: "deploy " was let past the BLOCK.
    padded = {
        **SEED_REQUEST,
        "eventId": "e2",
        "agentId": "my-agent ",
        "metadata": {
            **SEED_REQUEST["metadata"],
            "toolCallId": "tc_2",
            "toolName": "deploy ",
            "actionHint": " deploy",
        },
    }
    assert (await decision(client, tenant.writer, padded))["toolCallStatus"] == "blocked"


async def test_a_policy_s_name_and_paths_are_refused_for_what_is_wrong(
    gql: GraphQL, tenant: Tenant
) -> None:
    """A path over 200 characters was called no dotted path; a newline in a name (which is
    in every reason an agent is answered) was taken, where a key's name refuses it."""
    bad = {
        "name": "Freeze\nprod",
        "action": "BLOCK",
        "inputMatches": [{"path": "p" * 201, "op": "EQ", "value": 1}],
    }
    [error] = (await gql(CREATE_POLICY, tenant.admin, input=bad)).errors
    assert [(f["field"], f["message"]) for f in error.extensions["fields"]] == [
        ("name", "must not contain control characters (a newline, a tab, NUL)"),
        ("inputMatches[0].path", "must be at most 200 characters"),
    ]
    hidden = {"name": "Fr\u202eeze", "action": "BLOCK"}  # shows as "Frezee" reversed
    [error] = (await gql(CREATE_POLICY, tenant.admin, input=hidden)).errors
    assert error.extensions["fields"][0]["message"].startswith(
        "must not contain invisible formatting characters"
    )
    # Spaces around a name are no fault: they are dropped, as before.
    trailing = await create_policy(gql, tenant.admin, name="Freeze\n", action="BLOCK")
    assert trailing["name"] == "Freeze"


async def test_an_empty_condition_is_refused_not_read_as_any(gql: GraphQL, tenant: Tenant) -> None:
    """`toolName: ""` read as left out made a block meant for one tool block every call;
    a NUL in a predicate was refused by PostgreSQL alone, naming no field."""
    bad = {
        "name": "Block one tool",
        "action": "BLOCK",
        "toolName": "",
        "actionHint": " ",
        "agentId": "",
        "incidentOpenOnServiceFrom": "",
        "inputMatches": [
            {"path": "env\u0000", "op": "EQ", "value": "prod"},
            {"path": "env", "op": "IN", "value": ["prod", {"k": "a\u0000b"}]},
            {"path": "env", "op": "EQ", "value": "\\u0000 is six characters"},
        ],
    }
    result = await gql(CREATE_POLICY, tenant.admin, input=bad)
    [error] = result.errors
    assert error.extensions["code"] == "BAD_USER_INPUT"
    assert [(f["field"], f["message"]) for f in error.extensions["fields"]] == [
        *[
            (name, "must not be empty: leave it out (or null) to match any")
            for name in ("toolName", "actionHint", "agentId", "incidentOpenOnServiceFrom")
        ],
        ("inputMatches[0].path", "must not contain NUL characters"),
        ("inputMatches[1].value", "must not contain NUL characters"),
    ]
    assert (await gql(POLICIES, tenant.admin)).data["policies"] == []
    # Left out, each holds for any call, as documented.
    await create_policy(gql, tenant.admin, name="Block all", action="BLOCK", toolName=None)


async def test_a_glob_pattern_is_bounded_by_its_setting(gql: GraphQL, tenant: Tenant) -> None:
    """Each GLOB is compiled on the server's loop: a 60 KB pattern held every workspace's
    requests for half a second, ten of them for four (the body limit was its only bound)."""
    most = Settings().policy_glob_max_length
    for size, refused in ((most, False), (most + 1, True)):
        pattern = ("*a" * most)[:size]
        policy = {
            "name": f"Glob of {size}",
            "action": "BLOCK",
            "inputMatches": [{"path": "target", "op": "GLOB", "value": pattern}],
        }
        result = await gql(CREATE_POLICY, tenant.admin, input=policy)
        if not refused:
            assert result.errors is None, result.errors
            continue
        [error] = result.errors
        assert error.extensions["fields"] == [
            {
                "field": "inputMatches[0].value",
                "message": f"must be at most {most} characters for GLOB",
            }
        ]


async def test_each_decision_records_the_policy_versions(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    policy = await create_policy(gql, tenant.admin, **SEED_POLICY)
    await decision(client, tenant.writer, tool_called("e1", "tc_1", environment="production"))
    await gql(UPDATE, tenant.admin, id=policy["id"], input={**SEED_POLICY, "name": "Prod gate"})
    await decision(client, tenant.writer, tool_called("e2", "tc_2", environment="production"))
    calls = (await gql(CALL, tenant.reader, id="run_001")).data["run"]["toolCalls"]
    assert [
        (c["matchedPolicies"][0]["version"], c["matchedPolicies"][0]["policyName"]) for c in calls
    ] == [
        (1, "Require approval for production deploys"),
        (2, "Prod gate"),
    ]


async def test_dry_run_policies_are_shown_not_enforced(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    trial = await create_policy(
        gql, tenant.admin, name="Trial: no deploys", action="BLOCK", toolName="deploy", dryRun=True
    )
    body = await decision(client, tenant.writer, tool_called("e1", "tc_1", environment="staging"))
    reason = 'Dry run: tool call deploy would be blocked by policy "Trial: no deploys".'
    assert body["toolCallStatus"] == "allowed"
    assert body["reason"] == "Tool call deploy is allowed: only dry-run policies matched."
    assert body["matchedPolicies"] == [
        {
            "policyId": trial["id"],
            "policyName": "Trial: no deploys",
            "action": "block",
            "reason": reason,
        }
    ]
    [call] = (await gql(CALL, tenant.reader, id="run_001")).data["run"]["toolCalls"]
    assert call["status"] == "ALLOWED"
    assert call["matchedPolicies"][0]["dryRun"] is True


async def test_a_quoted_number_does_not_slip_past_a_numeric_policy(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    await create_policy(
        gql,
        tenant.admin,
        name="Big refunds",
        action="REQUIRE_APPROVAL",
        toolName="refund",
        inputMatches=[{"path": "amount", "op": "GT", "value": 100}],
    )
    held, allowed = "awaiting_approval", "allowed"
    cases = [(150, held), ("150", held), ("1.5e2", held), ("99", allowed),
             ("one hundred and fifty", allowed), (" 150", held), ("+150", held),
             ("1,500", allowed)]  # fmt: skip
    for n, (amount, expected) in enumerate(cases):
        call = tool_called(f"e{n}", f"tc_{n}", "refund", amount=amount)
        assert (await decision(client, tenant.writer, call))["toolCallStatus"] == expected, amount


async def test_predicates_and_precedence_end_to_end(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    await create_policy(
        gql, tenant.admin, name="Deploys are fine", action="ALLOW", toolName="deploy"
    )
    await create_policy(
        gql,
        tenant.admin,
        name="Big rollouts need a person",
        action="REQUIRE_APPROVAL",
        toolName="deploy",
        inputMatches=[{"path": "rollout.replicas", "op": "GTE", "value": 10}],
    )
    await create_policy(
        gql,
        tenant.admin,
        name="Never in these regions",
        action="BLOCK",
        agentId="my-*",
        inputMatches=[
            {"path": "rollout.region", "op": "IN", "value": ["cn-north-1", "us-gov-west-1"]},
        ],
    )
    small = tool_called("e1", "tc_1", rollout={"replicas": 3, "region": "eu-west-1"})
    body = await decision(client, tenant.writer, small)
    assert (body["toolCallStatus"], body["reason"]) == (
        "allowed",
        'Tool call deploy is allowed by policy "Deploys are fine".',
    )
    big = tool_called("e2", "tc_2", rollout={"replicas": 12, "region": "eu-west-1"})
    body = await decision(client, tenant.writer, big)
    assert body["toolCallStatus"] == "awaiting_approval"
    assert [m["action"] for m in body["matchedPolicies"]] == ["require_approval", "allow"]
    forbidden = tool_called("e3", "tc_3", rollout={"replicas": 12, "region": "cn-north-1"})
    body = await decision(client, tenant.writer, forbidden)
    assert body["toolCallStatus"] == "blocked" and body["approvalId"] is None
    assert [m["action"] for m in body["matchedPolicies"]] == ["block", "require_approval", "allow"]


async def test_a_change_freeze_while_an_incident_is_open(
    client: httpx.AsyncClient, gql: GraphQL, tenant: Tenant
) -> None:
    routing_key = await tenant.service("api")
    await create_policy(
        gql,
        tenant.admin,
        name="Freeze deploys during incidents",
        action="BLOCK",
        toolName="deploy",
        incidentOpenOnServiceFrom="service",
    )
    body = await decision(client, tenant.writer, SEED_REQUEST)  # inputPayload.service == "api"
    assert body["toolCallStatus"] == "allowed"

    async def incident(action: str) -> None:
        alert = {
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": "api-5xx",
            "payload": {
                "summary": "api 5xx above 5%",
                "source": "prometheus",
                "severity": "critical",
            },
        }
        headers = {"Authorization": f"Bearer {tenant.writer}"}
        response = await client.post("/api/events", json=alert, headers=headers)
        assert response.status_code == 202, response.text

    await incident("trigger")
    body = await decision(
        client,
        tenant.writer,
        {
            **SEED_REQUEST,
            "eventId": "e2",
            "metadata": {**SEED_REQUEST["metadata"], "toolCallId": "tc_2"},
        },
    )
    assert body["toolCallStatus"] == "blocked"
    assert (
        body["reason"] == 'Tool call deploy is blocked by policy "Freeze deploys during incidents".'
    )
    other = tool_called("e3", "tc_3", service="web")
    assert (await decision(client, tenant.writer, other))["toolCallStatus"] == "allowed"

    # A service written with spaces or a line break around it is the one it is filed
    # under: it was let through the freeze, then shown on `api`'s timeline.
    for index, written in enumerate([" api ", "api\n", "\tapi"]):
        spaced = tool_called(f"e3{index}", f"tc_3{index}", service=written)
        assert (await decision(client, tenant.writer, spaced))["toolCallStatus"] == "blocked"

    await incident("acknowledge")  # acknowledged is still open
    again = tool_called("e4", "tc_4", service="api")
    assert (await decision(client, tenant.writer, again))["toolCallStatus"] == "blocked"

    await incident("resolve")
    after = tool_called("e5", "tc_5", service="api")
    assert (await decision(client, tenant.writer, after))["toolCallStatus"] == "allowed"


README_POLICY = """
mutation {
  createPolicy(input: {
    name: "Freeze prod deploys during incidents", action: BLOCK, toolName: "deploy*",
    inputMatches: [{path: "environment", op: IN, value: ["production", "prod"]}],
    incidentOpenOnServiceFrom: "service"
  }) { id version inputMatches { path op value } }
}
"""
README_QUERIES = """
{ runs(filter: {statuses: [RUNNING]}, first: 10) { edges { node { runId agentId task
    toolCalls { toolCallId toolName status decisionReason violation
      matchedPolicies { policyName action version dryRun } approval { id status } } } } }
  approvals(status: PENDING) { edges { node { id reason expiresAt url toolCall { toolName } } } } }
"""


async def test_the_readme_examples_run(gql: GraphQL, tenant: Tenant) -> None:
    result = await gql(README_POLICY, tenant.admin)
    assert result.errors is None, result.errors
    created = result.data["createPolicy"]
    assert created["inputMatches"] == [
        {"path": "environment", "op": "IN", "value": ["production", "prod"]}
    ]
    result = await gql(README_QUERIES, tenant.reader)
    assert result.errors is None, result.errors


async def test_a_workspace_holds_at_most_max_policies(settings: Settings, tenant: Tenant) -> None:
    """Every tool call is evaluated against the workspace's policies: their number is a
    named limit (`OPSGRAPH_MAX_POLICIES`), a clear refusal past it."""
    two = with_settings(settings, max_policies=2)
    schema = build_schema(two)

    async def run(document: str, **variables: Any) -> Any:
        context = Context(settings=two, publisher=Recorder([]), secret=tenant.admin)
        return await schema.execute(document, variable_values=variables, context_value=context)

    created = [
        await run(CREATE_POLICY, input={"name": f"p{n}", "action": "ALLOW"}) for n in range(3)
    ]
    assert [result.errors for result in created[:2]] == [None, None]
    [error] = created[2].errors
    assert error.extensions == {"code": "CONFLICT"}
    assert error.message == "A workspace holds at most 2 policies; delete one first."
    first_id = created[0].data["createPolicy"]["id"]
    assert (await run(DELETE, id=first_id)).data == {"deletePolicy": True}
    again = await run(CREATE_POLICY, input={"name": "p2", "action": "ALLOW"})
    assert again.errors is None
    # Created at the same moment, they are counted one after the other: six at once
    # against a limit of two stored five.
    for policy in (await run(POLICIES)).data["policies"]:
        assert (await run(DELETE, id=policy["id"])).data == {"deletePolicy": True}
    at_once = await asyncio.gather(
        *(run(CREATE_POLICY, input={"name": f"q{n}", "action": "ALLOW"}) for n in range(6))
    )
    assert sum(result.errors is None for result in at_once) == 2
    assert len((await run(POLICIES)).data["policies"]) == 2
