"""The ASGI application: GraphQL, the REST compatibility routes and the UI, one lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict, cast

import strawberry
from cross_web import AsyncHTTPRequestAdapter
from cross_web import HTTPException as CrossWebHTTPException
from graphql import DocumentNode, GraphQLError, GraphQLFormattedError
from graphql import parse as graphql_parse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType
from strawberry.utils.operation import get_operation_type
from tortoise import connections

from opsgraph.bus import Bus
from opsgraph.db import close_database, database_unavailable, open_database
from opsgraph.ratelimit import Limiter, RateLimit, bucket_name, make_limiter, refusal
from opsgraph.restlane import RestLane, body_then
from opsgraph.settings import Settings
from opsgraph.ui import PAGE_HEADERS, SpaStaticFiles
from opsgraph.wsprotocols import ASGIConnection, LegacyWSHandler, TransportWSHandler
from opsgraph.wsserver import GRAPHQL_PATH
from resolvers import approvals as approval_resolvers
from resolvers import changes as change_resolvers
from resolvers.auth import (
    KEY_LOOKUP,
    ROUTING_KEY_LOOKUP,
    authenticate,
    recheck_live_keys_forever,
)
from resolvers.auth import Scope as ScopeName
from resolvers.errors import AuthError
from rest_compat import agents as rest_agents
from rest_compat import changes as rest_changes
from rest_compat import incidents as rest_incidents
from rest_compat.arrivals import ArrivalOrder, Line
from rest_compat.common import (
    BEARER_CHALLENGE,
    PAGERDUTY_PATHS,
    SEND_JSON,
    Endpoint,
    error_body,
    json_media,
    pagerduty_error_body,
    strict_json,
    unreadable_body,
)
from rest_compat.openapi import openapi_route
from schema import build_schema
from schema.context import Context
from schema.live_render import (
    ASGI_SEND,
    Renderers,
    SharedReads,
)

log = logging.getLogger(__name__)


class State(TypedDict):
    settings: Settings
    bus: Bus


# Where a GraphQL request's key, checked before its body was parsed, waits for its context.
PRINCIPAL = "opsgraph.principal"

# The error codes of requests refused before any endpoint or GraphQL ran.
HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _request_refused(exc: CrossWebHTTPException) -> JSONResponse:
    """An HTTP request Strawberry refused before any GraphQL ran (a body that is not JSON,
    another content type, another method), in the documented error shape beside GraphQL's
    `errors` (as a 429 is), with what was wrong with the JSON (its depth, say) where it
    said only that it could not parse it; a content type other than JSON is a 415, as on
    the REST endpoints."""
    status, message = exc.status_code, exc.reason
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError) and cause.msg:
        message = f"{message}: {cause.msg}"
    if message == "Unsupported content type":
        status, message = 415, SEND_JSON
    code = HTTP_ERROR_CODES.get(status, "HTTP_ERROR")
    body = error_body(code, message)
    body["errors"] = [{"message": message, "extensions": {"code": code}}]
    return JSONResponse(body, status_code=status)


def _bearer(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, secret = value.strip().partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


SUBSCRIPTIONS_OVER_WEBSOCKET = (
    "Subscriptions are served over WebSocket at /graphql (graphql-transport-ws, or the "
    "legacy graphql-ws), not over HTTP."
)


_SUBSCRIPTION = re.compile(r"\bsubscription\b")


def _subscribes(
    data: GraphQLRequestData, *, parse: Callable[..., DocumentNode], max_tokens: int
) -> bool:
    """Whether the request's operation is a subscription. Parsed only when the text holds
    the word `subscription` (not introspection's `subscriptionType`), with the schema's
    cached parse and its options, so the execution that follows parses nothing again; a
    document that does not parse is left to Strawberry."""
    query = data.query
    if not isinstance(query, str) or not _SUBSCRIPTION.search(query):
        return False
    try:
        document = parse(query, max_tokens=max_tokens)
        return get_operation_type(document, data.operation_name) is OperationType.SUBSCRIPTION
    except (GraphQLError, RuntimeError):  # no such operation: Strawberry says so
        return False


class _SentAsJson:
    """A request adapter whose body is JSON by its Content-Type, told to Strawberry in the
    spelling it understands."""

    content_type = "application/json"

    def __init__(self, request: AsyncHTTPRequestAdapter) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app with our context: the bearer key is checked lazily over HTTP,
    and in `connection_init` over WebSocket (no `read` scope, no connection)."""

    graphql_ws_handler_class = LegacyWSHandler
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = ASGIConnection

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        settings: Settings,
        bus: Bus,
        limiter: Limiter | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(
                seconds=settings.connection_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self.settings = settings
        self.bus = bus
        self.limiter = limiter  # the HTTP requests' (`RateLimit`): one bucket per key
        self.renderers = Renderers(memo_size=settings.subscriber_queue_size)
        self.shared_reads = SharedReads(size=settings.subscriber_queue_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self._keyless_body_refused(request) or await self.run(request)
        except CrossWebHTTPException as exc:  # Strawberry's own refusal of the request
            response = _request_refused(exc)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self.graphql_ide_html, headers=PAGE_HEADERS)

    async def _keyless_body_refused(self, request: Request) -> Response | None:
        """A 401 for a body over `graphql_keyless_max_body_bytes` without a valid key, before
        it is parsed: with no key only `__typename` and introspection answer, and parsing
        up to `max_body_bytes` of JSON and GraphQL (about a tenth of a second of CPU for
        300 KB) was free to anyone. A bigger body's key is checked first, and its principal
        goes to the operation's context (no second look-up)."""
        most = self.settings.graphql_keyless_max_body_bytes
        if request.method != "POST" or len(await request.body()) <= most:  # read, and kept
            return None
        try:
            principal = await authenticate(secret=_bearer(request.headers.get("authorization")))
        except AuthError as exc:
            message = f"{exc.message} A body over {most} bytes needs one."
            body = error_body(exc.code, message)
            body["errors"] = [{"message": message, "extensions": {"code": exc.code}}]
            return JSONResponse(
                body, status_code=401, headers={"WWW-Authenticate": BEARER_CHALLENGE}
            )
        except Exception:  # the database, say: the operation meets it and reports it as ever
            return None
        request.scope[PRINCIPAL] = principal
        return None

    def decode_json(self, data: str | bytes) -> object:
        """Request bodies and WebSocket messages: the REST endpoints' strict JSON, and an
        object or array (a refused one is Strawberry's 400 "Unable to parse request body as
        JSON"; Strawberry fails on a bare string or number)."""
        try:
            parsed = strict_json(data, max_depth=self.settings.max_json_depth)
        except ValueError as exc:
            raise json.JSONDecodeError(str(exc), "", 0) from None
        if not isinstance(parsed, dict | list):
            raise json.JSONDecodeError("not a JSON object", "", 0)
        return parsed

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry reads a body as JSON only for a Content-Type holding the lower-case
        `application/json`: `Application/JSON` or `application/vnd.api+json` were a 415
        here and accepted by the REST endpoints. Both now follow `json_media`."""
        if request.method == "POST" and json_media(request.content_type or ""):
            if (problem := unreadable_body(request.headers)) is not None:
                raise CrossWebHTTPException(415, problem)  # a charset or a coding
            request = cast(AsyncHTTPRequestAdapter, _SentAsJson(request))
        return await super().parse_http_body(request)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """One operation over HTTP; a subscription is a 400 saying where subscriptions are
        served (Strawberry allows them over POST for its multipart transport, and without
        that transport ran one as a query, which failed as an unexpected error)."""
        parse = getattr(self.schema, "parse_document", graphql_parse)
        if _subscribes(request_data, parse=parse, max_tokens=self.settings.graphql_max_tokens):
            raise CrossWebHTTPException(400, SUBSCRIPTIONS_OVER_WEBSOCKET)
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        if isinstance(request, Request):
            context = self._context(secret=_bearer(request.headers.get("authorization")))
            context.principal = request.scope.get(PRINCIPAL)
            return context
        return self.websocket_context()

    def websocket_context(self) -> Context:
        """A WebSocket's context: its key comes in `connection_init` (`on_ws_connect`)."""
        return self._context(secret=None)

    def _context(self, *, secret: str | None) -> Context:
        return Context(
            settings=self.settings,
            publisher=self.bus,
            secret=secret,
            hub=self.bus.hub,
            revocations=self.bus,
            renderers=self.renderers,
            shared_reads=self.shared_reads,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        secret = _bearer(params.get("Authorization") or params.get("authorization"))
        context.connection_params = None  # the principal is what the connection keeps
        try:
            principal = await authenticate(secret=secret)
            if not principal.allows(ScopeName.EVENTS_WRITE):  # an agent's key may wait
                principal.require(ScopeName.READ)  # on its approval; each field checks its own
        except AuthError:
            raise ConnectionRejectionError({"message": "Forbidden"}) from None
        context.principal = principal
        self.bus.hub.connection_opened(principal.key_id)  # its key rechecked while open
        context.counted_key_id = principal.key_id
        if self.limiter is not None and secret:
            context.rate_bucket = bucket_name(secret)
        return cast(UnsetType, UNSET)

    async def rate_refusal(self, context: Context) -> GraphQLFormattedError | None:
        """The error of an operation sent over a WebSocket once its key has used its
        bucket (every operation takes a token, as every HTTP request does), or None."""
        if self.limiter is None or context.rate_bucket is None:
            return None
        decision = await self.limiter.take(context.rate_bucket)
        if decision.allowed:
            return None
        seconds, message = refusal(decision)
        return {"message": message, "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds}}


class ServerSend:
    """Leave each WebSocket's ASGI send, as the server handed it over, in the scope (under
    `ASGI_SEND`, set in place: a copy would be kept per connection). Live messages go to it,
    or to the connection's transport where the server allows that (`opsgraph.wsdirect`);
    Starlette's exception middleware would otherwise have wrapped it by the time it reaches
    the GraphQL app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket":
            scope[ASGI_SEND] = send
        return self.app(scope, receive, send)  # no frame of ours kept per connection


class BodyLimit:
    """Answer 413 in the documented shape for any HTTP body over the configured size."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":  # no frame of ours kept for a WebSocket's life
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        await self.app(scope, body_then(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The body exceeds {self.max_bytes} bytes."
        body = error_body("PAYLOAD_TOO_LARGE", message)
        if scope["path"] in PAGERDUTY_PATHS:
            body = pagerduty_error_body(413, "PAYLOAD_TOO_LARGE", message, [message])
        elif scope["path"] == GRAPHQL_PATH:  # what GraphQL clients read, beside it
            body["errors"] = [{"message": message, "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]
        response = JSONResponse(body, status_code=413)
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


RestRoute = Callable[[Request], Awaitable[Response]]


def _rest(
    endpoint: Endpoint, handler: Callable[[Endpoint, Request], Awaitable[Response]]
) -> RestRoute:
    async def route(request: Request) -> Response:
        # Answered here, not re-raised through Starlette's error layer (which logs each a
        # second time, as "Exception in ASGI application" with its traceback: one per
        # request while the database is down, for what is a documented 503).
        try:
            return await handler(endpoint, request)
        except Exception as exc:
            return await _server_error(request, exc)

    return route


class RestPosts:
    """The REST endpoints that pipelines, monitors and agents post to in bursts, answered
    here, inside the rate and body limits, without Starlette's router and exception layer
    (about a tenth of such a request's CPU). Their handlers answer every error themselves
    (the documented shapes); anything unexpected gets `_server_error`'s answer, as through
    Starlette. Every other request, other methods on these paths and any request behind a
    root path included, goes on."""

    def __init__(self, app: ASGIApp, *, routes: dict[str, RestRoute]) -> None:
        self.app = app
        self.routes = routes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Behind a root path (`--root-path`, a mount) the router matches what follows it:
        # leave such requests to the router rather than match a prefixed path here.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self.routes.get(scope["path"])
            if route is not None:
                return self._answer(route, scope, receive, send)
        return self.app(scope, receive, send)

    async def _answer(self, route: RestRoute, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await route(request)
        except Exception as exc:
            response = await _server_error(request, exc)
        await response(scope, receive, send)


def create_app(
    settings: Settings, *, run_migrations: bool = True, manage_database: bool = True
) -> Starlette:
    """Compose the app: database and bus opened in the lifespan, routes over one schema.

    `manage_database=False` leaves opening the database to the caller (the tests do).
    """
    bus = Bus(
        settings.broadcast_url,
        queue_size=settings.subscriber_queue_size,
        heartbeat_seconds=settings.bus_heartbeat_seconds,
        connect_timeout_seconds=settings.connect_timeout_seconds,
    )
    schema = build_schema(settings)
    change_resolvers.WRITER.max_items = settings.batch_max
    KEY_LOOKUP.max_items = ROUTING_KEY_LOOKUP.max_items = settings.batch_max
    limiter = make_limiter(settings) if settings.rate_limit_per_second > 0 else None
    graphql = GraphQLApp(schema, settings=settings, bus=bus, limiter=limiter)
    endpoint = Endpoint(schema=schema, settings=settings, publisher=bus, hub=bus.hub)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        if manage_database:
            await open_database(settings, run_migrations=run_migrations)
        await bus.connect()
        sweeper = asyncio.create_task(
            approval_resolvers.sweep_forever(
                publisher=bus, interval_seconds=settings.approval_sweep_seconds
            )
        )
        loops = [sweeper]
        if settings.key_recheck_seconds > 0:
            recheck = recheck_live_keys_forever(
                bus.hub, interval_seconds=settings.key_recheck_seconds
            )
            loops.append(asyncio.create_task(recheck))
        try:
            yield {"settings": settings, "bus": bus}
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await bus.disconnect()
            if manage_database:
                await close_database()

    async def health(request: Request) -> Response:
        """200 while this process can store and tell (the database answers, the bus is
        connected), 503 otherwise, naming which: what a load balancer should route by."""
        parts = {
            "database": await _database_answers(settings.health_timeout_seconds),
            "bus": bus.hub.connected,
        }
        body: dict[str, str] = {"status": "ok" if all(parts.values()) else "unavailable"}
        body |= {name: "ok" if up else "unavailable" for name, up in parts.items()}
        return JSONResponse(body, status_code=200 if all(parts.values()) else 503)

    posts = {
        "/events": _rest(endpoint, rest_changes.post_events),
        "/v2/change/enqueue": _rest(endpoint, rest_changes.post_pagerduty_change),
        "/api/events": _rest(endpoint, rest_incidents.post_api_events),
        "/v2/enqueue": _rest(endpoint, rest_incidents.post_enqueue),
        "/v1/events": _rest(endpoint, rest_agents.post_agent_event),
    }
    routes: list[BaseRoute] = [
        Route(GRAPHQL_PATH, graphql, methods=["GET", "POST"]),
        WebSocketRoute(GRAPHQL_PATH, graphql),
        *(Route(path, route, methods=["POST"]) for path, route in posts.items()),
        # Another method is a 405 naming POST, also where the UI's mount below would
        # otherwise answer it (Starlette takes a full match over a method mismatch).
        *(Route(path, _post_only, methods=_NOT_POST, include_in_schema=False) for path in posts),
        Route("/v1/approvals/{approval_id}", _rest(endpoint, rest_agents.get_approval)),
        Route("/healthz", health),
        Route("/openapi.json", openapi_route(settings)),
    ]
    frontend = Path(settings.frontend_dir)
    if (frontend / "index.html").is_file():
        # Keep this last: the UI answers its own deep links (/approvals?focus=…).
        routes.append(Mount("/", SpaStaticFiles(directory=frontend, html=True), name="ui"))
    else:

        async def placeholder(request: Request) -> Response:
            return HTMLResponse(PLACEHOLDER, headers=PAGE_HEADERS)

        routes.append(Route("/", placeholder))

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={500: _server_error, HTTPException: _http_error},
    )
    # Where events apply in the order they arrived, whichever key sent them: a service's
    # incident events (both paths, one line), a run's agent events.
    incident_events, agent_events = Line(), Line()
    lines = {"/api/events": incident_events, "/v2/enqueue": incident_events}
    lines["/v1/events"] = agent_events
    app.add_middleware(RestPosts, routes=posts)  # innermost of ours
    app.add_middleware(
        RateLimit, settings=settings, pagerduty_paths=PAGERDUTY_PATHS, limiter=limiter
    )
    app.add_middleware(ArrivalOrder, lines=lines)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ServerSend)  # outermost of ours
    app.state.graphql = graphql  # where `opsgraph.wsserver` finds it
    app.state.settings = settings  # and `opsgraph.restlane` its read timeout
    # The same limits and handlers for the posts `opsgraph.restlane` serves itself (one
    # limiter: a key's requests take from one bucket whichever way they come).
    limited = RateLimit(
        RestPosts(app, routes=posts),
        settings=settings,
        pagerduty_paths=PAGERDUTY_PATHS,
        limiter=limiter,
    )
    rest = BodyLimit(ArrivalOrder(limited, lines=lines), max_bytes=settings.max_body_bytes)
    app.state.rest_lane = RestLane(
        paths=frozenset(posts),
        app=rest,
        server_error=_server_error,
        owner=app,
        draining=endpoint.draining,
    )
    return app


async def _server_error(request: Request, exc: Exception) -> Response:
    """Never a stack trace: log it, answer the documented shape (503 while the database
    is unreachable, so clients retry; the server recovers without a restart)."""
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        body = error_body("UNAVAILABLE", "The database is unavailable; retry shortly.")
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("INTERNAL", "Internal server error."), status_code=500)


async def _database_answers(timeout: float) -> bool:
    """Whether the database answers a `SELECT 1` within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await connections.get("default").execute_query("SELECT 1")
    except Exception:  # unreachable, refused, timed out: all the same to a health check
        return False
    return True


_NOT_POST = ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _post_only(request: Request) -> Response:
    raise HTTPException(405, headers={"Allow": "POST"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the documented error shape too (with
    PagerDuty's fields beside it on PagerDuty's paths, as their other errors)."""
    assert isinstance(exc, HTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    if request.url.path in PAGERDUTY_PATHS:
        body = pagerduty_error_body(exc.status_code, code, exc.detail, [exc.detail])
    else:
        body = error_body(code, exc.detail)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
