"""The REST posts that pipelines, monitors and agents send in bursts, served by uvicorn's
HTTP protocol without its ASGI request cycle.

uvicorn reads each request with httptools, then runs the app through a request cycle (a
task waiting on an event for the body, ASGI messages both ways, the response written in two
parts) and Starlette wraps it in its own layers: for a trivial POST, 65 µs of CPU per
request on the benchmark machine against 8 for a bare httptools protocol, while a change
costs the app about 150. This protocol class (`http=` in `opsgraph.cli.server_options`)
is uvicorn's own, but a request that is a POST to one of the REST paths, with its whole
body declared by Content-Length (at most `LANE_MAX_BODY`), no `Expect: 100-continue`, no
upgrade and no request of the connection still answering, is read in full by the protocol
and handed to the app's `RestLane`: the same body limit, rate limit and handlers as through
Starlette (`opsgraph.app.create_app` builds both), called once the body is in, and the
response written in one piece, uvicorn's checks and back-pressure kept. Every other request
goes through uvicorn as before, and so does every request when the app is wrapped in ASGI
middleware other than uvicorn's proxy headers (the lane would skip the wrapper).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import httptools
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from opsgraph.settings import Settings
from rest_compat.common import PAGERDUTY_PATHS, error_body, pagerduty_error_body

log = logging.getLogger(__name__)

# Bodies above this go through uvicorn's own cycle (which pauses reading past it).
LANE_MAX_BODY = HIGH_WATER_LIMIT


@dataclass(frozen=True, slots=True)
class RestLane:
    """What the protocol runs for a lane request: `app` (the body and rate limits around the
    REST handlers, as in the app's own stack) for `paths`; `server_error` answers what it
    raises, as Starlette's 500 handler does; `owner` is the Starlette app (`scope["app"]`)."""

    paths: frozenset[str]
    app: ASGIApp
    server_error: Callable[[Request, Exception], Awaitable[Response]]
    owner: Starlette
    draining: asyncio.Event  # set when the server shuts its connections down


def body_then(body: bytes, then: Receive) -> Receive:
    """An ASGI `receive` giving the whole request `body` first, then what `then` gives."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


def lane_of(app: object) -> RestLane | None:
    """The `RestLane` of the Opsgraph app uvicorn serves: the app itself, or behind
    uvicorn's proxy-headers middleware (which the lane applies too). None for an app
    wrapped in anything else, whose wrapper the lane would skip."""
    lane = _state_of(app, "rest_lane")
    return lane if isinstance(lane, RestLane) else None


def _state_of(app: object, name: str) -> object:
    """`name` of the state of the Starlette app uvicorn serves (behind uvicorn's
    proxy-headers middleware or not); None for any other app."""
    if isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    return getattr(app.state, name, None) if isinstance(app, Starlette) else None


def _read_timeout(config: Config) -> float:
    """`Settings.request_read_timeout_seconds` of the app uvicorn serves (the default for
    an app wrapped in something else); found once per server."""
    found: float | None = getattr(config, "_opsgraph_read_timeout", None)
    if found is None:
        settings = _state_of(config.loaded_app, "settings")
        if not isinstance(settings, Settings):
            settings = Settings.from_env()
        found = config._opsgraph_read_timeout = settings.request_read_timeout_seconds  # type: ignore[attr-defined]
    return found


def _configured_lane(config: Config) -> RestLane | None:
    """The lane of the app uvicorn serves, behind uvicorn's proxy-headers middleware as the
    app is when the server trusts forwarded headers; found once per server."""
    found: RestLane | None | object = getattr(config, "_opsgraph_lane", _UNSET)
    if found is _UNSET:
        found = lane_of(config.loaded_app)
        if found is not None and config.proxy_headers:
            trusted = config.forwarded_allow_ips
            app = ProxyHeadersMiddleware(found.app, trusted_hosts=trusted)  # type: ignore[arg-type]
            found = replace(found, app=cast(ASGIApp, app))
        config._opsgraph_lane = found  # type: ignore[attr-defined]
    return found  # type: ignore[return-value]


_UNSET = object()

# What uvicorn answers when an app fails without a response (and closes the connection).
_PLAIN_500 = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
    b"connection: close\r\n\r\nInternal Server Error"
)


class _Flow(FlowControl):
    """uvicorn's flow control of a connection, telling its protocol when reading resumes
    (uvicorn calls `resume_reading` as the app asks for more of a body, and after an
    answer), and whether it had been paused."""

    def __init__(self, transport: asyncio.Transport, resumed: Callable[[bool], None]) -> None:
        super().__init__(transport)
        self._resumed = resumed

    def resume_reading(self) -> None:
        paused = self.read_paused
        super().resume_reading()
        self._resumed(paused)


class _Cycle:
    """A lane request: what uvicorn's protocol callbacks touch of a request cycle (`body`,
    `more_body`, `message_event.set()`, `response_complete`, `keep_alive`, `disconnected`),
    and the response as the app sends it."""

    __slots__ = ("scope", "body", "more_body", "response_complete", "keep_alive",
                 "disconnected", "_waiter", "status", "headers", "parts", "written")  # fmt: skip

    def __init__(self, scope: dict[str, Any], *, keep_alive: bool) -> None:
        self.scope = scope
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.written = False  # any byte of the response

    @property
    def response_started(self) -> bool:
        return self.written

    @property
    def message_event(self) -> _Cycle:
        return self  # uvicorn sets it on each body part and on disconnect

    def set(self) -> None:
        done = self.disconnected or self.response_complete
        if done and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_disconnect(self) -> None:
        """Until the client goes (what `receive` does after the body, as in uvicorn)."""
        if self.disconnected or self.response_complete:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def restart(self) -> None:
        """Forget a response begun but not written (an error answers instead)."""
        self.status, self.headers, self.parts = 0, [], []


class RestHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, serving the app's `RestLane` requests itself, and
    answering 408 to a request that does not arrive in full within
    `Settings.request_read_timeout_seconds` (uvicorn itself waits for ever)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lane = _configured_lane(self.config)
        self.read_timeout = _read_timeout(self.config)
        self.read_timer: asyncio.TimerHandle | None = None
        # When the wait for the request being read began: the connection's opening for its
        # first request, else the request's first byte; None once it is in.
        self.read_since: float | None = None
        self.reading = False  # a byte of that request has come
        self.cycle_before: object = None  # the cycle of the request before it
        self.continue_cycle: Any = None  # a cycle whose `100 Continue` is not yet sent

    # Between requests the wait is uvicorn's keep-alive timeout's. One timer serves the
    # connection's requests in turn (a request in time leaves it running, to be moved on
    # when it fires), so a request costs a clock reading, not a timer. While the server
    # holds the request (reading paused, an earlier answer under way, no `100 Continue`
    # yet) the client is not late: the clock starts again when the hold ends.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.read_timeout > 0:
            self.flow = _Flow(transport, self._reading_resumed)
            self.read_since = self.loop.time()
            self._time_reading(self.read_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing_reading()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading = True
        self.cycle_before = self.cycle
        if self.read_timeout > 0:
            if self.read_since is None:
                self.read_since = self.loop.time()
            if self.read_timer is None:
                self._time_reading(self.read_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.reading:  # the next request waited for this answer
            self._restart_read_clock()

    def _reading_resumed(self, was_paused: bool) -> None:
        """uvicorn resumed reading: after a pause, or as the app first asks for the body
        of a request that expects `100 Continue` (which uvicorn has just sent)."""
        sent = self.continue_cycle is not None and not self.continue_cycle.waiting_for_100_continue
        if sent:
            self.continue_cycle = None
        if was_paused or sent:
            self._restart_read_clock()

    def _restart_read_clock(self) -> None:
        if self.read_since is not None:
            self.read_since = max(self.read_since, self.loop.time())

    def _held(self) -> bool:
        """Whether this server, not the client, is why the request is not in yet."""
        cycle = self.cycle
        if cycle is not None and cycle is self.cycle_before and not cycle.response_complete:
            return True  # an earlier request of the connection is being answered
        return self.flow.read_paused or getattr(cycle, "waiting_for_100_continue", False)

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol has its own timeouts.
        self.reading, self.read_since = False, None
        self._stop_timing_reading()
        super().handle_websocket_upgrade()

    def _time_reading(self, seconds: float) -> None:
        self.read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _stop_timing_reading(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self) -> None:
        self.read_timer = None
        since = self.read_since
        if since is None or self.transport.is_closing():
            return  # no request under way: the next one's first byte starts the timer
        left = since + self.read_timeout - self.loop.time()
        if left > 0.001:  # an earlier request came in in time: this one's turn
            self._time_reading(left)
            return
        if self._held():  # looked at again a timeout later, or when the hold ends
            self._time_reading(self.read_timeout)
            return
        # The app may have answered this request before its body was in (a 413): then the
        # connection is only closed.
        cycle = self.cycle
        answered = cycle is not None and cycle is not self.cycle_before and cycle.response_started
        if self.reading and not answered:
            client = "{}:{}".format(*self.client) if self.client else "a client"
            log.info(
                "%s: a request not received in full within %g s; answered 408",
                client,
                self.read_timeout,
            )
            self.transport.write(self._timed_out_answer())
        self.transport.close()  # a connection that never sent a byte: just closed

    def _timed_out_answer(self) -> bytes:
        """A 408 in the documented error shape (PagerDuty's on its paths), closing the
        connection."""
        message = (
            f"The request was not received in full within {self.read_timeout:g} seconds"
            " (OPSGRAPH_REQUEST_READ_TIMEOUT_SECONDS); send it again."
        )
        try:
            path = httptools.parse_url(self.url).path.decode("ascii", "replace")
        except (httptools.HttpParserInvalidURLError, TypeError):
            path = ""  # the request line itself is not in
        if path in PAGERDUTY_PATHS:
            body = pagerduty_error_body(408, "REQUEST_TIMEOUT", message, [message])
        else:
            body = error_body("REQUEST_TIMEOUT", message)
        content = json.dumps(body).encode()
        head = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(content)).encode(), b"\r\n",
            b"connection: close\r\n\r\n",
        ]  # fmt: skip
        return b"".join(head) + content

    def shutdown(self) -> None:
        """The server is stopping: besides uvicorn's own (this connection closes after the
        answer under way), tell the app, whose long polls then answer at once."""
        if self.lane is not None:
            self.lane.draining.set()
        super().shutdown()

    def on_headers_complete(self) -> None:
        lane = self.lane
        url = self._lane_url(lane) if lane is not None else None
        if lane is None or url is None:
            super().on_headers_complete()
            if self.expect_100_continue:
                self.continue_cycle = self.cycle
            return
        http_version = self.parser.get_http_version()
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = url.path.decode("ascii")
        scope["raw_path"] = url.path
        scope["query_string"] = url.query or b""
        scope["app"] = lane.owner  # as Starlette sets it
        keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
        self.cycle = _Cycle(scope, keep_alive=keep_alive)  # type: ignore[assignment]

    def _lane_url(self, lane: RestLane) -> Any:
        """The parsed URL of a request the lane takes, else None."""
        if self.parser.get_method() != b"POST" or self.expect_100_continue:
            return None
        if self.root_path or self.limit_concurrency is not None or self.pipeline:
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None
        if self.parser.should_upgrade():
            return None
        url = httptools.parse_url(self.url)
        if url.path.decode("ascii", "replace") not in lane.paths:
            return None
        length: bytes | None = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None:
                    return None
                length = value
            elif name == b"transfer-encoding":
                return None
        if length is None or not length.isdigit() or int(length) > LANE_MAX_BODY:
            return None
        return url

    def on_message_complete(self) -> None:
        self.reading, self.read_since = False, None
        cycle = self.cycle
        if not isinstance(cycle, _Cycle):
            super().on_message_complete()
            return
        if cycle.response_complete or self.lane is None:
            return
        cycle.more_body = False
        answer = self._answer(cycle, self.lane)
        if self.config.reset_contextvars:  # as uvicorn starts its request tasks
            task = self.loop.create_task(answer, context=contextvars.Context())
        else:
            task = self.loop.create_task(answer)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, cycle: _Cycle, lane: RestLane) -> None:
        body = bytes(cycle.body)
        cycle.body = bytearray()

        async def disconnect() -> Message:
            await cycle.wait_disconnect()
            return {"type": "http.disconnect"}

        receive = body_then(body, disconnect)

        async def send(message: Message) -> None:
            await self._send(cycle, message)

        try:
            try:
                await lane.app(cycle.scope, receive, send)
            except Exception as exc:
                if cycle.written:  # the answer is out: all that can be done is to close
                    log.exception("error after the response was written", exc_info=exc)
                    self.transport.close()
                    return
                # Starlette answers with the 500 handler's response, and uvicorn, seeing
                # the error, then closes the connection: both here.
                cycle.restart()
                cycle.keep_alive = False
                response = await lane.server_error(Request(cycle.scope, receive), exc)
                await response(cycle.scope, receive, send)
        except BaseException as exc:  # cancelled at shut-down, or the 500 itself failed
            log.error("exception in the REST lane", exc_info=exc)
            if not cycle.written and not cycle.disconnected:
                self.transport.write(STATUS_LINE[500] + _PLAIN_500)
                cycle.written = True
            self.transport.close()
            return
        if not cycle.response_complete and not cycle.disconnected:
            log.error("the REST lane's app returned without completing its response")
            self.transport.close()

    async def _send(self, cycle: _Cycle, message: Message) -> None:
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()  # the client reads slowly: wait, as uvicorn does
        if cycle.disconnected:
            return
        if cycle.response_complete:
            raise RuntimeError(f"ASGI message {message['type']!r} after the response")
        if message["type"] == "http.response.start":
            if cycle.status:
                raise RuntimeError("the response has started already")
            cycle.status = message["status"]
            cycle.headers = list(message.get("headers", []))
            return
        if message["type"] != "http.response.body" or not cycle.status:
            raise RuntimeError(f"unexpected ASGI message {message['type']!r}")
        cycle.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        self._write(cycle, b"".join(cycle.parts))

    def _write(self, cycle: _Cycle, body: bytes) -> None:
        """The whole response in one write, headers checked as uvicorn checks them."""
        status = cycle.status
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        for name, value in cycle.headers:
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header name or value.")
            name = name.lower()
            if name == b"content-length":
                if int(value) != len(body):
                    raise RuntimeError("Content-Length differs from the response's body")
                continue  # written below
            if name == b"transfer-encoding":
                raise RuntimeError("the REST lane writes whole bodies, never chunked")
            if name == b"connection" and b"close" in (t.strip() for t in value.lower().split(b",")):
                cycle.keep_alive = False
                continue  # written below
            content += [name, b": ", value, b"\r\n"]
        if status in (204, 304):
            if body:
                raise RuntimeError(f"a {status} response has no body")
        else:
            content += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content += [b"\r\n", body]
        self.transport.write(b"".join(content))
        cycle.written = cycle.response_complete = True
        cycle.set()
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(cycle.scope),  # type: ignore[arg-type]
                "POST",
                get_path_with_query_string(cycle.scope),  # type: ignore[arg-type]
                cycle.scope["http_version"],
                status,
            )
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
