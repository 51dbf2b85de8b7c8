"""Arrival order for the REST posts whose events apply in the order they arrived: a
service's incident events (`POST /api/events` and `/v2/enqueue`), a run's agent events
(`POST /v1/events`).

Their batches keep the order in which requests join them (`resolvers.batching`), but
between arriving and joining a request waits for its key's look-up and its rate limit.
For two kinds of key (a bearer key, a routing key) those are different statements and
round trips, which finish in either order: a resolve sent through `/api/events` 2 ms after
its trigger through `/v2/enqueue` joined first, was dropped ("no incident has this
dedup_key"), and the incident stayed open.

So such a request takes a place in its path's `Line` as soon as its whole body is in
(`ArrivalOrder`, outside the rate limit), and joins its batch only on its turn
(`rest_compat.batched.submit`): once every request before it has joined one or been
answered otherwise (refused, say). Its place is left then, not once its answer is written:
a client that does not read its answers must not hold up those behind it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Place:
    """One request's place in a `Line`."""

    __slots__ = ("_before", "_mine")

    def __init__(self, before: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._before = before
        self._mine = mine

    async def turn(self) -> None:
        """Wait until every request before this one has joined its batch or ended."""
        before = self._before
        if before is not None and not before.done():
            await asyncio.wait((before,))  # never cancels it: it is another request's
        self._before = None

    def leave(self) -> None:
        """This request has joined its batch or ended. Leaving before its turn (refused,
        say) lets the next one go only when its own turn would have come."""
        mine, before = self._mine, self._before
        if mine.done():
            return
        if before is None or before.done():
            mine.set_result(None)
        else:
            before.add_done_callback(lambda _: _done(mine))


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Line:
    """Places in the order requests arrived: each waits for the one before it."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def join(self) -> Place:
        loop = asyncio.get_running_loop()
        before = self._last
        if before is not None and (before.done() or before.get_loop() is not loop):
            before = None  # nobody waits (or an earlier event loop's, in the tests)
        mine = self._last = loop.create_future()
        return Place(before, mine)


# The place of the request this task serves, if its path keeps arrival order.
PLACE: contextvars.ContextVar[Place | None] = contextvars.ContextVar("arrival_place", default=None)


class ArrivalOrder:
    """ASGI middleware, inside the body limit (which reads the whole body first) and outside
    the rate limit: a POST to one of `lines`' paths takes its place there, for the request's
    handler to wait for its turn before it joins a batch; it leaves the line on joining, or
    as its answer starts (refused, say), whichever comes first."""

    def __init__(self, app: ASGIApp, *, lines: Mapping[str, Line]) -> None:
        self.app = app
        self.lines = lines

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Once in line: a request the REST lane hands on to the app's own stack, which
        # holds this middleware too, would otherwise wait for its own place.
        if scope["type"] == "http" and scope["method"] == "POST" and PLACE.get() is None:
            line = self.lines.get(scope["path"])
            if line is not None:
                return self._in_line(line, scope, receive, send)
        return self.app(scope, receive, send)

    async def _in_line(self, line: Line, scope: Scope, receive: Receive, send: Send) -> None:
        place = line.join()
        token = PLACE.set(place)

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                place.leave()  # answered without a batch (or after one): next, please
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            place.leave()
            PLACE.reset(token)
