"""`/openapi.json` describes every REST endpoint the app serves, with the limits in force;
the endpoints answer in the documented shapes, behind a root path too."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from opsgraph.app import create_app
from opsgraph.settings import Settings
from resolvers import auth
from resolvers.auth import Scope
from rest_compat import common
from rest_compat.openapi import openapi_document
from tests.conftest import Tenant
from tests.test_changes import SEED_EVENT, bearer

# Not REST: GraphQL has its own schema, the UI and this document are not endpoints.
NOT_REST = {"/graphql", "/", "/openapi.json"}


def rest_routes(app: Starlette) -> set[tuple[str, str]]:
    routes = set()
    for route in app.routes:
        # Left out of the schema: the routes answering 405 to other methods.
        if isinstance(route, Route) and route.include_in_schema and route.path not in NOT_REST:
            for method in route.methods or ():
                if method != "HEAD":
                    routes.add((route.path, method.lower()))
    return routes


def test_every_rest_route_is_described() -> None:
    app = create_app(Settings(frontend_dir="/nonexistent"), manage_database=False)
    document = openapi_document(Settings())
    described = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert rest_routes(app) == described


def test_the_document_is_valid_and_every_operation_loads() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document(Settings()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /events",
        "POST /v2/change/enqueue",
        "POST /api/events",
        "POST /v2/enqueue",
        "POST /v1/events",
        "GET /v1/approvals/{approval_id}",
    }


def test_limits_and_errors_follow_the_settings() -> None:
    document = openapi_document(Settings(max_name_length=77, max_labels=5))
    change = document["components"]["schemas"]["ChangeEvent"]
    assert change["properties"]["name"]["maxLength"] == 77
    assert change["properties"]["labels"]["maxItems"] == 5
    assert change["required"] == ["name", "timestamp", "category", "source"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/healthz":
                continue
            responses = operation["responses"]
            assert "429" in responses and "Retry-After" in responses["429"]["headers"], path
            errors = [code for code in responses if code.startswith(("4", "5"))]
            pagerduty = path in ("/api/events", "/v2/enqueue", "/v2/change/enqueue")
            shape = "PagerDutyError" if pagerduty else "Error"
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{shape}"}, (path, method, code)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["apiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (agent events).",
    }


async def test_served_at_openapi_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body = response.json()
    assert body["openapi"].startswith("3.")
    assert "/events" in body["paths"]
    # Unknown paths and methods answer in the documented error shape too.
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await client.delete("/events")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in wrong.headers["allow"]


@pytest.mark.parametrize("path", ["/events", "/v1/events", "/api/events", "/v2/enqueue"])
async def test_an_unexpected_failure_is_answered_in_the_documented_shape(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    """The posted endpoints are answered ahead of Starlette's router (`RestPosts`): a
    failure nothing expected still gets the 500 of every other route, and is logged."""

    async def broken(**_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(common, "authenticate", broken)
    monkeypatch.setattr(auth, "service_for_routing_key", broken)
    headers = {"Authorization": "Bearer og_x", "X-API-Key": "og_x"}
    response = await client.post(path, headers=headers, json={"routing_key": "r" * 32})

    assert response.status_code == 500
    assert response.json()["error"] == {"code": "INTERNAL", "message": "Internal server error."}
    assert "disk on fire" not in response.text
    assert any("disk on fire" in str(record.exc_info) for record in caplog.records)


async def test_behind_a_root_path_each_post_reaches_its_own_endpoint(
    app: Starlette, tenant: Tenant
) -> None:
    """Served under `/api` (`--root-path /api`), `POST /api/events` is `POST /events`,
    recording a change, not the incident endpoint its full path spells."""
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/api/events", headers=bearer(tenant.writer), json=SEED_EVENT)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    assert response.json()["id"].startswith("chg_")


async def test_the_approval_endpoint_s_errors_are_described_as_answered(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Its 400 is `INVALID_REQUEST` (the document said `INVALID_EVENT` or
    `INVALID_ROUTING_KEY`), and its 403 is about either of two scopes."""
    document = openapi_document(Settings())
    responses = document["paths"]["/v1/approvals/{approval_id}"]["get"]["responses"]
    answered = await client.get(
        "/v1/approvals/ap_x?wait=soon", headers={"X-API-Key": tenant.reader}
    )
    assert answered.status_code == 400
    assert f"`{answered.json()['error']['code']}`" in responses["400"]["description"]
    decider = await tenant.key(Scope.APPROVALS_DECIDE)
    refused = await client.get("/v1/approvals/ap_x", headers={"X-API-Key": decider})
    assert refused.status_code == 403
    assert "`read` nor `events:write`" in responses["403"]["description"]
