"""Durability: `kill -9` the server while a load generator posts changes, incident
triggers and agent tool calls; after a restart every request that got a 2xx is stored
exactly once (those cut off in flight at most once, and exactly once after a retry of an
idempotent one), and the timeline, incidents and approvals are consistent. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.servers import Server, postgres_database, run_server

pytestmark = pytest.mark.slow

WORKERS = 12
LOAD_SECONDS = 1.5
MAX_REQUESTS = 3000
NOW = "2026-11-25T10:00:00Z"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'durable.sqlite3'}"
    else:
        with postgres_database() as url:
            yield url


async def rows(database: str, sql: str) -> list[tuple[Any, ...]]:
    if database.startswith("sqlite://"):
        connection = sqlite3.connect(database.removeprefix("sqlite://"))
        try:
            return list(connection.execute(sql))
        finally:
            connection.close()
    pg = await asyncpg.connect(database)
    try:
        return [tuple(row) for row in await pg.fetch(sql)]
    finally:
        await pg.close()


@dataclass
class Outcomes:
    """What the load generator was told: acknowledged, or cut off (unknown)."""

    acked: dict[str, set[str]] = field(
        default_factory=lambda: {"change": set(), "incident": set(), "agent": set()}
    )
    unknown: dict[str, list[tuple[str, dict[str, Any]]]] = field(
        default_factory=lambda: {"change": [], "incident": [], "agent": []}
    )


def requests_for(
    number: int, key: str, routing_key: str
) -> tuple[str, str, str, dict[str, Any], dict[str, str]]:
    """The number-th request: (kind, id, path, body, headers), rotating the three streams."""
    kind = ("change", "incident", "agent")[number % 3]
    ident = f"{kind}-{number}"
    if kind == "change":
        body = {"name": ident, "timestamp": NOW, "category": "TECHNICAL", "source": "load"}
        return kind, ident, "/events", body, {"Authorization": f"Bearer {key}"}
    if kind == "incident":
        body = {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": ident,
            "payload": {"summary": ident, "source": "load", "severity": "error"},
        }
        return kind, ident, "/v2/enqueue", body, {}
    body = {
        "eventId": ident,
        "runId": f"run-{number}",
        "agentId": "loader",
        "timestamp": NOW,
        "eventType": "tool.called",
        "metadata": {"toolCallId": f"tc-{number}", "toolName": "deploy", "inputPayload": {}},
    }
    return kind, ident, "/v1/events", body, {"X-API-Key": key}


async def generate_load(server: Server, key: str, routing_key: str, outcomes: Outcomes) -> None:
    """Post until the server dies (or the time or count bound is hit)."""
    counter = itertools.count()
    deadline = time.monotonic() + 30

    async def worker(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            number = next(counter)
            if number >= MAX_REQUESTS:
                return
            kind, ident, path, body, headers = requests_for(number, key, routing_key)
            try:
                response = await http.post(path, json=body, headers=headers)
            except httpx.HTTPError:
                outcomes.unknown[kind].append((ident, body))
                if server.process.poll() is not None:
                    return
                continue
            if 200 <= response.status_code < 300:
                outcomes.acked[kind].add(ident)
            else:
                outcomes.unknown[kind].append((ident, body))

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await asyncio.gather(*(worker(http) for _ in range(WORKERS)))


async def test_kill_9_under_load_loses_and_duplicates_nothing(
    database: str, tmp_path: Path
) -> None:
    env = {"OPSGRAPH_DATABASE_URL": database, "OPSGRAPH_ACCESS_LOG": "false"}
    outcomes = Outcomes()
    with run_server(tmp_path, env) as server:
        admin = server.admin_key
        assert admin is not None
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {admin}"}
        ) as http:
            created = http.post(
                "/graphql",
                json={"query": 'mutation { createService(name: "load") { routingKey } }'},
            ).json()
            routing_key = created["data"]["createService"]["routingKey"]
            policy = http.post(
                "/graphql",
                json={
                    "query": 'mutation { createPolicy(input: {name: "gate", '
                    'action: REQUIRE_APPROVAL, toolName: "deploy"}) { id } }'
                },
            ).json()
            assert "errors" not in policy, policy
        load = asyncio.create_task(generate_load(server, admin, routing_key, outcomes))
        await asyncio.sleep(LOAD_SECONDS)
        server.process.kill()  # SIGKILL: no shutdown, no flush
        server.process.wait(timeout=10)
        await asyncio.wait_for(load, timeout=30)
    acked = sum(len(ids) for ids in outcomes.acked.values())
    assert acked > 30, "the load generator barely ran"
    assert any(outcomes.unknown.values()), "the kill cut no request off: it came too late"

    with run_server(tmp_path, env) as restarted:
        # Retrying what was cut off is safe for agent events (eventId is idempotent).
        async with httpx.AsyncClient(base_url=restarted.url) as http:
            for ident, body in outcomes.unknown["agent"]:
                response = await http.post("/v1/events", json=body, headers={"X-API-Key": admin})
                assert response.status_code == 200, response.text
                outcomes.acked["agent"].add(ident)

        changes = dict(await rows(database, "SELECT name, count(*) FROM change GROUP BY name"))
        incidents = dict(
            await rows(database, "SELECT dedup_key, count(*) FROM incident GROUP BY dedup_key")
        )
        events = dict(
            await rows(database, "SELECT event_id, count(*) FROM agent_event GROUP BY event_id")
        )
        for stored, kind in ((changes, "change"), (incidents, "incident"), (events, "agent")):
            for ident in outcomes.acked[kind]:
                assert stored.get(ident) == 1, (kind, ident, stored.get(ident))
            assert all(count == 1 for count in stored.values()), kind
            known = outcomes.acked[kind] | {ident for ident, _ in outcomes.unknown[kind]}
            assert set(stored) <= known, kind  # nothing that was never sent

        # Consistency: one timeline entry per change, a gapless sequence per workspace, one
        # approval per tool call held for approval, one alert per single-trigger incident.
        [(entries,)] = await rows(
            database, "SELECT count(*) FROM timeline_entry WHERE kind = 'CHANGE'"
        )
        assert entries == len(changes)
        for workspace, last_seq, count, top in await rows(
            database,
            "SELECT w.id, w.timeline_seq, count(t.id), max(t.seq) FROM workspace w "
            "JOIN timeline_entry t ON t.workspace_id = w.id GROUP BY w.id, w.timeline_seq",
        ):
            assert last_seq == count == top, workspace
        [(unmatched,)] = await rows(
            database,
            "SELECT count(*) FROM agent_tool_call c WHERE c.status = 'AWAITING_APPROVAL' AND "
            "(SELECT count(*) FROM agent_approval a WHERE a.tool_call_id = c.id) <> 1",
        )
        assert unmatched == 0
        [(calls,)] = await rows(database, "SELECT count(*) FROM agent_tool_call")
        assert calls == len(events)
        [(multi,)] = await rows(database, "SELECT count(*) FROM incident WHERE alert_count <> 1")
        assert multi == 0
