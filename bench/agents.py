"""Benchmark 2: agent decisions, `POST /v1/events` `tool.called` with 100 policies in the
workspace, beside the baseline (one INSERT of the same body per request).

Each request is a new tool call (fresh `eventId` and `toolCallId`) spread over 64 runs, so
every one is evaluated against all 100 policies and answered with its decision.
Usage: .venv/bin/python -m bench.agents [--connections 32] [--duration 15] [--workers 1]
       [--rounds 3] [--against OTHER_TREE]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from bench import harness

POLICIES = 100
RUNS = 64
TARGET = "Opsgraph ≥ 0.8× the baseline's req/s; p99 reported."

TOOL_CALLED = {
    "eventId": "evt_$UNIQ",
    "runId": "run_$N",
    "agentId": "bench-agent",
    "timestamp": "2026-03-19T10:00:01Z",
    "eventType": "tool.called",
    "status": "pending",
    "metadata": {
        "toolCallId": "tc_$UNIQ",
        "toolName": "deploy",
        "inputPayload": {"environment": "staging", "service": "api", "replicas": 3},
        "actionHint": "deploy",
    },
}

CREATE_POLICY = """
mutation($input: PolicyInput!) { createPolicy(input: $input) { id } }
"""


def policy(index: int) -> dict[str, Any]:
    """A mix like a real workspace's: most policies are about other tools or inputs, a few
    match this call (one allows it, one dry-run block records what it would have done)."""
    if index == 0:
        staging = {"path": "environment", "op": "EQ", "value": "staging"}
        return {"name": "allow staging", "action": "ALLOW", "toolName": "deploy",
                "inputMatches": [staging]}  # fmt: skip
    if index == 1:
        big = {"path": "replicas", "op": "GT", "value": 2}
        return {"name": "would block big deploys", "action": "BLOCK", "toolName": "deploy*",
                "dryRun": True, "inputMatches": [big]}  # fmt: skip
    kind = index % 4
    base: dict[str, Any] = {"name": f"policy {index}", "toolName": f"tool_{index}_*"}
    if kind == 0:
        base.update(action="BLOCK", agentId=f"agent-{index}")
    elif kind == 1:
        base.update(action="REQUIRE_APPROVAL",
                    inputMatches=[{"path": "environment", "op": "IN",
                                   "value": ["production", f"prod-{index}"]}])  # fmt: skip
    elif kind == 2:
        base.update(action="BLOCK", toolName="deploy", actionHint=f"hint_{index}")
    else:
        service = {"path": "service", "op": "GLOB", "value": f"svc-{index}-*"}
        base.update(action="REQUIRE_APPROVAL", toolName="deploy", inputMatches=[service])
    return base


def create_policies(server: harness.Server, admin: str) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        for index in range(POLICIES):
            response = http.post(
                "/graphql", json={"query": CREATE_POLICY, "variables": {"input": policy(index)}}
            )
            body = response.json()
            if response.status_code != 200 or body.get("errors"):
                raise RuntimeError(f"createPolicy failed: {body}")


def sample_answer(server: harness.Server, key: str) -> dict[str, Any]:
    body = json.dumps(TOOL_CALLED).replace("$UNIQ", "sample").replace("$N", "0")
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    response = httpx.post(server.url + "/v1/events", content=body, headers=headers)
    answer: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"POST /v1/events answered {response.status_code}: {answer}")
    return answer


def run(
    *,
    connections: int,
    duration: float,
    workers: int,
    rounds: int = harness.ROUNDS,
    against: Path | None = None,
) -> str:
    template = json.dumps(TOOL_CALLED)
    with (
        harness.throwaway_database() as database_url,
        harness.with_baseline(database_url, workers=workers) as baseline,
        harness.opsgraph_server(database_url, workers=workers) as (server, admin),
        harness.against_server(database_url, against, workers=workers) as other,
    ):
        create_policies(server, admin)
        key = harness.create_key(database_url, "events:write", name="bench-agent")
        answer = sample_answer(server, key)
        check = harness.Durability(database_url, "agent_tool_call")
        script = harness.lua_post_template("/v1/events", template, {"X-API-Key": key}, count=RUNS)
        compared = harness.alternate(
            [
                harness.Contender("baseline", baseline, "/v1/events",
                                  harness.lua_post_template("/v1/events", template, {},
                                                            count=RUNS)),
                harness.Contender("opsgraph", server, "/v1/events", script, durability=check),
            ],
            database_url, connections=connections, duration=duration, rounds=rounds,
            against=other,
        )  # fmt: skip
        note = check.verdict()
    text = harness.table(
        f"Agent decisions: POST /v1/events tool.called, {POLICIES} policies, "
        f"{connections} connections",
        compared.rows,
        target=TARGET,
    )
    note += "\n" + compared.round_ratios()
    decision = (f"Each answer: toolCallStatus={answer.get('toolCallStatus')!r}, "
                f"{len(answer.get('matchedPolicies') or [])} matched policies.")  # fmt: skip
    print(note, decision, sep="\n", flush=True)
    return f"{text}\n\n{note}\n{decision}"


def main() -> None:
    args = harness.arguments(__doc__, against=True).parse_args()
    harness.header("Agent decision benchmark", args)
    run(
        connections=args.connections,
        duration=args.duration,
        workers=args.workers,
        rounds=args.rounds,
        against=args.against,
    )


if __name__ == "__main__":
    main()
