"""The ASGI application: GraphQL, the REST compatibility routes and the UI, one lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from opsgraph.bus import Bus
from opsgraph.db import close_database, open_database
from opsgraph.settings import Settings
from rest_compat import changes as rest_changes
from rest_compat.common import Endpoint, error_body
from schema import build_schema
from schema.context import Context

log = logging.getLogger(__name__)


class State(TypedDict):
    settings: Settings
    bus: Bus


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app with our context: the bearer key is checked lazily."""

    def __init__(self, schema: strawberry.Schema, *, settings: Settings, bus: Bus) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(
                seconds=settings.connection_init_timeout_seconds
            ),
        )
        self.settings = settings
        self.bus = bus

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        secret = value.strip() if scheme.lower() == "bearer" else None
        return Context(settings=self.settings, publisher=self.bus, secret=secret or None)


class BodyLimit:
    """Answer 413 in the documented shape for any HTTP body over the configured size."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The body exceeds {self.max_bytes} bytes."
        response = JSONResponse(error_body("PAYLOAD_TOO_LARGE", message), status_code=413)
        await response(scope, receive, send)


PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Opsgraph</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Opsgraph</h1>
<p>The server is running. The web UI has not been built; explore the API in
<a href="/graphql">GraphiQL</a>.</p>
</body></html>
"""


def _rest(
    endpoint: Endpoint, handler: Callable[[Endpoint, Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        return await handler(endpoint, request)

    return route


def create_app(
    settings: Settings, *, run_migrations: bool = True, manage_database: bool = True
) -> Starlette:
    """Compose the app: database and bus opened in the lifespan, routes over one schema.

    `manage_database=False` leaves opening the database to the caller (the tests do).
    """
    bus = Bus(settings.broadcast_url)
    schema = build_schema(settings)
    graphql = GraphQLApp(schema, settings=settings, bus=bus)
    endpoint = Endpoint(schema=schema, settings=settings, publisher=bus)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        if manage_database:
            await open_database(settings, run_migrations=run_migrations)
        await bus.connect()
        try:
            yield {"settings": settings, "bus": bus}
        finally:
            await bus.disconnect()
            if manage_database:
                await close_database()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/events", _rest(endpoint, rest_changes.post_events), methods=["POST"]),
        Route(
            "/v2/change/enqueue",
            _rest(endpoint, rest_changes.post_pagerduty_change),
            methods=["POST"],
        ),
        Route("/healthz", health),
    ]
    frontend = Path(settings.frontend_dir)
    if (frontend / "index.html").is_file():
        routes.append(Mount("/", StaticFiles(directory=frontend, html=True), name="ui"))
    else:

        async def placeholder(request: Request) -> Response:
            return HTMLResponse(PLACEHOLDER)

        routes.append(Route("/", placeholder))

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={500: _server_error})
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


async def _server_error(request: Request, exc: Exception) -> Response:
    """Never a stack trace: log it, answer the documented shape."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("INTERNAL", "Internal server error."), status_code=500)
