"""The per-operation context: settings, the caller's key and the bus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from graphql import GraphQLError
from strawberry.types import Info as _Info

from opsgraph.settings import Settings
from resolvers.auth import Principal, Scope, authenticate
from resolvers.errors import AuthError, unauthenticated
from resolvers.timeline import Publisher

if TYPE_CHECKING:
    from opsgraph.live import Hub
    from schema.live_render import Renderers, SharedReads


def public_error(code: str, message: str) -> GraphQLError:
    """An error meant for the caller: never masked, with a machine-readable code."""
    return GraphQLError(message, extensions={"code": code})


class Revocations(Protocol):
    """Where a revoked key is announced, so live connections opened with it end at once."""

    async def key_revoked(self, *, key_id: str) -> None: ...


@dataclass(slots=True)
class Context:
    """What every resolver may use. `secret` is checked lazily, once per context."""

    settings: Settings
    publisher: Publisher
    secret: str | None = None
    principal: Principal | None = None
    hub: Hub | None = None
    connection_params: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    revocations: Revocations | None = None
    renderers: Renderers | None = None  # live entries rendered once for many subscribers
    shared_reads: SharedReads | None = None  # and what they read about an entry, read once
    # The REST layer's own validation of each input of the list mutation it runs (in
    # order), so the mutation does not validate them again; a client's request has none.
    validated: Sequence[Any] | None = None
    # A WebSocket's rate-limit bucket: its key's, as its HTTP requests take from.
    rate_bucket: str | None = None
    # A WebSocket's key while the hub counts the connection (`Hub.connection_opened`).
    counted_key_id: str | None = None

    def uncount_connection(self) -> None:
        """Once a WebSocket closes: no longer count it under its key (once)."""
        key_id, self.counted_key_id = self.counted_key_id, None
        if key_id is not None and self.hub is not None:
            self.hub.connection_closed(key_id)

    def require_hub(self) -> Hub:
        """The live hub (present in the server; absent when a test runs the schema bare)."""
        if self.hub is None:
            raise public_error("BUS_UNAVAILABLE", "Live updates are not available here.")
        return self.hub

    async def require(self, scope: Scope) -> Principal:
        """The caller's principal if it holds `scope`; a public GraphQL error otherwise."""
        try:
            if self.principal is None:
                self.principal = await authenticate(secret=self.secret)
            elif self.hub is not None and self.hub.is_revoked(self.principal.key_id):
                # A WebSocket keeps the principal of its connection_init: once its key is
                # revoked, no further operation runs on that connection.
                raise unauthenticated("The API key was revoked.")
            return self.principal.require(scope)
        except AuthError as exc:
            raise public_error(exc.code, exc.message) from None


Info = _Info[Context, None]
