"""Triggers across real server processes on one PostgreSQL database: each process stores
the triggers it receives in batches, and batches of two processes race to open the same
incidents. Every trigger must count once, on the one incident open for its key."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import postgres_database, run_server

pytestmark = pytest.mark.slow

CREATE_SERVICE = 'mutation { createService(name: "api") { routingKey } }'
INCIDENTS = """
{ incidents(first: 50) { nodes { dedupKey status alertCount alerts(first: 200) { summary } } }
  timeline(first: 200) { nodes { kind } } }
"""
KEYS = [f"check-{n}" for n in range(20)]
PER_KEY = 8


def graphql(url: str, admin: str, document: str) -> dict[str, Any]:
    response = httpx.post(
        url + "/graphql", json={"query": document}, headers={"Authorization": f"Bearer {admin}"}
    )
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


async def post_all(urls: list[str], routing_key: str) -> list[httpx.Response]:
    """Every trigger at once (PagerDuty's endpoint); each key's triggers alternate between
    the processes, so both open each key at once and one of them loses."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def post(number: int) -> httpx.Response:
            body = {
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": KEYS[number % len(KEYS)],
                "payload": {"summary": f"alert #{number}", "source": "prom", "severity": "error"},
            }
            url = urls[number // len(KEYS) % len(urls)]
            return await http.post(url + "/v2/enqueue", json=body)

        return await asyncio.gather(*(post(n) for n in range(PER_KEY * len(KEYS))))


def test_two_processes_count_every_trigger_on_one_incident_per_key(tmp_path: Path) -> None:
    with postgres_database() as database:
        env = {"OPSGRAPH_DATABASE_URL": database, "OPSGRAPH_BROADCAST_URL": "memory://"}
        with run_server(tmp_path, env) as first, run_server(tmp_path, env) as second:
            admin = first.admin_key or second.admin_key
            assert admin is not None
            routing_key = graphql(first.url, admin, CREATE_SERVICE)["createService"]["routingKey"]

            responses = asyncio.run(post_all([first.url, second.url], routing_key))

            assert [r.status_code for r in responses] == [202] * len(responses), [
                r.text for r in responses if r.status_code != 202
            ][:3]
            keys_seen: dict[str, set[str]] = {}
            for response in responses:
                body = response.json()
                keys_seen.setdefault(body["dedup_key"], set()).add(body["incident_key"])
            assert all(len(incidents) == 1 for incidents in keys_seen.values()), keys_seen

            data = graphql(first.url, admin, INCIDENTS)
            incidents = {node["dedupKey"]: node for node in data["incidents"]["nodes"]}
            assert sorted(incidents) == sorted(KEYS)  # one incident per key, no duplicate
            for number, key in enumerate(KEYS):
                node = incidents[key]
                assert node["status"] == "TRIGGERED"
                assert node["alertCount"] == PER_KEY == len(node["alerts"])
                sent = {f"alert #{n}" for n in range(number, len(responses), len(KEYS))}
                assert {alert["summary"] for alert in node["alerts"]} == sent
            kinds = Counter(node["kind"] for node in data["timeline"]["nodes"])
            assert kinds == {
                "INCIDENT_TRIGGERED": len(KEYS),
                "INCIDENT_UPDATED": len(responses) - len(KEYS),
            }
