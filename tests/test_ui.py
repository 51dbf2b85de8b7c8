"""Serving the built UI: its files, and index.html for its deep links, never over the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from opsgraph.app import create_app
from opsgraph.settings import Settings
from opsgraph.ui import is_ui_route
from tests.conftest import with_settings

INDEX = "<!doctype html><title>Opsgraph</title><div id=root></div>"


@pytest.fixture
async def ui_client(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-abc123.js").write_text("console.log('ui')")
    app = create_app(with_settings(settings, frontend_dir=str(dist)), manage_database=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", True),
        ("/approvals", True),
        ("/incidents/inc_01", True),
        ("/runs/run_1/", True),
        ("/graphql", False),
        ("/events", False),
        ("/api/events", False),
        ("/v1/approvals/ap_1", False),
        ("/v2/enqueue", False),
        ("/healthz", False),
        ("/assets/index-x.js", False),
        ("/favicon.ico", False),
    ],
)
def test_which_paths_the_ui_answers(path: str, expected: bool) -> None:
    assert is_ui_route(path) is expected


async def test_deep_links_get_the_app_and_assets_are_cached(
    ui_client: httpx.AsyncClient,
) -> None:
    for path in ("/", "/timeline?kind=CHANGE", "/approvals?focus=ap_123", "/incidents/inc_9"):
        response = await ui_client.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX, path
        assert response.headers["cache-control"] == "no-cache", path

    asset = await ui_client.get("/assets/index-abc123.js")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]

    assert (await ui_client.get("/assets/index-gone.js")).status_code == 404
    assert (await ui_client.get("/favicon.ico")).status_code == 404


@pytest.mark.parametrize("path", ["/readyz", "/ready", "/incidents/inc_1/alerts", "/timelines"])
async def test_a_path_the_app_has_no_page_for_is_its_no_such_page_with_404(
    ui_client: httpx.AsyncClient, path: str
) -> None:
    """The app says "No such page" there; the status says so too, so that a probe of a
    mistyped path fails instead of passing on the app's 200."""
    response = await ui_client.get(path)
    assert response.status_code == 404
    assert response.text == INDEX
    # A browser reloading it asks whether its copy is still good: the app comes whole.
    etag = (await ui_client.get("/timeline")).headers["etag"]
    again = await ui_client.get(path, headers={"if-none-match": etag})
    assert (again.status_code, again.text) == (404, INDEX)


async def test_a_page_in_another_case_is_the_app_s_page(ui_client: httpx.AsyncClient) -> None:
    """The app's router matches `/Incidents` as `/incidents`."""
    assert (await ui_client.get("/Incidents")).status_code == 200


async def test_api_paths_are_not_swallowed_by_the_ui(ui_client: httpx.AsyncClient) -> None:
    missing = await ui_client.get("/v1/no-such-endpoint")
    assert missing.status_code == 404
    assert INDEX not in missing.text
    assert (await ui_client.get("/api/nothing-here")).status_code == 404

    health = await ui_client.get("/healthz")
    assert health.json() == {"status": "ok", "database": "ok", "bus": "ok"}

    graphql = await ui_client.post("/graphql", json={"query": "{ __typename }"})
    assert graphql.json() == {"data": {"__typename": "Query"}}

    unauthenticated = await ui_client.post(
        "/events", json={"name": "x", "timestamp": "2026-03-04T14:25:00Z"}
    )
    assert unauthenticated.status_code == 401


@pytest.mark.parametrize("path", ["/events", "/v1/events", "/api/events", "/v2/enqueue"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_another_method_on_a_post_endpoint_is_405_not_the_ui(
    ui_client: httpx.AsyncClient, path: str, method: str
) -> None:
    response = await ui_client.request(method, path)
    assert response.status_code == 405, (method, path)
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("path", ["/events/", "/v2/nothing", "/api/v2/events", "/v1/event"])
async def test_a_post_to_no_endpoint_is_404_not_the_ui_s_405(
    ui_client: httpx.AsyncClient, path: str
) -> None:
    """A pipeline posting to a mistyped URL hears that there is no such endpoint."""
    response = await ui_client.post(path, json={})
    assert response.status_code == 404, path
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_the_ui_may_not_be_framed_and_runs_only_its_own_files(
    ui_client: httpx.AsyncClient,
) -> None:
    """The UI's pages and files forbid framing (a hidden "Approve" click) and any script,
    style or connection but the server's own; GraphiQL, which loads from unpkg, is not
    framed either."""
    for path in ("/", "/approvals?focus=ap_1", "/assets/index-abc123.js"):
        response = await ui_client.get(path)
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        policy = dict(
            part.strip().split(" ", 1)
            for part in response.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'self'", path
        assert policy["frame-ancestors"] == "'none'", path
        assert "script-src" not in policy and "connect-src" not in policy, path  # 'self'
    ide = await ui_client.get("/graphql", headers={"Accept": "text/html"})
    assert "graphiql" in ide.text.lower()
    assert ide.headers["x-frame-options"] == "DENY"
    assert ide.headers["content-security-policy"] == "frame-ancestors 'none'"
