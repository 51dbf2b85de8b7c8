"""Incident event errors, in the seed's shape with PagerDuty's beside it: INVALID_EVENT
naming each field, INVALID_ROUTING_KEY, 401/403, 413 and bad JSON, on both databases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from resolvers.auth import Scope
from tests.conftest import GraphQL, Tenant
from tests.test_incidents import SEED_ACK, SEED_RESOLVE, SEED_TRIGGER, bearer, event, incidents_of


async def test_invalid_events_name_each_bad_field(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = bearer(tenant.writer)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (
            event(SEED_TRIGGER, routing_key, event_action="page"),
            ["event_action: must be one of trigger, acknowledge, resolve; got 'page'"],
        ),
        (
            event(
                SEED_TRIGGER, routing_key, payload={**SEED_TRIGGER["payload"], "severity": "high"}
            ),
            ["payload.severity: must be one of critical, error, warning, info; got 'high'"],
        ),
        (
            event(SEED_TRIGGER, routing_key, payload={"severity": "info"}),
            ["payload.summary: is required", "payload.source: is required"],
        ),
        (
            event(
                SEED_TRIGGER,
                routing_key,
                payload={**SEED_TRIGGER["payload"], "summary": "x" * 1025},
            ),
            ["payload.summary: must be at most 1024 characters"],
        ),
        (
            event(SEED_ACK, routing_key, dedup_key="k" * 256),
            ["dedup_key: must be at most 255 characters"],
        ),
        (
            {"event_action": "trigger"},
            [
                "routing_key: is required (or service_id)",
                "dedup_key: is required",
                "payload: is required",
            ],
        ),
    ]
    for body, errors in cases:
        response = await client.post("/api/events", headers=headers, json=body)
        assert response.status_code == 400, body
        answer = response.json()
        assert answer["error"]["code"] == "INVALID_EVENT"
        assert answer["error"]["message"] == "Invalid event: " + "; ".join(errors) + "."
        assert answer["status"] == "invalid event"
        assert answer["message"] == "Event object is invalid"
        assert answer["errors"] == errors
    summary_ok = event(
        SEED_TRIGGER, routing_key, payload={**SEED_TRIGGER["payload"], "summary": "x" * 1024}
    )
    assert (await client.post("/api/events", headers=headers, json=summary_ok)).status_code == 202
    assert len(await incidents_of(gql, tenant.reader)) == 1


async def test_a_malformed_acknowledge_or_resolve_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """An acknowledge or resolve needs no payload, but a malformed one is bad input: a 400
    naming the field, and the incident stays as it was; a well-formed payload is accepted."""
    routing_key = await tenant.service("api")
    headers = bearer(tenant.writer)
    trigger = event(SEED_TRIGGER, routing_key)
    assert (await client.post("/api/events", headers=headers, json=trigger)).status_code == 202
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"payload": "nope"}, ["payload: must be an object"]),
        ({"payload": []}, ["payload: must be an object"]),
        (
            {"payload": {"severity": "bogus"}},
            ["payload.severity: must be one of critical, error, warning, info; got 'bogus'"],
        ),
        ({"payload": {"summary": 5}}, ["payload.summary: must be a string"]),
        ({"links": "x"}, ["links: must be a list of at most 50 links"]),
        ({"client": 5}, ["client: must be a string"]),
    ]
    for template in (SEED_ACK, SEED_RESOLVE):
        for changes, errors in cases:
            body = event(template, routing_key, **changes)
            response = await client.post("/api/events", headers=headers, json=body)
            assert response.status_code == 400, body
            assert response.json()["errors"] == errors, body
            [incident] = await incidents_of(gql, tenant.reader)
            assert incident["status"] == "TRIGGERED" and incident["acknowledgedBy"] is None

    # A well-formed payload is accepted and changes nothing of the incident; so is an empty
    # string, as absent (a sender's template that renders nothing on a resolve).
    acknowledge = event(SEED_ACK, routing_key, payload={"summary": "looking", "severity": ""})
    assert (await client.post("/api/events", headers=headers, json=acknowledge)).status_code == 202
    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["status"] == "ACKNOWLEDGED" and incident["summary"] == "CPU usage above 90%"
    resolve = event(  # Alertmanager sends its resolves with the whole alert
        SEED_RESOLVE,
        routing_key,
        payload={**SEED_TRIGGER["payload"], "severity": "info", "custom_details": {"n": 1}},
        client="Alertmanager",
        client_url="https://alertmanager.example.com",
        links=[{"href": "https://runbooks.example.com/cpu", "text": "runbook"}],
        images=[],
    )
    assert (await client.post("/api/events", headers=headers, json=resolve)).status_code == 202
    [incident] = await incidents_of(gql, tenant.reader)
    assert incident["status"] == "RESOLVED" and incident["severity"] == "CRITICAL"


async def test_unknown_routing_key_or_service(
    client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any, gql: GraphQL
) -> None:
    other = await make_tenant()
    foreign_key = await other.service("api")
    headers = bearer(tenant.writer)
    for routing_key in ("abc123", foreign_key):
        response = await client.post(
            "/api/events", headers=headers, json=event(SEED_TRIGGER, routing_key)
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": {"code": "INVALID_ROUTING_KEY", "message": "Routing key not found"},
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Routing key not found"],
        }
    body = {key: value for key, value in SEED_TRIGGER.items() if key != "routing_key"}
    response = await client.post(
        "/api/events", headers=headers, json={**body, "service_id": "svc_x"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_ROUTING_KEY",
        "message": "Service not found",
    }
    # Both given, each valid, naming two services: neither is guessed.
    api = await tenant.service("api")
    [service] = (await gql("{ services { id name } }", tenant.reader)).data["services"]
    checkout = await tenant.service("checkout")
    response = await client.post(
        "/api/events",
        headers=headers,
        json={**event(SEED_TRIGGER, checkout), "service_id": service["id"]},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_ROUTING_KEY",
        "message": "The routing key and service_id name different services",
    }
    both = {**event(SEED_TRIGGER, api), "service_id": service["id"]}
    assert (await client.post("/api/events", headers=headers, json=both)).status_code == 202
    [opened] = await incidents_of(gql, tenant.reader)
    assert opened["service"]["name"] == "api"
    assert await incidents_of(gql, other.reader) == []


async def test_no_service_is_found_for_another_workspaces_pair(
    client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any, gql: GraphQL
) -> None:
    other = await make_tenant()
    foreign_key = await other.service("api")
    await tenant.service("api")
    [mine] = (await gql("{ services { id } }", tenant.reader)).data["services"]
    response = await client.post(
        "/api/events",
        headers=bearer(tenant.writer),
        json={**event(SEED_TRIGGER, foreign_key), "service_id": mine["id"]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Routing key not found"
    assert await incidents_of(gql, tenant.reader) == []
    assert await incidents_of(gql, other.reader) == []


async def test_auth_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    routing_key = await tenant.service("api")
    body = event(SEED_TRIGGER, routing_key)
    response = await client.post("/api/events", json=body)
    assert response.status_code == 401
    answer = response.json()
    assert answer["error"]["code"] == "UNAUTHENTICATED"
    assert answer["status"] == "error" and answer["errors"] == [answer["error"]["message"]]

    response = await client.post("/api/events", headers=bearer("og_nope"), json=body)
    assert response.status_code == 401
    response = await client.post("/api/events", headers=bearer(tenant.reader), json=body)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "FORBIDDEN",
        "message": "This API key lacks the 'events:write' scope.",
    }
    admin = await tenant.key(Scope.ADMIN)
    assert (await client.post("/api/events", headers=bearer(admin), json=body)).status_code == 202


async def test_bodies_over_512_kb_are_413_in_both_shapes(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    big = event(SEED_TRIGGER, routing_key)
    big["payload"] = {**big["payload"], "custom_details": {"x": "y" * (512 * 1024)}}
    for path, headers in (("/api/events", bearer(tenant.writer)), ("/v2/enqueue", {})):
        response = await client.post(path, headers=headers, content=json.dumps(big))
        assert response.status_code == 413
        answer = response.json()
        message = "The body exceeds 524288 bytes."
        assert answer == {
            "error": {"code": "PAYLOAD_TOO_LARGE", "message": message},
            "status": "error",
            "message": message,
            "errors": [message],
        }
    assert await incidents_of(gql, tenant.reader) == []


@pytest.mark.parametrize("path", ["/api/events", "/v2/enqueue"])
async def test_a_wrong_method_is_405_in_both_shapes(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    message = "Method Not Allowed"
    assert response.json() == {
        "error": {"code": "METHOD_NOT_ALLOWED", "message": message},
        "status": "error",
        "message": message,
        "errors": [message],
    }


async def test_bad_json_bodies(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path in ("/api/events", "/v2/enqueue"):
        response = await client.post(path, headers=bearer(tenant.writer), content=b"{nope")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "INVALID_EVENT"
        assert response.json()["status"] == "invalid event"


async def test_overlong_ids_are_unknown_not_server_errors(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    body = {"service_id": "0" * 65, "event_action": "acknowledge", "dedup_key": "x"}
    response = await client.post("/api/events", headers=bearer(tenant.writer), json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ROUTING_KEY"
    result = await gql("query($id: ID!) { incident(id: $id) { id } }", tenant.reader, id="0" * 65)
    assert result.errors is None and result.data == {"incident": None}
    ack = "mutation($id: ID!) { acknowledgeIncident(id: $id) { id } }"
    result = await gql(ack, tenant.writer, id="0" * 65)
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}
