"""`POST /v2/enqueue`: PagerDuty's Events API v2 with the routing key as the only credential,
as Alertmanager sends it, and driven by a real PagerDuty client library (pdpyras)."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import GraphQL, Tenant
from tests.servers import served

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "pdpyras is deprecated" (kept: widely used)
    import pdpyras

# What Alertmanager's PagerDuty receiver (Events API v2) posts for a firing alert.
ALERTMANAGER_TRIGGER: dict[str, Any] = {
    "routing_key": "ROUTING_KEY",
    "dedup_key": "6a4ab0bd1f6f0e5b6c9a2b1e2f3d4c5b6a7e8f9d0c1b2a3f4e5d6c7b8a9f0e1d",
    "event_action": "trigger",
    "payload": {
        "summary": "[FIRING:1] HighCPU api-7d9f (critical)",
        "source": "alertmanager.example:9093",
        "severity": "critical",
        "timestamp": "2026-03-04T14:25:00.000+0000",
        "component": "api",
        "group": "backend",
        "class": "cpu",
        "custom_details": {"firing": "Labels:\n - alertname = HighCPU", "num_firing": 1},
    },
    "images": [{"src": "https://grafana.example/cpu.png", "href": "https://grafana.example/d/1"}],
    "links": [{"href": "https://prometheus.example/graph", "text": "Prometheus"}],
    "client": "Alertmanager",
    "client_url": "https://alertmanager.example/#/alerts",
}

INCIDENT = """
query($id: ID!) {
  incident(id: $id) {
    dedupKey status summary source severity timestamp component group class customDetails
    images { src href alt } links { href text } client clientUrl alertCount
    alerts { actor summary timestamp component group class client clientUrl images { src } }
    timeline { kind actor }
  }
}
"""


async def test_alertmanager_event_is_stored_and_shown(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    body = {**ALERTMANAGER_TRIGGER, "routing_key": routing_key}
    response = await client.post("/v2/enqueue", json=body)
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "success" and answer["message"] == "Event processed"
    assert answer["dedup_key"] == ALERTMANAGER_TRIGGER["dedup_key"]

    result = await gql(INCIDENT, tenant.reader, id=answer["incident_key"])
    assert result.errors is None, result.errors
    incident = result.data["incident"]
    payload = ALERTMANAGER_TRIGGER["payload"]
    assert incident["timestamp"] == "2026-03-04T14:25:00Z"
    assert (incident["component"], incident["group"], incident["class"]) == (
        "api",
        "backend",
        "cpu",
    )
    assert incident["customDetails"] == payload["custom_details"]
    assert incident["images"] == [
        {
            "src": "https://grafana.example/cpu.png",
            "href": "https://grafana.example/d/1",
            "alt": None,
        }
    ]
    assert incident["links"] == ALERTMANAGER_TRIGGER["links"]
    assert incident["client"] == "Alertmanager"
    assert incident["clientUrl"] == "https://alertmanager.example/#/alerts"
    [alert] = incident["alerts"]
    assert alert["actor"] == "service:api" and alert["class"] == "cpu"
    assert alert["images"] == [{"src": "https://grafana.example/cpu.png"}]
    assert incident["timeline"] == [{"kind": "INCIDENT_TRIGGERED", "actor": "service:api"}]

    resolve = {
        "routing_key": routing_key,
        "dedup_key": body["dedup_key"],
        "event_action": "resolve",
        "payload": {"summary": "[RESOLVED] HighCPU", "source": "x", "severity": "critical"},
    }
    response = await client.post("/v2/enqueue", json=resolve)
    assert response.status_code == 202
    assert response.json()["dedup_key"] == body["dedup_key"]
    result = await gql(INCIDENT, tenant.reader, id=answer["incident_key"])
    assert result.data["incident"]["status"] == "RESOLVED"
    assert result.data["incident"]["summary"] == payload["summary"]


async def test_dedup_key_is_generated_for_a_trigger_without_one(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    body = {key: value for key, value in ALERTMANAGER_TRIGGER.items() if key != "dedup_key"}
    response = await client.post("/v2/enqueue", json={**body, "routing_key": routing_key})
    assert response.status_code == 202
    dedup_key = response.json()["dedup_key"]
    assert re.fullmatch(r"[0-9a-f]{32}", dedup_key)

    ack = {"routing_key": routing_key, "event_action": "acknowledge", "dedup_key": dedup_key}
    response = await client.post("/v2/enqueue", json=ack)
    assert response.status_code == 202
    assert response.json()["dedup_key"] == dedup_key
    result = await gql(INCIDENT, tenant.reader, id=response.json()["incident_key"])
    assert result.data["incident"]["status"] == "ACKNOWLEDGED"

    # Acknowledge and resolve still need the key they refer to.
    response = await client.post("/v2/enqueue", json={**ack, "dedup_key": None})
    assert response.status_code == 400
    assert response.json()["errors"] == ["dedup_key: is required"]


async def test_enqueue_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post("/v2/enqueue", json={**ALERTMANAGER_TRIGGER, "routing_key": "R0"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "INVALID_ROUTING_KEY", "message": "Routing key not found"},
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Routing key not found"],
    }
    body = {key: value for key, value in ALERTMANAGER_TRIGGER.items() if key != "routing_key"}
    response = await client.post("/v2/enqueue", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_EVENT"
    assert response.json()["errors"] == ["routing_key: is required"]
    response = await client.post("/v2/enqueue", json={**ALERTMANAGER_TRIGGER, "routing_key": 123})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_EVENT"
    assert response.json()["errors"] == ["routing_key: must be a string"]

    routing_key = await tenant.service("api")
    bad = {"routing_key": routing_key, "event_action": "trigger", "payload": {"severity": "fatal"}}
    response = await client.post("/v2/enqueue", json=bad)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        "payload.summary: is required",
        "payload.source: is required",
        "payload.severity: must be one of critical, error, warning, info; got 'fatal'",
    ]
    # A bearer header is neither needed nor looked at.
    headers = {"Authorization": "Bearer og_wrong"}
    ok = {**ALERTMANAGER_TRIGGER, "routing_key": routing_key}
    assert (await client.post("/v2/enqueue", json=ok, headers=headers)).status_code == 202


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    """The app served by a real uvicorn server on this event loop (database already open)."""
    async with served(app) as port:
        yield f"http://127.0.0.1:{port}"


def drive_with_pdpyras(url: str, routing_key: str) -> dict[str, Any]:
    """What an integration using PagerDuty's Python client does (blocking, in a thread)."""
    session = pdpyras.EventsAPISession(routing_key)
    session.url = url
    session.retry[429] = 1  # the client retries 429 forever by default
    outcome: dict[str, Any] = {}
    outcome["generated"] = session.trigger("Disk full on db-1", "db-1", severity="error")
    outcome["named"] = session.trigger(
        "Queue backlog",
        "worker-2",
        dedup_key="queue-backlog",
        severity="warning",
        custom_details={"depth": 12000},
        links=[{"href": "https://runbook.example/q"}],
    )
    outcome["again"] = session.trigger("Queue backlog", "worker-2", dedup_key="queue-backlog")
    outcome["ack"] = session.acknowledge("queue-backlog")
    outcome["resolve"] = session.resolve(outcome["generated"])
    outcome["unknown"] = session.resolve("never-seen")
    bad = pdpyras.EventsAPISession("R" + "0" * 31)
    bad.url = url
    try:
        bad.trigger("x", "y")
    except pdpyras.PDClientError as exc:
        assert exc.response is not None
        outcome["bad_status"] = exc.response.status_code
    return outcome


async def test_a_real_pagerduty_client_library(live_url: str, tenant: Tenant, gql: GraphQL) -> None:
    routing_key = await tenant.service("storage")
    outcome = await asyncio.to_thread(drive_with_pdpyras, live_url, routing_key)
    assert re.fullmatch(r"[0-9a-f]{32}", outcome["generated"])
    assert outcome["named"] == outcome["again"] == outcome["ack"] == "queue-backlog"
    assert outcome["resolve"] == outcome["generated"]
    assert outcome["unknown"] == "never-seen"
    assert outcome["bad_status"] == 400

    query = "{ incidents { nodes { dedupKey status alertCount severity customDetails"
    query += " links { href } } } }"
    result = await gql(query, tenant.reader)
    by_key = {node["dedupKey"]: node for node in result.data["incidents"]["nodes"]}
    assert by_key["queue-backlog"] == {
        "dedupKey": "queue-backlog",
        "status": "ACKNOWLEDGED",
        "alertCount": 2,
        "severity": "CRITICAL",
        "customDetails": {},
        "links": [],
    }
    assert by_key[outcome["generated"]]["status"] == "RESOLVED"


async def test_a_service_with_the_longest_name_can_send_events(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """The actor of a routing key's events is "service:" and the service's name, which may
    be as long as the actor columns: it must still fit them."""
    name = "s" * 200
    routing_key = await tenant.service(name)
    body = {**ALERTMANAGER_TRIGGER, "routing_key": routing_key}
    response = await client.post("/v2/enqueue", json=body)
    assert response.status_code == 202, response.text
    result = await gql(INCIDENT, tenant.reader, id=response.json()["incident_key"])
    assert result.errors is None, result.errors
    [alert] = result.data["incident"]["alerts"]
    assert alert["actor"].startswith("service:sss") and len(alert["actor"]) == 200
    [entry] = result.data["incident"]["timeline"]
    assert entry["actor"] == alert["actor"]
