"""`graphql-transport-ws` served straight from the connection, outside ASGI.

An idle live subscriber should cost little: thousands of them wait on one process. Through
ASGI each connection keeps uvicorn's WebSocket protocol with its queue, events and lock, the
kept handshake, the app's task with Starlette's and Strawberry's frames, and Strawberry's
reading task: about 21 KiB per connection before any GraphQL (measured with a bare ASGI app).

This is a uvicorn WebSocket protocol class (`ws=` in `opsgraph.cli.websocket_options`) that
takes the connections it knows to be plain `graphql-transport-ws` on `/graphql` of an
Opsgraph app, and hands every other handshake, byte for byte, to uvicorn's own sans-I/O
protocol and the ASGI app (the legacy `graphql-ws` protocol, a cross-origin page, a bad
handshake, another path, another app). For the connections it takes, it does RFC 6455
itself (the handshake, frames, ping and close) and gives each message to the app's own
Strawberry `graphql-transport-ws` handler, the one the ASGI path runs: the same protocol
rules, authentication, limits and execution. What it leaves out is a task per connection:
messages are handled by a task that exists while there are messages to handle, and a
subscription that waits is its operation's task alone (live entries reach it through
`opsgraph.live` writing to this connection, `write`).

No extension is negotiated (a client offering permessage-deflate gets plain frames, which
RFC 6455 allows): live entries are framed once for every subscriber (`opsgraph.wsdirect`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from starlette.applications import Starlette
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.websocket_origin import is_same_origin
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.utils import accept_key, apply_mask

from opsgraph.wsdirect import FrameWriter, text_frame

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

log = logging.getLogger("uvicorn.error")

GRAPHQL_PATH = "/graphql"
# How long a close we sent waits for the client's before the connection is dropped.
CLOSE_TIMEOUT_SECONDS = 10.0
# Messages read ahead of the one being handled before the connection stops reading, also
# once they hold `ws_max_size` bytes (so a connection holds about two messages' worth).
INBOX_LIMIT = 16
_MAX_REASON_BYTES = 123  # a control frame's payload is at most 125 bytes, 2 for the code

# Opcodes (RFC 6455, 5.2).
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80

_BINARY_MESSAGE = object()  # in the inbox: a binary message (refused, as Strawberry does)


class TransportWSApp(Protocol):
    """What this protocol needs of the GraphQL app (`opsgraph.app.GraphQLApp`)."""

    schema: Any
    connection_init_wait_timeout: Any
    max_subscriptions_per_connection: int | None
    graphql_transport_ws_handler_class: Any

    def websocket_context(self) -> Any: ...

    def decode_json(self, data: str | bytes) -> object: ...

    def encode_json(self, data: object) -> str | bytes: ...


def graphql_app_of(app: object) -> TransportWSApp | None:
    """The Opsgraph GraphQL app behind uvicorn's loaded app (its own wrappers, such as the
    proxy-headers middleware, keep the app they wrap as `.app`), or None."""
    for _ in range(8):
        if isinstance(app, Starlette):
            return cast(TransportWSApp | None, getattr(app.state, "graphql", None))
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return bytes((_FIN | opcode, len(payload))) + payload


def _close_payload(code: int, reason: str) -> bytes:
    data = reason.encode()[:_MAX_REASON_BYTES].decode(errors="ignore").encode()
    return code.to_bytes(2, "big") + data


def _valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code < 5000
    )


class _Handshake:
    """The parts of an upgrade request this protocol decides on."""

    __slots__ = ("method", "path", "headers")

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.headers = headers

    @classmethod
    def parse(cls, data: bytes) -> _Handshake | None:
        head, sep, _ = data.partition(b"\r\n\r\n")
        if not sep:
            return None
        try:
            lines = head.decode("latin-1").split("\r\n")
        except UnicodeDecodeError:  # pragma: no cover  # latin-1 decodes any byte
            return None
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "HTTP/1.1":
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                return None
            name = name.strip().lower()
            value = value.strip()
            # Repeated headers are one comma-separated list (RFC 9110, 5.3).
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return cls(parts[0], parts[1].partition("?")[0], headers)

    def tokens(self, name: str) -> list[str]:
        return [t.strip() for t in self.headers.get(name, "").split(",") if t.strip()]

    def accept_key(self) -> str | None:
        """The `Sec-WebSocket-Accept` answer for a valid RFC 6455 request, else None."""
        headers = self.headers
        key = headers.get("sec-websocket-key", "")
        try:
            valid_key = len(base64.b64decode(key.encode(), validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if (
            self.method != "GET"
            or not valid_key
            or headers.get("sec-websocket-version") != "13"
            or "websocket" not in (t.lower() for t in self.tokens("upgrade"))
            or "upgrade" not in (t.lower() for t in self.tokens("connection"))
        ):
            return None
        return accept_key(key)

    def wants_transport_ws(self) -> bool:
        """Whether Strawberry would pick `graphql-transport-ws` (the client's first choice
        among the protocols served)."""
        for protocol in self.tokens("sec-websocket-protocol"):
            if protocol in (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL):
                return protocol == GRAPHQL_TRANSPORT_WS_PROTOCOL
        return False

    def same_origin(self) -> bool:
        """Strawberry's rule for a handshake it accepts without `allowed_origins`."""
        origin = self.headers.get("origin")
        return (
            origin is None
            or self.headers.get("sec-fetch-site") == "same-origin"
            or is_same_origin(origin, self.headers.get("host"))
        )


class GraphQLWebSocket(asyncio.Protocol):
    """One WebSocket connection: `graphql-transport-ws` served here, or any other handshake
    handed to uvicorn's `WebSocketsSansIOProtocol` (see the module's docstring).

    It is also the connection as Strawberry's handler sees it (`send_json`, `close`) and
    the `opsgraph.wsdirect.FrameWriter` the live hub writes entries to.
    """

    __slots__ = (
        "_config",
        "_server_state",
        "_app_state",
        "_loop",
        "transport",
        "_delegate",
        "_app",
        "handler",
        "_buffer",
        "_fragments",
        "_fragment_opcode",
        "_inbox",
        "_inbox_bytes",
        "_reader",
        "_finishing",
        "_reading_paused",
        "_writable",
        "_close_sent",
        "_closed",
        "_close_timer",
        "_ping_timer",
        "_pong_timer",
        "_ping_payload",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover  # uvicorn loads it before serving
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self._delegate: asyncio.Protocol | None = None
        self._app: TransportWSApp | None = None
        self.handler: Any = None
        self._buffer = bytearray()
        self._fragments: bytearray | None = None  # a message's frames so far
        self._fragment_opcode = _TEXT
        self._inbox: deque[object] | None = None
        self._inbox_bytes = 0
        self._reader: asyncio.Task[None] | None = None
        self._finishing = False
        self._reading_paused = False
        self._writable: asyncio.Event | None = None  # made when the transport first pauses
        self._close_sent = False
        self._closed = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None

    # asyncio's protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._server_state.connections.add(cast(Any, self))

    def data_received(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.data_received(data)
        elif self.handler is None:
            self._handshake(data)
        elif not self._closed:
            self._buffer += data
            self._read_frames()

    def eof_received(self) -> bool | None:
        if self._delegate is not None:
            return self._delegate.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.pause_writing()
            return
        if self._writable is None:
            self._writable = asyncio.Event()
        self._writable.clear()

    def resume_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.resume_writing()
        elif self._writable is not None:
            self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._delegate is not None:
            self._delegate.connection_lost(exc)
            return
        self._closed = True
        self._server_state.connections.discard(cast(Any, self))
        self._stop_keepalive()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._writable is not None:
            self._writable.set()  # senders waiting for a drain find the connection gone
        self._start_finish()
        if self.transport is not None and exc is None:
            self.transport.close()

    def shutdown(self) -> None:
        """The server is stopping: close with 1012 (service restart)."""
        if not self._close_sent and self.transport is not None:
            self._write_close(1012, "")
        self._drop()

    # The handshake

    def _handshake(self, data: bytes) -> None:
        request = _Handshake.parse(data)
        app = graphql_app_of(self._config.loaded_app)
        accept = None
        if (
            request is not None
            and app is not None
            and request.path == GRAPHQL_PATH
            and not self._config.root_path
            and request.wants_transport_ws()
            and request.same_origin()
        ):
            accept = request.accept_key()
        if accept is None:
            self._hand_over(data)
            return
        assert self.transport is not None and app is not None and request is not None
        head = [
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"upgrade: websocket\r\nconnection: Upgrade\r\n",
            b"sec-websocket-accept: " + accept.encode() + b"\r\n",
            b"sec-websocket-protocol: " + GRAPHQL_TRANSPORT_WS_PROTOCOL.encode() + b"\r\n",
        ]
        for name, value in self._server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.transport.write(b"".join(head))
        self._app = app
        self.handler = app.graphql_transport_ws_handler_class(
            view=app,
            websocket=self,
            context=app.websocket_context(),
            root_value=None,
            schema=app.schema,
            connection_init_wait_timeout=app.connection_init_wait_timeout,
            max_subscriptions_per_connection=app.max_subscriptions_per_connection,
        )
        self.handler.on_request_accepted()  # starts the connection_init timeout
        self._schedule_ping()
        if self._config.access_log:
            peer = self.transport.get_extra_info("peername")
            client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
            log.info('%s - "WebSocket %s" [accepted]', client, request.path)

    def _hand_over(self, data: bytes) -> None:
        """Give this connection, from its first byte, to uvicorn's own protocol. The
        transport keeps calling this object (uvicorn sets it as the protocol after this
        returns), which passes every call on."""
        delegate = WebSocketsSansIOProtocol(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=self._loop,
        )
        self._server_state.connections.discard(cast(Any, self))
        assert self.transport is not None
        delegate.connection_made(self.transport)
        self._delegate = delegate
        delegate.data_received(data)

    # Frames in

    def _read_frames(self) -> None:
        buffer = self._buffer
        max_size = self._config.ws_max_size
        while len(buffer) >= 2 and not self._closed:
            first, second = buffer[0], buffer[1]
            opcode, fin = first & 0x0F, bool(first & _FIN)
            if first & 0x70 or not second & 0x80:  # reserved bits, or an unmasked frame
                self._fail(1002, "protocol error")
                return
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if opcode >= _CLOSE:
                if opcode not in (_CLOSE, _PING, _PONG) or not fin or length > 125:
                    self._fail(1002, "protocol error")
                    return
            elif opcode > _BINARY:
                self._fail(1002, "protocol error")
                return
            elif len(self._fragments or b"") + length > max_size:
                self._fail(1009, "message too big")
                return
            end = offset + 4 + length
            if len(buffer) < end:
                return
            mask = bytes(buffer[offset : offset + 4])
            payload = apply_mask(bytes(buffer[offset + 4 : end]), mask)
            del buffer[:end]
            self._frame(opcode, fin, payload)

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if self._close_sent and opcode != _CLOSE:
            return  # closing: only the client's close matters now
        if opcode == _PING:
            if self._writable is None or self._writable.is_set():  # else it is not reading
                self._write(_control_frame(_PONG, payload))
        elif opcode == _PONG:
            if self._ping_payload is not None and payload == self._ping_payload:
                self._ping_payload = None
                if self._pong_timer is not None:  # else the next ping is already due
                    self._pong_timer.cancel()
                    self._pong_timer = None
                    self._schedule_ping()
        elif opcode == _CLOSE:
            self._peer_closed(payload)
        elif opcode == _CONTINUATION:
            if self._fragments is None:
                self._fail(1002, "unexpected continuation frame")
                return
            self._fragments += payload
            if fin:
                data = bytes(self._fragments)
                self._fragments = None
                self._message(self._fragment_opcode, data)
        elif self._fragments is not None:
            self._fail(1002, "expected a continuation frame")
        elif fin:
            self._message(opcode, payload)
        else:
            self._fragments, self._fragment_opcode = bytearray(payload), opcode

    def _peer_closed(self, payload: bytes) -> None:
        if len(payload) == 1:
            self._fail(1002, "protocol error")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in the close reason")
                return
            if not _valid_close_code(code):
                self._fail(1002, "invalid close code")
                return
        if not self._close_sent:  # echo it: the closing handshake is complete
            self._write_close_frame(payload[:2])
        self._drop()

    def _message(self, opcode: int, data: bytes) -> None:
        item: object = data if opcode == _TEXT else _BINARY_MESSAGE  # text: UTF-8, checked later
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(item)
        self._inbox_bytes += len(data) if opcode == _TEXT else 0
        if (
            len(inbox) >= INBOX_LIMIT or self._inbox_bytes >= self._config.ws_max_size
        ) and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        if self._reader is None:
            self._reader = self._loop.create_task(self._read_messages())

    async def _read_messages(self) -> None:
        """Handle the inbox's messages one after another, as Strawberry's reading loop does;
        the task ends when the inbox is empty (an idle connection keeps none)."""
        try:
            while self._inbox and not self._close_sent and not self._closed:
                item = self._inbox.popleft()
                self._inbox_bytes -= len(item) if isinstance(item, bytes) else 0
                if self._reading_paused:
                    self._reading_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                await self._handle(item)
        except WebSocketDisconnected:
            pass
        except Exception:
            log.exception("a graphql-transport-ws message failed")
            self._fail(1011, "internal error")
        finally:
            self._reader = None
            if not self._inbox:
                self._inbox = None

    async def _handle(self, item: object) -> None:
        handler, app = self.handler, self._app
        assert app is not None
        if item is _BINARY_MESSAGE:
            await handler.handle_invalid_message("WebSocket message type must be text")
            return
        try:
            text = cast(bytes, item).decode()
        except UnicodeDecodeError:
            self._fail(1007, "invalid UTF-8")
            return
        try:
            message = app.decode_json(text)
        except ValueError:
            await handler.handle_invalid_message("WebSocket message must be valid JSON")
            return
        if not isinstance(message, dict):
            await handler.handle_invalid_message("Failed to parse message")
            return
        await handler.handle_message(message)

    def _start_finish(self) -> None:
        """End the handler's operations once the connection is closing (once). The server
        waits for this before its lifespan shuts the hub down."""
        if self.handler is None or self._finishing:
            return
        self._finishing = True
        tasks = self._server_state.tasks
        task = self._loop.create_task(self._finish())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _finish(self) -> None:
        reader = self._reader
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
        await self.handler.shutdown()

    # Frames out

    def _write(self, frames: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frames)

    def write(self, frames: bytes) -> bool:
        """Whole frames written now (the live hub's path), or False if this connection
        cannot take them now: closing, closed, or its write buffer over the high-water
        mark (the entries then go through the subscriber's queue)."""
        transport = self.transport
        if (
            self._close_sent
            or self._closed
            or transport is None
            or transport.is_closing()
            or (self._writable is not None and not self._writable.is_set())
        ):
            return False
        transport.write(frames)
        return True

    async def send_text(self, text: str) -> None:
        """One text message, after the write buffer drains if it is full."""
        writable = self._writable
        if writable is not None and not writable.is_set():
            await writable.wait()
        if self._close_sent or self._closed:
            raise WebSocketDisconnected
        assert self.transport is not None
        self.transport.write(text_frame(text.encode()))

    def live_channel(self) -> tuple[Callable[[str], Awaitable[None]], FrameWriter | None]:
        """Where live messages of this connection's operations go: here (see
        `opsgraph.wsprotocols.LiveChannel`)."""
        return self.send_text, self

    async def send_json(self, message: Mapping[str, object]) -> None:
        assert self._app is not None
        data = self._app.encode_json(message)
        await self.send_text(data if isinstance(data, str) else data.decode())

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame; the connection ends when the client answers it (or after
        `CLOSE_TIMEOUT_SECONDS`)."""
        if self._close_sent or self._closed or self.transport is None:
            return
        self._write_close(code, reason)
        self._abort_later()  # a client that does not answer is dropped, reading or not

    def _write_close(self, code: int, reason: str) -> None:
        self._write_close_frame(_close_payload(code, reason))
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False  # read on, for the client's close
            self.transport.resume_reading()

    def _write_close_frame(self, payload: bytes) -> None:
        self._stop_keepalive()
        self._write(_control_frame(_CLOSE, payload))
        self._close_sent = True
        # The operations end now, as when Strawberry's reading loop ends: nothing more
        # is sent on a closing connection.
        self._start_finish()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol violation: close at once (RFC 6455, 7.1.7)."""
        if not self._close_sent:
            self._write_close(code, reason)
        self._buffer.clear()
        self._drop()

    def _drop(self) -> None:
        """Close the transport once what is written has gone out, or after
        `CLOSE_TIMEOUT_SECONDS` at the latest (a client that stopped reading would
        otherwise hold it, and the server's shutdown, for ever)."""
        if self.transport is not None:
            self.transport.close()
            self._abort_later()

    def _abort_later(self) -> None:
        """Abort the transport after `CLOSE_TIMEOUT_SECONDS` unless the connection is lost
        before (once)."""
        if self._close_timer is None and not self._closed and self.transport is not None:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT_SECONDS, self.transport.abort)

    # Keepalive pings, at uvicorn's `ws_ping_interval` and `ws_ping_timeout`

    def _schedule_ping(self) -> None:
        interval = self._config.ws_ping_interval
        if interval and interval > 0 and not self._close_sent and not self._closed:
            self._ping_timer = self._loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self._close_sent or self._closed:
            return
        self._ping_payload = random.getrandbits(32).to_bytes(4, "big")
        self._write(_control_frame(_PING, self._ping_payload))
        timeout = self._config.ws_ping_timeout
        if timeout and timeout > 0:
            self._pong_timer = self._loop.call_later(timeout, self._ping_timed_out)
        else:
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self._pong_timer = None
        self._fail(1011, "keepalive ping timeout")

    def _stop_keepalive(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None
        self._ping_payload = None


__all__ = ["GraphQLWebSocket", "graphql_app_of"]
