"""Serving the built web UI: static files, and index.html for the UI's own deep links."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# First path segments that belong to the API: a miss there stays a 404, never the UI.
API_PREFIXES = frozenset({"graphql", "events", "api", "v1", "v2", "healthz", "openapi.json"})
# Hashed build output: a missing chunk must 404 rather than come back as HTML.
ASSETS = "assets"

# Sent with every page of ours (the UI and its files, GraphiQL): no other site may frame
# them (a click on "Approve" in a hidden frame), and no file is read as another type.
NOT_FRAMED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # an incident's link is not told the page it was on
}
# The UI's own files alone may run and style it, and it talks only to its own server
# (GraphQL over HTTP and WebSocket: CSP 3's 'self' takes ws: and wss: of the same host);
# its icon is a data: URL. A script injected into a page could then send nothing away.
UI_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
UI_HEADERS = {**NOT_FRAMED, "content-security-policy": UI_POLICY}
# Our pages with inline content: GraphiQL (its scripts and styles from unpkg.com, and an
# inline script) and the placeholder shown when the UI is not built.
PAGE_HEADERS = {**NOT_FRAMED, "content-security-policy": "frame-ancestors 'none'"}


def is_ui_route(path: str) -> bool:
    """True for paths the browser app routes itself, like /approvals or /incidents/inc_1."""
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        return True
    if segments[0] in API_PREFIXES or segments[0] == ASSETS:
        return False
    return "." not in segments[-1]


# The pages the app has (frontend/src/App.tsx's routes): any other path it routes itself
# gets the app, which says "No such page", with 404, so that a probe of a mistyped path
# (`/readyz`) fails instead of passing on the app's 200.
APP_PAGES = re.compile(  # the app's router matches paths in any case
    r"/(timeline|incidents|runs|approvals|policies)?/?|/(incidents|runs)/[^/]+/?", re.IGNORECASE
)


def is_app_page(path: str) -> bool:
    return APP_PAGES.fullmatch(path) is not None


class SpaStaticFiles(StaticFiles):
    """StaticFiles that answers index.html for UI routes it has no file for (SPA fallback).

    index.html is never cached (it names the current build's assets); the hashed assets are
    cached for good.
    """

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if not is_ui_route(scope["path"]):
                # No such endpoint, whatever the method (`POST /events/` is a typo for a
                # pipeline to fix, not a method to change).
                raise HTTPException(404) from None
            if exc.status_code != 404 or scope["method"] not in ("GET", "HEAD"):
                raise
            if is_app_page(scope["path"]):
                response = await super().get_response("index.html", scope)
            else:  # the app, whole, whatever the request's conditions (a 304 has no body)
                index = Path(str(self.directory), "index.html")
                response = FileResponse(index, status_code=404, media_type="text/html")
        if path.startswith(ASSETS + "/") and response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        else:
            response.headers.setdefault("cache-control", "no-cache")
        response.headers.update(UI_HEADERS)
        return response
