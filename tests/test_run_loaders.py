"""Runs with their tool calls and approvals load in one query per relation, not one per
row: a page of runs costs the same few reads with 2 runs or 8. Both databases."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from tests.agent_helpers import RECORD, SEED_POLICY, create_policy, event, tool_called
from tests.conftest import GraphQL, Tenant

RUNS = """
query { runs(first: 50) { edges { node { runId
  toolCalls { toolCallId status run { runId } approval { status toolCall { toolCallId }
    run { runId } } } } } } }
"""
TABLE = re.compile(r'^SELECT .*? FROM "(\w+)"')


async def record(gql: GraphQL, key: str, body: dict[str, Any]) -> None:
    raw = {**body, "metadata": body.get("metadata")}
    result = await gql(RECORD, key, input=raw)
    assert result.errors is None, result.errors
    assert result.data["recordAgentEvent"]["__typename"] == "AgentEventProcessed", result.data


async def seed_runs(gql: GraphQL, tenant: Tenant, count: int) -> None:
    for run in range(count):
        run_id = f"run_{run}"
        await record(gql, tenant.writer, event(f"e{run}s", "run.started", run=run_id))
        for call in range(3):  # one of each three is held for approval
            environment = "production" if call == 0 else "staging"
            body = tool_called(f"e{run}c{call}", f"tc_{run}_{call}", run=run_id,
                               environment=environment)  # fmt: skip
            await record(gql, tenant.writer, body)


async def reads_per_table(gql: GraphQL, key: str, caplog: Any) -> tuple[Any, Counter[str]]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        result = await gql(RUNS, key)
    tables = Counter(
        match.group(1) for r in caplog.records if (match := TABLE.match(r.getMessage()))
    )
    return result, tables


async def test_a_page_of_runs_reads_each_relation_once(
    gql: GraphQL, tenant: Tenant, caplog: Any
) -> None:
    await create_policy(gql, tenant.admin, **SEED_POLICY)
    await seed_runs(gql, tenant, 2)
    small, small_reads = await reads_per_table(gql, tenant.reader, caplog)
    await seed_runs(gql, tenant, 8)  # run_0 .. run_7 again (idempotent) plus six more
    result, reads = await reads_per_table(gql, tenant.reader, caplog)
    assert result.errors is None, result.errors

    runs = [edge["node"] for edge in result.data["runs"]["edges"]]
    assert sorted(run["runId"] for run in runs) == [f"run_{n}" for n in range(8)]
    for run in runs:
        calls = run["toolCalls"]
        assert [c["toolCallId"] for c in calls] == [f"tc_{run['runId'][4:]}_{n}" for n in range(3)]
        assert all(c["run"] == {"runId": run["runId"]} for c in calls)
        held = calls[0]["approval"]
        assert held["status"] == "PENDING"
        assert held["toolCall"] == {"toolCallId": calls[0]["toolCallId"]}
        assert held["run"] == {"runId": run["runId"]}
        assert calls[1]["approval"] is None and calls[2]["approval"] is None

    assert reads == small_reads, (small_reads, reads)  # as many reads for 8 runs as for 2
    # The page, then one read per relation and level: calls of runs, runs of calls,
    # approvals of calls, calls and runs of approvals.
    assert reads["agent_run"] == 3 and reads["agent_tool_call"] == 2, reads
    assert reads["agent_approval"] == 1, reads
