"""Shared rendering of live entries: a subscription document is executed once per entry for
every subscriber that sent the same document and variables with the same key, and each of
them is sent the same JSON text (only the operation id differs).

Without it graphql-core executes the selection set once per subscriber per entry, and the
result is encoded once per subscriber: at a thousand subscribers that is most of the CPU.

Only `graphql-transport-ws` operations take this path (the WebSocket handler says where its
messages go through `LIVE_TARGET`); anything else, and any entry whose rendering reports an
error, goes through Strawberry's usual per-subscriber path, which formats and masks errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from graphql import ExecutionResult, Executor, GraphQLSchema, parse
from starlette.types import Send
from strawberry.http.exceptions import WebSocketDisconnected

from models.timeline import TimelineEntry as TimelineEntryRow
from opsgraph.live import Share
from opsgraph.wsdirect import FrameWriter, text_frame
from schema.execution import ExecutionContext

log = logging.getLogger(__name__)

T = TypeVar("T")

# Where the app leaves a WebSocket's ASGI send, as the server handed it over, in its scope:
# live messages go straight to it (they are sent thousands of times per entry; Starlette's
# WebSocket object adds only checks that hold here anyway), or, where the server allows it,
# straight to the connection's transport (`writer`, see `opsgraph.wsdirect`).
ASGI_SEND = "opsgraph.asgi_send"


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """One `graphql-transport-ws` operation: what it asked for and where its messages go."""

    send_text: Callable[[str], Awaitable[None]]  # one text message to this connection
    operation_id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    writer: FrameWriter | None = None  # this connection's frames, written directly
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        # The message Strawberry would send: {"id":…,"type":"next","payload":…}.
        head = json.dumps({"id": self.operation_id, "type": "next"}, separators=(",", ":"))
        object.__setattr__(self, "prefix", head[:-1] + ',"payload":')

    async def send_next(self, payload: str) -> None:
        """Send one rendered `next` payload to this operation's client."""
        await self.send_text(self.prefix + payload + "}")


class LiveSink:
    """A subscriber's direct path (`opsgraph.live.DirectSink`): each entry rendered once by
    its renderer for the whole group (same document, variables and key, hence the same
    filter), framed once per operation id, and written to the connection by the hub
    without waking the subscriber's task."""

    __slots__ = ("group", "_source", "_prefix", "_writer")

    def __init__(
        self,
        renderer: Renderer,
        target: LiveTarget,
        writer: FrameWriter,
        source: Callable[[TimelineEntryRow], object],
    ) -> None:
        self.group = renderer
        self._source = source
        self._prefix = target.prefix
        self._writer = writer

    async def prepare(self, entry: TimelineEntryRow) -> str | None:
        """The entry's `next` payload (JSON text), or None if it must go the usual way."""
        return await self.group.render(entry, self._source)

    def write(self, share: Share) -> bool:
        # Most clients number their first operation alike: one run of frames serves them.
        frames = share.made.get(self._prefix)
        if frames is None:
            frames = share.made[self._prefix] = b"".join(
                text_frame(f"{self._prefix}{payload}}}".encode())
                for payload in cast(list[str], share.prepared)
            )
        return self._writer.write(cast(bytes, frames))


# Set by the WebSocket handler in each operation's task, read by the subscription resolvers.
LIVE_TARGET: ContextVar[LiveTarget | None] = ContextVar("opsgraph_live_target", default=None)


_READ_ALONE = object()  # the shared read failed: each waiter reads for itself


class SharedReads:
    """Work that many subscribers do for the same live entry (rendering it for one
    document, reading the approval it is about), done once: the first subscriber to ask
    does it, the others await its answer. Keyed by what the caller names (it must hold
    the entry's id, not its `seq`, which a database restored from an older backup hands
    out again); the last `size` answers are kept."""

    def __init__(self, *, size: int) -> None:
        self._size = max(1, size)
        self._memo: OrderedDict[Hashable, asyncio.Future[object]] = OrderedDict()

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        future = self._memo.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._memo[key] = future
            while len(self._memo) > self._size:
                self._memo.popitem(last=False)
            try:
                value = await read()
            except BaseException:
                future.set_result(_READ_ALONE)
                if self._memo.get(key) is future:
                    del self._memo[key]
                raise
            future.set_result(value)
            return value
        shared = await asyncio.shield(future)  # a waiter leaving must not cancel it
        return await read() if shared is _READ_ALONE else cast(T, shared)


class Renderer:
    """One subscription document with its variables and key: renders each entry once."""

    def __init__(self, executor: Executor[Any], *, key: tuple[object, ...], memo_size: int) -> None:
        self._executor = executor
        self._rendered = SharedReads(size=memo_size)
        self.key = key
        self.users = 0

    async def render(
        self, row: TimelineEntryRow, source: Callable[[TimelineEntryRow], object]
    ) -> str | None:
        """The `next` payload's JSON for this entry, or None (render it the usual way).

        `source` makes the subscription's event value from the entry; the first subscriber
        to ask executes, the others await the same answer.
        """
        return await self._rendered.get(row.id, lambda: self._render(row, source))

    async def _render(
        self, row: TimelineEntryRow, source: Callable[[TimelineEntryRow], object]
    ) -> str | None:
        try:
            return await self._execute(source(row))
        except Exception:  # every subscriber renders it the usual way
            log.exception("shared rendering of a live entry failed")
            return None

    async def _execute(self, source: object) -> str | None:
        result = self._executor.build_per_event_executor(source).execute_operation(False)
        if isinstance(result, Awaitable):
            result = await result
        if not isinstance(result, ExecutionResult) or result.errors:
            return None
        return json.dumps({"data": result.data}, separators=(",", ":"))


class Renderers:
    """The process's renderers, shared by key and dropped with their last subscriber."""

    def __init__(self, *, memo_size: int) -> None:
        self.memo_size = memo_size
        self._renderers: dict[tuple[object, ...], Renderer] = {}

    def acquire(
        self,
        *,
        schema: GraphQLSchema,
        target: LiveTarget,
        context: object,
        scope_key: tuple[object, ...],
    ) -> Renderer | None:
        """The renderer for this operation (created on first use), or None if the
        document cannot be prepared here (the usual path then reports why)."""
        variables = json.dumps(target.variables or {}, sort_keys=True, separators=(",", ":"))
        key = (id(schema), *scope_key, target.query, target.operation_name, variables)
        renderer = self._renderers.get(key)
        if renderer is None:
            built = ExecutionContext.build(
                schema,
                parse(target.query),
                context_value=context,
                raw_variable_values=target.variables,
                operation_name=target.operation_name,
            )
            if not isinstance(built, Executor):
                return None
            renderer = self._renderers[key] = Renderer(built, key=key, memo_size=self.memo_size)
        renderer.users += 1
        return renderer

    def release(self, renderer: Renderer) -> None:
        renderer.users -= 1
        if renderer.users <= 0 and self._renderers.get(renderer.key) is renderer:
            del self._renderers[renderer.key]

    def __len__(self) -> int:
        return len(self._renderers)


class AsgiText:
    """Text messages through a WebSocket's ASGI send (`LiveTarget.send_text`)."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def __call__(self, text: str) -> None:
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError as exc:  # the client left (uvicorn's ClientDisconnected), reported
            raise WebSocketDisconnected from exc  # as Strawberry's own sends report it
