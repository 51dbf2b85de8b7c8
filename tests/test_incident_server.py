"""The seed's three curl examples, verbatim, against `opsgraph serve` and a service made by
`opsgraph services create` (only the host, the key and the routing key are filled in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.test_server import run_cli, server  # noqa: F401  (the real-server fixture)

SEED_TRIGGER = """curl -X POST https://your-ops.com/api/events \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "routing_key": "abc123",
    "event_action": "trigger",
    "dedup_key": "server-cpu-high",
    "payload": {
      "summary": "CPU usage above 90%",
      "source": "prometheus",
      "severity": "critical"
    }
  }'"""

SEED_ACKNOWLEDGE = """curl -X POST https://your-ops.com/api/events \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "routing_key": "abc123",
    "event_action": "acknowledge",
    "dedup_key": "server-cpu-high"
  }'"""

SEED_RESOLVE = """curl -X POST https://your-ops.com/api/events \\
  -H "Authorization: Bearer YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{
    "routing_key": "abc123",
    "event_action": "resolve",
    "dedup_key": "server-cpu-high"
  }'"""


def run_curl(command: str) -> tuple[int, dict[str, object]]:
    result = subprocess.run(
        ["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_seed_curl_examples_against_the_real_server(server: tuple[str, Path, str]) -> None:  # noqa: F811
    url, workdir, admin_key = server
    key = run_cli(workdir, "keys", "create", "--name", "prometheus", "--scopes", "events:write")
    routing = run_cli(workdir, "services", "create", "api")
    assert key.returncode == 0 and routing.returncode == 0

    def fill(command: str) -> str:
        return (
            command.replace("https://your-ops.com", url)
            .replace("YOUR_API_KEY", key.stdout.strip())
            .replace('"abc123"', json.dumps(routing.stdout.strip()))
        )

    status, body = run_curl(fill(SEED_TRIGGER))
    assert status == 202, body
    incident_key = body["incident_key"]
    assert body == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "server-cpu-high",
        "incident_key": incident_key,
    }
    for command in (SEED_ACKNOWLEDGE, SEED_RESOLVE):
        assert run_curl(fill(command)) == (202, body)

    query = "{ incidents { nodes { incidentKey status acknowledgedBy resolvedBy alertCount } } }"
    response = httpx.post(
        f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert response.json()["data"]["incidents"]["nodes"] == [
        {
            "incidentKey": incident_key,
            "status": "RESOLVED",
            "acknowledgedBy": "prometheus",
            "resolvedBy": "prometheus",
            "alertCount": 1,
        }
    ]
