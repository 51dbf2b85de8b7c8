"""Changes: `POST /events`, `recordChange` and `POST /v2/change/enqueue`, on both databases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import GraphQL, Tenant

SEED_EVENT: dict[str, Any] = {
    "name": "Deploy complete",
    "timestamp": "2026-03-04T14:25:00Z",
    "category": "TECHNICAL",
    "source": "ci-cd",
    "environment": "prod",
    "service": "api",
    "labels": ["release", "backend"],
    "metadata": {
        "commit": "1b2c3d4",
        "pipeline": "github-actions",
        "url": "https://github.com/acme/api/actions/runs/123",
    },
}

TIMELINE = """
query($filter: TimelineFilter, $first: Int, $after: String) {
  timeline(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id kind summary service environment labels actor occurredAt
      subject { __typename ... on Change { id name category source metadata
        links { href text } } } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def timeline_of(gql: GraphQL, key: str, **variables: Any) -> list[dict[str, Any]]:
    result = await gql(TIMELINE, key, **variables)
    assert result.errors is None, result.errors
    return [edge["node"] for edge in result.data["timeline"]["edges"]]


async def test_seed_event_is_stored_and_shows_on_the_timeline(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    response = await client.post("/events", headers=bearer(tenant.writer), json=SEED_EVENT)
    assert response.status_code == 201
    change_id = response.json()["id"]
    assert change_id.startswith("chg_")

    [entry] = await timeline_of(gql, tenant.reader)
    assert entry["kind"] == "CHANGE"
    assert entry["summary"] == "Deploy complete"
    assert entry["service"] == "api" and entry["environment"] == "prod"
    assert entry["labels"] == ["release", "backend"]
    assert entry["actor"] == "ci-pipeline"
    assert entry["occurredAt"] == "2026-03-04T14:25:00Z"
    assert entry["subject"] == {
        "__typename": "Change",
        "id": change_id,
        "name": "Deploy complete",
        "category": "TECHNICAL",
        "source": "ci-cd",
        "metadata": SEED_EVENT["metadata"],
        "links": [],
    }


async def test_a_blank_service_or_environment_is_left_out(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """A pipeline's unset variable sends "": it was stored as a service named "" (or " "),
    which no filter picks; the incident endpoints already read it as left out."""
    body = {**SEED_EVENT, "service": "", "environment": "  "}
    response = await client.post("/events", headers=bearer(tenant.writer), json=body)
    assert response.status_code == 201, response.text
    [entry] = await timeline_of(gql, tenant.reader)
    assert (entry["service"], entry["environment"]) == (None, None)
    body = {**SEED_EVENT, "service": " api ", "environment": "prod\n"}  # as a template pads it
    response = await client.post("/events", headers=bearer(tenant.writer), json=body)
    assert response.status_code == 201, response.text
    entry = (await timeline_of(gql, tenant.reader))[0]
    assert (entry["service"], entry["environment"]) == ("api", "prod")


async def test_missing_fields_are_each_named(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    response = await client.post("/events", headers=bearer(tenant.writer), json={"service": "x"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "INVALID_EVENT"
    for field in ("name", "timestamp", "category", "source"):
        assert f"{field}: is required" in body["error"]["message"]
    assert await timeline_of(gql, tenant.reader) == []


async def test_bad_category_lists_the_valid_values(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    event = {**SEED_EVENT, "category": "DEPLOY"}
    response = await client.post("/events", headers=bearer(tenant.writer), json=event)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "category: must be one of BUSINESS, TECHNICAL, PROVIDER" in message


async def test_timestamps_without_a_zone_or_malformed_are_rejected(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    for bad in ("2026-03-04T14:25:00", "2026-03-04", "yesterday", "2026-13-04T14:25:00Z", 17):
        event = {**SEED_EVENT, "timestamp": bad}
        response = await client.post("/events", headers=bearer(tenant.writer), json=event)
        assert response.status_code == 400, bad
        assert "timestamp:" in response.json()["error"]["message"]
    assert await timeline_of(gql, tenant.reader) == []


async def test_offsets_are_normalised_to_utc(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    event = {**SEED_EVENT, "timestamp": "2026-03-04T16:25:00.123456+02:00"}
    response = await client.post("/events", headers=bearer(tenant.writer), json=event)
    assert response.status_code == 201
    [entry] = await timeline_of(gql, tenant.reader)
    assert entry["occurredAt"] == "2026-03-04T14:25:00.123456Z"


async def test_wrong_types_and_limits_are_named(client: httpx.AsyncClient, tenant: Tenant) -> None:
    event = {**SEED_EVENT, "labels": "release", "metadata": [1], "name": "x" * 5000}
    response = await client.post("/events", headers=bearer(tenant.writer), json=event)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "labels: must be a list of strings" in message
    assert "metadata: must be a JSON object" in message
    assert "name: must be at most 1024 characters" in message


async def test_a_label_given_twice_is_kept_once(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """The change and its timeline entry hold the same labels (the change kept the repeat,
    the entry did not); labels differing in case are two labels. A label is kept without
    the spaces around it, as a service is: `" release"` was a label no filter found."""
    event = {**SEED_EVENT, "labels": ["release", " release", "release\n", "Release"]}
    response = await client.post("/events", headers=bearer(tenant.writer), json=event)
    assert response.status_code == 201
    query = "{ timeline { edges { node { labels subject { ... on Change { labels } } } } } }"
    [edge] = (await gql(query, tenant.reader)).data["timeline"]["edges"]
    assert edge["node"]["labels"] == edge["node"]["subject"]["labels"] == ["release", "Release"]


async def test_a_nul_in_a_label_is_named_as_such(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    event = {**SEED_EVENT, "labels": ["ok", "a\u0000b"]}
    response = await client.post("/events", headers=bearer(tenant.writer), json=event)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid event: labels: each item must not contain NUL characters."
    )
    assert await timeline_of(gql, tenant.reader) == []


async def test_auth_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post("/events", json=SEED_EVENT)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"

    response = await client.post("/events", headers=bearer("og_not-a-real-key"), json=SEED_EVENT)
    assert response.status_code == 401

    response = await client.post("/events", headers=bearer(tenant.reader), json=SEED_EVENT)
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "FORBIDDEN", "message": "This API key lacks the 'events:write' scope."}
    }


async def test_bad_bodies(client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL) -> None:
    headers = bearer(tenant.writer)
    cases = [
        (b"{not json", 400, "INVALID_EVENT"),
        (b"[1, 2]", 400, "INVALID_EVENT"),
        (b"\xff\xfe", 400, "INVALID_EVENT"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "INVALID_EVENT"),
        (json.dumps({**SEED_EVENT, "metadata": {"x": "y" * 600_000}}).encode(), 413, None),
    ]
    for body, status, code in cases:
        response = await client.post("/events", headers=headers, content=body)
        assert response.status_code == status, body[:20]
        error = response.json()["error"]
        assert error["code"] == (code or "PAYLOAD_TOO_LARGE")
        assert "Traceback" not in response.text

    form = {"Authorization": f"Bearer {tenant.writer}", "Content-Type": "text/plain"}
    response = await client.post("/events", headers=form, content=json.dumps(SEED_EVENT))
    assert response.status_code == 415
    assert await timeline_of(gql, tenant.reader) == []


async def test_nul_bytes_are_rejected_not_stored(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    for event in ({**SEED_EVENT, "name": "a\u0000b"}, {**SEED_EVENT, "metadata": {"k": "\u0000"}}):
        response = await client.post("/events", headers=bearer(tenant.writer), json=event)
        assert response.status_code == 400
        assert "NUL" in response.json()["error"]["message"]
    assert await timeline_of(gql, tenant.reader) == []


RECORD = """
mutation($input: ChangeInput!) {
  recordChange(input: $input) {
    __typename
    ... on ChangeRecorded { change { id name links { href text } } }
    ... on InvalidEvent { code message fields { field message } }
  }
}
"""


async def test_record_change_mutation_shares_the_rules(gql: GraphQL, tenant: Tenant) -> None:
    event = {**SEED_EVENT, "labels": ["ok", " "], "links": [{"href": "https://x", "text": "run"}]}
    result = await gql(RECORD, tenant.writer, input=event)
    assert result.errors is None
    outcome = result.data["recordChange"]
    assert outcome["__typename"] == "InvalidEvent"
    assert outcome["code"] == "INVALID_EVENT"
    assert [f["field"] for f in outcome["fields"]] == ["labels"]

    event["labels"] = ["ok"]
    result = await gql(RECORD, tenant.writer, input=event)
    outcome = result.data["recordChange"]
    assert outcome["__typename"] == "ChangeRecorded"
    assert outcome["change"]["links"] == [{"href": "https://x", "text": "run"}]

    result = await gql(RECORD, tenant.writer, input={**SEED_EVENT, "timestamp": "2026-03-04"})
    assert result.errors and "time zone" in result.errors[0].message

    result = await gql(RECORD, tenant.reader, input=SEED_EVENT)
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}


PD_CHANGE = {
    "payload": {
        "summary": "Build Success - Increase snapshot create timeout to 30 seconds",
        "timestamp": "2026-03-04T14:25:00.000+0000",
        "source": "acme-build-server-2",
        "custom_details": {"build_state": "passed", "build_number": "2", "run_time": "1236s"},
    },
    "links": [{"href": "https://acme.pagerduty.dev/build/2", "text": "View more details"}],
}


async def test_pagerduty_change_events(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("checkout")
    response = await client.post(
        "/v2/change/enqueue", json={**PD_CHANGE, "routing_key": routing_key}
    )
    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Change event processed"}

    [entry] = await timeline_of(gql, tenant.reader)
    assert entry["summary"] == PD_CHANGE["payload"]["summary"]
    assert entry["service"] == "checkout"
    assert entry["actor"] == "service:checkout"
    assert entry["subject"]["source"] == "acme-build-server-2"
    assert entry["subject"]["metadata"] == PD_CHANGE["payload"]["custom_details"]
    assert entry["subject"]["links"] == PD_CHANGE["links"]

    response = await client.post("/v2/change/enqueue", json={**PD_CHANGE, "routing_key": "nope"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == {"code": "INVALID_ROUTING_KEY", "message": "Routing key not found"}
    assert body["status"] == "invalid event" and body["errors"] == ["Routing key not found"]

    no_summary = {"routing_key": routing_key, "payload": {"source": "x"}}
    response = await client.post("/v2/change/enqueue", json=no_summary)
    assert response.status_code == 400
    assert response.json()["errors"] == ["payload.summary: is required"]
    for payload in ([1, 2], "a summary"):  # as `/api/events` says it
        response = await client.post(
            "/v2/change/enqueue", json={"routing_key": routing_key, "payload": payload}
        )
        assert response.status_code == 400
        assert response.json()["errors"] == ["payload: must be an object"]
    assert len(await timeline_of(gql, tenant.reader)) == 1


@pytest.mark.parametrize(
    ("routing_key", "error"),
    [(None, "routing_key: is required"), (123, "routing_key: must be a string")],
)
async def test_a_pagerduty_change_without_a_routing_key_string_names_the_field(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL, routing_key: Any, error: str
) -> None:
    """As `/v2/enqueue` answers the same body: 400 INVALID_EVENT naming `routing_key`."""
    body = {key: value for key, value in PD_CHANGE.items() if key != "routing_key"}
    if routing_key is not None:
        body["routing_key"] = routing_key
    response = await client.post("/v2/change/enqueue", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_EVENT"
    assert response.json()["errors"] == [error]
    assert await timeline_of(gql, tenant.reader) == []


async def test_a_service_with_the_longest_name_can_send_changes(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """The actor "service:NAME" is cut to fit the actor columns, as for incident events."""
    routing_key = await tenant.service("s" * 200)
    response = await client.post(
        "/v2/change/enqueue", json={**PD_CHANGE, "routing_key": routing_key}
    )
    assert response.status_code == 202, response.text
    [entry] = await timeline_of(gql, tenant.reader)
    assert entry["actor"].startswith("service:sss") and len(entry["actor"]) == 200
