"""Seed examples and small builders shared by the agent-action tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import GraphQL

# The seed's three curl examples, byte for byte as the seed shows their bodies.
CURL_RUN_STARTED = """{
"eventId": "evt_001",
"runId": "run_001",
"agentId": "my-agent",
"timestamp": "2026-03-19T10:00:00Z",
"eventType": "run.started",
"status": "started",
"metadata": { "task": "Deploy hotfix" }
}"""

CURL_TOOL_CALLED = """{
"eventId": "evt_002",
"runId": "run_001",
"agentId": "my-agent",
"timestamp": "2026-03-19T10:00:01Z",
"eventType": "tool.called",
"status": "pending",
"metadata": {
"toolCallId": "tc_001",
"toolName": "deploy",
"inputPayload": { "environment": "production" },
"actionHint": "deploy"
}
}"""

CURL_RUN_COMPLETED = """{
"eventId": "evt_003",
"runId": "run_001",
"agentId": "my-agent",
"timestamp": "2026-03-19T10:00:10Z",
"eventType": "run.completed",
"status": "completed"
}"""

# The seed's request body example.
SEED_REQUEST: dict[str, Any] = {
    "eventId": "evt_001",
    "runId": "run_001",
    "agentId": "my-agent",
    "timestamp": "2026-03-19T10:00:00Z",
    "eventType": "tool.called",
    "status": "pending",
    "metadata": {
        "toolCallId": "tc_001",
        "toolName": "deploy",
        "inputPayload": {"environment": "production", "service": "api"},
        "actionHint": "deploy",
    },
}

# The seed's "metadata by event type" examples.
RUN_STARTED_METADATA: dict[str, Any] = {
    "task": "Fix authentication bug",
    "model": "claude-sonnet-4-20250514",
    "reason": "Fix the session expiry bug reported in JIRA-1234",
    "agentContext": {
        "goal": "Fix the session expiry bug",
        "reasoning": "Sessions expire prematurely after re-login",
        "conversationId": "conv_abc123",
    },
}
TOOL_CALLED_METADATA: dict[str, Any] = {
    "toolCallId": "tc_001",
    "toolName": "create_pull_request",
    "inputPayload": {"repo": "my-org/api", "title": "Add caching layer"},
    "actionHint": "pr_create",
    "reason": "Opening a PR with the caching layer for review",
    "agentContext": {
        "goal": "Improve API response times",
        "reasoning": "Adding a Redis caching layer will reduce DB load by ~60%",
    },
}
TOOL_COMPLETED_METADATA: dict[str, Any] = {
    "toolCallId": "tc_001",
    "outputPayload": {"prNumber": 42, "url": "https://github.com/..."},
}

SEED_POLICY_NAME = "Require approval for production deploys"
SEED_REASON = (
    'Tool call deploy requires human approval per policy "Require approval for production deploys".'
)
SEED_POLICY: dict[str, Any] = {
    "name": SEED_POLICY_NAME,
    "action": "REQUIRE_APPROVAL",
    "toolName": "deploy",
    "inputMatches": [{"path": "environment", "op": "EQ", "value": "production"}],
}

CREATE_POLICY = """
mutation($input: PolicyInput!) {
  createPolicy(input: $input) { id name action version dryRun toolName actionHint agentId
    inputMatches { path op value } incidentOpenOnServiceFrom }
}
"""

RECORD = """
mutation($input: AgentEventInput!) {
  recordAgentEvent(input: $input) {
    __typename
    ... on AgentEventProcessed { eventId runId processed duplicate toolCallStatus reason
      approvalId approvalUrl
      matchedPolicies { policyId policyName action reason version dryRun }
      toolCall { id status decision violation } }
    ... on InvalidEvent { code message fields { field message } }
    ... on AgentEventConflict { code message }
  }
}
"""

TIMELINE_KINDS = """
query { timeline(first: 100) { edges { node { kind summary service environment actor details
  subject { __typename ... on ToolCall { id callStatus: status violation }
    ... on Approval { id approvalStatus: status }
    ... on Run { id runId runStatus: status } } } } } }
"""

DECIDE = """
mutation($id: ID!, $decision: ApprovalDecision!, $comment: String) {
  decideApproval(id: $id, decision: $decision, comment: $comment) {
    id status decidedBy comment decidedAt toolCall { status }
  }
}
"""


def api_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


async def post(client: httpx.AsyncClient, key: str, body: dict[str, Any] | str) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return await client.post("/v1/events", headers=api_key(key), content=content)


def event(
    event_id: str,
    event_type: str,
    *,
    run: str = "run_001",
    agent: str = "my-agent",
    at: str = "2026-03-19T10:00:00Z",
    **metadata: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": event_id,
        "runId": run,
        "agentId": agent,
        "timestamp": at,
        "eventType": event_type,
    }
    if metadata:
        body["metadata"] = metadata
    return body


def tool_called(
    event_id: str, call_id: str, tool: str = "deploy", *, run: str = "run_001", **payload: Any
) -> dict[str, Any]:
    return event(
        event_id, "tool.called", run=run, toolCallId=call_id, toolName=tool, inputPayload=payload
    )


async def create_policy(gql: GraphQL, admin: str, **fields: Any) -> dict[str, Any]:
    result = await gql(CREATE_POLICY, admin, input=fields)
    assert result.errors is None, result.errors
    policy: dict[str, Any] = result.data["createPolicy"]
    return policy


async def timeline(gql: GraphQL, key: str) -> list[dict[str, Any]]:
    """Entries oldest first."""
    result = await gql(TIMELINE_KINDS, key)
    assert result.errors is None, result.errors
    return [edge["node"] for edge in reversed(result.data["timeline"]["edges"])]


async def kinds(gql: GraphQL, key: str) -> list[str]:
    return [entry["kind"] for entry in await timeline(gql, key)]
