"""Incidents over REST: `POST /api/events` and `POST /v2/enqueue`, dedup and lifecycle,
every error code, on both databases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import GraphQL, Tenant

# The seed's three examples, verbatim but for the routing key ("abc123" there).
SEED_TRIGGER: dict[str, Any] = {
    "routing_key": "abc123",
    "event_action": "trigger",
    "dedup_key": "server-cpu-high",
    "payload": {
        "summary": "CPU usage above 90%",
        "source": "prometheus",
        "severity": "critical",
    },
}
SEED_ACK = {"routing_key": "abc123", "event_action": "acknowledge", "dedup_key": "server-cpu-high"}
SEED_RESOLVE = {"routing_key": "abc123", "event_action": "resolve", "dedup_key": "server-cpu-high"}

INCIDENTS = """
query($filter: IncidentFilter) {
  incidents(filter: $filter) {
    edges { node { id incidentKey dedupKey status severity summary alertCount
      acknowledgedBy resolvedBy service { name } } }
  }
}
"""

DROPPED = "{ timeline(filter: {kinds: [INCIDENT_DROPPED]}) { edges { node { summary details"
DROPPED += " actor subject { __typename ... on Incident { id } } } } } }"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def event(template: dict[str, Any], routing_key: str, **changes: Any) -> dict[str, Any]:
    return {**template, "routing_key": routing_key, **changes}


async def incidents_of(gql: GraphQL, key: str, **flt: Any) -> list[dict[str, Any]]:
    result = await gql(INCIDENTS, key, filter=flt or None)
    assert result.errors is None, result.errors
    return [edge["node"] for edge in result.data["incidents"]["edges"]]


async def test_seed_examples_trigger_acknowledge_resolve(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = bearer(tenant.writer)

    response = await client.post(
        "/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key)
    )
    assert response.status_code == 202
    body = response.json()
    incident_key = body["incident_key"]
    assert body == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "server-cpu-high",
        "incident_key": incident_key,
    }
    assert incident_key.startswith("inc_")

    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["status"] == "TRIGGERED" and incident["severity"] == "CRITICAL"
    assert incident["summary"] == "CPU usage above 90%" and incident["alertCount"] == 1
    assert incident["service"] == {"name": "api"} and incident["incidentKey"] == incident_key

    for template, status, by in (
        (SEED_ACK, "ACKNOWLEDGED", "acknowledgedBy"),
        (SEED_RESOLVE, "RESOLVED", "resolvedBy"),
    ):
        response = await client.post(
            "/api/events", headers=headers, json=event(template, routing_key)
        )
        assert response.status_code == 202
        assert response.json() == {**body, "incident_key": incident_key}
        [incident] = await incidents_of(gql, tenant.reader)
        assert incident["status"] == status and incident[by] == "ci-pipeline"


async def test_dedup_updates_the_open_incident_and_reopens_after_resolve(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = bearer(tenant.writer)
    first = await client.post("/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key))
    again = event(
        SEED_TRIGGER,
        routing_key,
        payload={
            "summary": "CPU usage above 95%",
            "source": "prometheus",
            "severity": "warning",
            "custom_details": {"cpu": 95},
        },
    )
    second = await client.post("/api/events", headers=headers, json=again)
    assert second.json()["incident_key"] == first.json()["incident_key"]

    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["alertCount"] == 2
    assert incident["summary"] == "CPU usage above 95%" and incident["severity"] == "WARNING"

    await client.post("/api/events", headers=headers, json=event(SEED_RESOLVE, routing_key))
    reopened = await client.post(
        "/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key)
    )
    assert reopened.status_code == 202
    assert reopened.json()["incident_key"] != first.json()["incident_key"]
    statuses = [i["status"] for i in await incidents_of(gql, tenant.reader)]
    assert statuses == ["TRIGGERED", "RESOLVED"]


async def test_dedup_is_scoped_to_the_service(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    api, web = await tenant.service("api"), await tenant.service("web")
    headers = bearer(tenant.writer)
    keys = set()
    for routing_key in (api, web, api):
        response = await client.post(
            "/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key)
        )
        keys.add(response.json()["incident_key"])
    assert len(keys) == 2
    counts = {i["service"]["name"]: i["alertCount"] for i in await incidents_of(gql, tenant.reader)}
    assert counts == {"api": 2, "web": 1}


async def test_service_id_instead_of_routing_key(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    await tenant.service("api")
    services = await gql("{ services { id name } }", tenant.reader)
    service_id = services.data["services"][0]["id"]
    body = {key: value for key, value in SEED_TRIGGER.items() if key != "routing_key"}
    response = await client.post(
        "/api/events", headers=bearer(tenant.writer), json={**body, "service_id": service_id}
    )
    assert response.status_code == 202
    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["service"]["name"] == "api"


async def test_acknowledge_or_resolve_unknown_or_resolved_is_dropped_with_a_reason(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = bearer(tenant.writer)
    response = await client.post(
        "/api/events", headers=headers, json=event(SEED_ACK, routing_key, dedup_key="nothing")
    )
    assert response.status_code == 202
    assert response.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "nothing",
        "incident_key": None,
    }
    opened = await client.post(
        "/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key)
    )
    incident_key = opened.json()["incident_key"]
    for template in (SEED_ACK, SEED_ACK, SEED_RESOLVE, SEED_RESOLVE, SEED_ACK):
        response = await client.post(
            "/api/events", headers=headers, json=event(template, routing_key)
        )
        assert response.status_code == 202
        assert response.json()["dedup_key"] == "server-cpu-high"

    result = await gql(DROPPED, tenant.reader)
    dropped = [edge["node"] for edge in result.data["timeline"]["edges"]]
    reasons = [entry["details"]["reason"] for entry in reversed(dropped)]
    assert reasons == [
        "no incident has this dedup_key",
        "the incident is already acknowledged",
        "the incident is already resolved",
        "the incident is already resolved",
    ]
    assert dropped[-1]["subject"] is None
    assert dropped[0]["subject"] == {"__typename": "Incident", "id": incident_key}
    assert dropped[0]["summary"] == (
        "Dropped acknowledge for server-cpu-high: the incident is already resolved"
    )
    assert dropped[0]["actor"] == "ci-pipeline"
    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["status"] == "RESOLVED" and incident["alertCount"] == 1
