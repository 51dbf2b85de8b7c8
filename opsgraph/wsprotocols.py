"""The GraphQL WebSocket protocols as this app speaks them: Strawberry's handlers for
`graphql-transport-ws` and the legacy `graphql-ws`, with the key checked once per
connection, each client's messages rate-limited, malformed operations refused by what is
wrong, and each operation told where its live messages go (`schema.live_render`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

from graphql import GraphQLFormattedError
from starlette.types import Send
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage as TransportInitMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    SubscribeMessage as TransportSubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    OperationMessage,
    StartMessage,
)

from opsgraph.db import database_unavailable
from opsgraph.ratelimit import TokenBucket
from opsgraph.settings import Settings
from opsgraph.wsdirect import FrameWriter, frame_writer
from schema.context import Context
from schema.live_render import ASGI_SEND, LIVE_TARGET, AsgiText, LiveTarget

log = logging.getLogger(__name__)


class RateRefusing(Protocol):
    """What the handlers need of the GraphQL app (`opsgraph.app.GraphQLApp`): the error of
    an operation once its key has used its rate-limit bucket, or None."""

    async def rate_refusal(self, context: Context) -> GraphQLFormattedError | None: ...


class MessageRate:
    """A client's messages on one WebSocket, limited by a token bucket (0: no limit)."""

    def __init__(self, settings: Settings) -> None:
        self.rate = settings.ws_messages_per_second
        self.burst = settings.ws_message_burst
        self.bucket = TokenBucket(tokens=float(self.burst), updated=time.monotonic())

    def allows(self) -> bool:
        """Whether one more message may be handled now."""
        if self.rate <= 0:
            return True
        return self.bucket.take(now=time.monotonic(), rate=self.rate, burst=self.burst).allowed


TOO_MANY_MESSAGES = (1008, "Too many messages; slow down.")  # 1008: policy violation


async def _closed_for_rate(handler: LegacyWSHandler | TransportWSHandler) -> bool:
    """Close the connection (1008) if this message is over its bucket; whether it was.

    The bucket is the handler's (that is, the connection's) own, made on its first message.
    """
    rate: MessageRate | None = getattr(handler, "_opsgraph_rate", None)
    if rate is None:
        rate = MessageRate(handler.context.settings)
        setattr(handler, "_opsgraph_rate", rate)  # noqa: B010
    if rate.allows():
        return False
    await handler.websocket.close(*TOO_MANY_MESSAGES)
    return True


def operation_problem(message: Mapping[str, Any]) -> str | None:
    """What makes a `subscribe` (graphql-transport-ws) or `start` (graphql-ws) message
    unusable, or None. Strawberry reads these fields unchecked: a payload that was not an
    object ended the whole connection, its other operations with it (1011, or no close
    frame on graphql-ws) and logged a traceback; a query that was not a string ended the
    operation with nothing said."""
    if not isinstance(message.get("id"), str) or not message["id"]:
        return "id: must be a non-empty string"
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "payload: must be an object"
    if not isinstance(payload.get("query"), str):
        return "payload.query: must be a string"
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return "payload.variables: must be an object or null"
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        return "payload.operationName: must be a string or null"
    return None


def _connection_error(message: str) -> Any:
    """graphql-ws's answer to a message it cannot use that names no operation."""
    return {"type": "connection_error", "payload": {"message": message}}


async def _refusal(
    handler: LegacyWSHandler | TransportWSHandler, *, running: int
) -> GraphQLFormattedError | None:
    """Why a new operation on this (acknowledged) connection is refused, with `running`
    operations under way: over the connection's limit (Strawberry's own error has no
    code), or over its key's rate limit; None if it may run."""
    settings = handler.context.settings
    most = settings.max_subscriptions_per_connection
    if running >= most:
        return {
            "message": f"Subscription limit reached: at most {most} operations at once on one "
            "connection (OPSGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION).",
            "extensions": {"code": "TOO_MANY_OPERATIONS"},
        }
    return await cast(RateRefusing, handler.view).rate_refusal(handler.context)


# When an unreachable database was last logged for a connection_init: every client retries,
# and one line a minute says as much as one per try.
_unavailable_logged = -math.inf
UNAVAILABLE_LOG_EVERY_SECONDS = 60.0


async def _close_unavailable(websocket: Any, exc: BaseException) -> None:
    """End a connection whose key could not be checked, the database being unreachable:
    1013 (Try Again Later), which clients retry, where the error closed it with 1011 and a
    traceback."""
    global _unavailable_logged
    now = time.monotonic()
    if now - _unavailable_logged >= UNAVAILABLE_LOG_EVERY_SECONDS:
        _unavailable_logged = now
        log.warning("a WebSocket's connection_init: the database is unreachable (%r)", exc)
    with contextlib.suppress(Exception):  # the client may have gone during the wait
        await websocket.close(code=1013, reason="The database is unreachable; try again")


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy `graphql-ws` protocol, refusing a bad key with close code 4403 as the
    `graphql-transport-ws` handler does (Strawberry's legacy handler uses 1011), and
    checking the key once."""

    _init_received = False  # connection_init came (one only: a second closes with 4429)

    async def handle(self) -> None:
        # graphql-transport-ws closes a connection that never sends connection_init
        # (`connection_init_timeout_seconds`); Strawberry's legacy handler waits for ever.
        timer = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            timer.cancel()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.context.settings.connection_init_timeout_seconds)
        if not self._init_received:
            with contextlib.suppress(Exception):  # closed meanwhile
                await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_message(self, message: OperationMessage) -> None:
        if await _closed_for_rate(self):
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str):  # Strawberry's handler ended the connection (KeyError)
            await self.send_message(_connection_error("a message must be an object with a type"))
            return
        if kind == "stop" and not isinstance(message.get("id"), str):
            await self.send_message(_connection_error("stop: id must be a string"))
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self._init_received:  # as graphql-transport-ws answers a second one
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self._init_received = True
        payload = message.get("payload")
        self.context.connection_params = payload if isinstance(payload, dict) else None
        try:
            await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError:
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Forbidden"}}
            )
            await self.websocket.close(code=4403, reason="Forbidden")
            return
        except Exception as exc:  # the key could not be checked: the database is unreachable
            if not database_unavailable(exc):
                raise
            await _close_unavailable(self.websocket, exc)
            return
        # What Strawberry's own handle_connection_init does next (it would check the key
        # a second time).
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())

    async def handle_start(self, message: StartMessage) -> None:
        problem = operation_problem(message)
        if problem is not None:  # that operation alone is refused; the connection stays
            if isinstance(message.get("id"), str):
                refused = ErrorMessage(
                    type="error",
                    id=message["id"],
                    payload={"message": problem, "extensions": {"code": "BAD_REQUEST"}},
                )
                await self.send_message(refused)
            else:
                await self.send_message(_connection_error(f"start: {problem}"))
            return
        if self.connection_acknowledged:
            # A `start` of an id under way replaces that operation: not one more.
            running = 0 if message["id"] in self.tasks else len(self.tasks)
            error = await _refusal(self, running=running)
            if error is not None:
                await self.send_message(ErrorMessage(type="error", id=message["id"], payload=error))
                return
        await super().handle_start(message)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self.context.uncount_connection()


class LiveChannel(Protocol):
    """A connection as `graphql-transport-ws` operations see it: where their live messages
    go (`schema.live_render.LiveTarget`). Both kinds of connection say it themselves:
    `ASGIConnection` and `opsgraph.wsserver.GraphQLWebSocket`."""

    def live_channel(self) -> tuple[Callable[[str], Awaitable[None]], FrameWriter | None]: ...


class ASGIConnection(ASGIWebSocketAdapter):
    """Strawberry's adapter of a WebSocket served through ASGI, saying where live messages
    go: the server's own ASGI send (left in the scope by `ServerSend`), and its transport
    where the server allows frames to be written directly (`opsgraph.wsdirect`)."""

    def live_channel(self) -> tuple[Callable[[str], Awaitable[None]], FrameWriter | None]:
        send = cast(Send, self.ws.scope[ASGI_SEND])
        return AsgiText(send), frame_writer(send)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """`graphql-transport-ws`, telling each operation's resolvers where its messages go, so
    that a live entry is rendered once for every subscriber of the same document (see
    `schema.live_render`)."""

    async def handle_message(self, message: TransportMessage) -> None:
        if await _closed_for_rate(self):
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "subscribe":
            problem = operation_problem(message)
            if problem is not None:  # the protocol's answer to a malformed message
                await self.handle_invalid_message(f"Invalid subscribe message: {problem}")
                return
        elif kind == "complete" and not isinstance(message.get("id"), str):
            await self.handle_invalid_message("Invalid complete message: id: must be a string")
            return
        elif not isinstance(kind, str):  # Strawberry's handler ended the connection with 1011
            await self.handle_invalid_message("Failed to parse message")
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: TransportInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except Exception as exc:  # the key could not be checked: the database is unreachable
            if not database_unavailable(exc):
                raise
            await _close_unavailable(self.websocket, exc)
            return
        # The timeout is cancelled once `connection_init` arrives, but Strawberry keeps the
        # task (and its cancelled timer sits in the loop's heap until it would have fired):
        # wait for it to end and let it go, as its own shutdown would.
        task = self.connection_init_timeout_task
        if task is not None and self.connection_init_received:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.connection_init_timeout_task = None

    async def handle_subscribe(self, message: TransportSubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            error = await _refusal(self, running=len(self.operations))
            if error is not None:  # this operation alone; the connection stays
                refused = TransportErrorMessage(id=message["id"], type="error", payload=[error])
                await self.send_message(refused)
                return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            self.context.uncount_connection()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # This runs in the operation's own task: the variable is set for it alone.
        channel = cast(LiveChannel, self.websocket)
        send_text, writer = channel.live_channel()
        LIVE_TARGET.set(
            LiveTarget(
                send_text=send_text,
                operation_id=operation.id,
                query=operation.query,
                variables=operation.variables,
                operation_name=operation.operation_name,
                writer=writer,
            )
        )
        await super().run_operation(operation)
