"""Rate limits per API key: a token bucket per presented key, as pure ASGI middleware.

Every HTTP request that presents a key (`Authorization: Bearer KEY`, PagerDuty's
`Authorization: Token token=KEY`, or `X-API-Key: KEY`) takes one token from that key's
bucket (from each key's, if it presents several); the PagerDuty routing-key endpoints, whose
only credential is `routing_key` in the body, also take one from that routing key's. Buckets
are named by the key's SHA-256, never the key. A request without any key passes through
(the endpoint answers it 401).

Over the limit the answer is 429 with `Retry-After` (whole seconds) in the documented
`{"error": {"code": "RATE_LIMITED", ...}}` shape, plus PagerDuty's fields on its paths.

Buckets live in the process (a bounded LRU of `rate_limit_max_keys`) unless Redis is
configured (`rate_limit_redis_url`, or a `redis://` broadcast URL): then one atomic Lua
script keeps each bucket in Redis and every process shares the limit. If Redis cannot be
reached, the process falls back to its own buckets (and logs it) rather than refusing work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from redis import asyncio as redis
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsgraph.settings import Settings
from rest_compat.common import error_body, pagerduty_error_body

log = logging.getLogger(__name__)

# Endpoints whose only credential is the `routing_key` field of the JSON body.
ROUTING_KEY_PATHS = frozenset({"/v2/enqueue", "/v2/change/enqueue"})
REDIS_PREFIX = "opsgraph:ratelimit:"
FALLBACK_LOG_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may proceed and, if not, how long until a token is free."""

    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def take(self, bucket: str) -> Decision: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class TokenBucket:
    """`tokens` as of `updated` (seconds on some monotonic clock)."""

    tokens: float
    updated: float

    def take(self, *, now: float, rate: float, burst: int) -> Decision:
        """Refill for the time passed, then take one token if there is one."""
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Decision(True)
        return Decision(False, (1.0 - self.tokens) / rate)

    def full_at(self, *, rate: float, burst: int) -> float:
        """When this bucket is full again (and so no different from a new one)."""
        return self.updated + (burst - self.tokens) / rate


class LocalLimiter:
    """Buckets in this process, at most `max_keys` of them (least recently used go first;
    full buckets are dropped before any that still hold a debt)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_keys = max(1, max_keys)
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take_now(self, bucket: str) -> Decision:
        """The synchronous decision (no I/O)."""
        now = self._clock()
        state = self._buckets.get(bucket)
        if state is None:
            self._make_room(now)
            state = self._buckets[bucket] = TokenBucket(float(self.burst), now)
        else:
            self._buckets.move_to_end(bucket)
        return state.take(now=now, rate=self.rate, burst=self.burst)

    async def take(self, bucket: str) -> Decision:
        return self.take_now(bucket)

    async def aclose(self) -> None:
        self._buckets.clear()

    def _make_room(self, now: float) -> None:
        # The oldest-touched buckets come first: drop those already full again (losing
        # nothing), and if that frees no room, the least recently used one regardless.
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest.full_at(rate=self.rate, burst=self.burst) > now:
                break
            buckets.popitem(last=False)
        while len(buckets) >= self.max_keys:
            buckets.popitem(last=False)


# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst. Redis' own clock, so every process
# agrees. Returns {allowed (0/1), seconds to wait as a string (Lua floats lose precision as
# integers)}. The key expires once the bucket would be full again.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'updated', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.6f', wait)}
"""


class RedisLimiter:
    """Buckets shared by every process through Redis; this process's own when it is down."""

    def __init__(self, url: str, *, rate: float, burst: int, fallback: LocalLimiter) -> None:
        self.url = url
        self.rate = rate
        self.burst = max(1, burst)
        self.fallback = fallback
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._last_warning = -math.inf

    def _connect(self) -> Any:
        if self._script is None:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
            self._script = self._client.register_script(TOKEN_BUCKET_LUA)
        return self._script

    async def take(self, bucket: str) -> Decision:
        try:
            script = self._connect()
            allowed, wait = await script(keys=[REDIS_PREFIX + bucket], args=[self.rate, self.burst])
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._last_warning >= FALLBACK_LOG_INTERVAL:
                self._last_warning = now
                log.warning("rate limit store unreachable (%s); limiting per process", exc)
            return await self.fallback.take(bucket)
        return Decision(bool(int(allowed)), float(wait))

    async def aclose(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await client.aclose()
        await self.fallback.aclose()


def redis_url_for(settings: Settings) -> str | None:
    """The Redis that holds shared buckets, or None for buckets in each process."""
    url = settings.rate_limit_redis_url.strip()
    if not url:
        url = settings.broadcast_url
    return url if urlparse(url).scheme in ("redis", "rediss") else None


def make_limiter(settings: Settings) -> Limiter:
    """The limiter these settings ask for."""
    local = LocalLimiter(
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        max_keys=settings.rate_limit_max_keys,
    )
    url = redis_url_for(settings)
    if url is None:
        return local
    return RedisLimiter(
        url, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst, fallback=local
    )


def bucket_name(secret: str) -> str:
    """Buckets are named by the key's SHA-256: the key itself is never kept."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def header_secrets(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every key presented in `Authorization` (Bearer or `Token token=`) or `X-API-Key`.

    All of them are charged: an endpoint reads one of these headers, and an extra made-up
    header must not let a caller slip its real key past its bucket."""
    found: list[str] = []
    for name, raw in headers:
        value = ""
        if name == b"authorization":
            scheme, _, rest = raw.decode("latin-1").strip().partition(" ")
            rest = rest.strip()
            if scheme.lower() == "bearer":
                value = rest
            elif scheme.lower() == "token" and rest.startswith("token="):
                value = rest[6:]
        elif name == b"x-api-key":
            value = raw.decode("latin-1").strip()
        if value and value not in found:
            found.append(value)
    return found


def body_routing_key(body: bytes) -> str | None:
    """`routing_key` of a JSON object body, if it has a usable one."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    key = parsed.get("routing_key") if isinstance(parsed, dict) else None
    return key if isinstance(key, str) and key else None


def refusal(decision: Decision) -> tuple[int, str]:
    """A refused decision's `Retry-After` (whole seconds, at least 1) and its message."""
    seconds = max(1, math.ceil(decision.retry_after))
    return seconds, f"Too many requests for this key; retry after {seconds} s."


class RateLimit:
    """ASGI middleware: one token per keyed HTTP request, 429 when the bucket is empty."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        pagerduty_paths: frozenset[str] = frozenset(),
        limiter: Limiter | None = None,
    ) -> None:
        self.app = app
        self.enabled = settings.rate_limit_per_second > 0
        self.pagerduty_paths = pagerduty_paths
        if limiter is None and self.enabled:  # (a limiter with no keys yet is falsy)
            limiter = make_limiter(settings)
        self.limiter = limiter

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Passing a WebSocket on keeps no frame of this middleware for the connection's life.
        if scope["type"] == "lifespan":
            return self.app(scope, receive, self._closing_on_shutdown(send))
        if scope["type"] != "http" or self.limiter is None:
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.limiter is not None
        secrets = header_secrets(scope["headers"])
        if scope["path"] in ROUTING_KEY_PATHS:
            body, receive = await _buffer(receive)
            routing_key = body_routing_key(body) if body is not None else None
            if routing_key is not None and routing_key not in secrets:
                secrets.append(routing_key)
        refused: Decision | None = None
        for secret in secrets:
            decision = await self.limiter.take(bucket_name(secret))
            if not decision.allowed and (
                refused is None or decision.retry_after > refused.retry_after
            ):
                refused = decision
        if refused is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope["path"], refused)(scope, receive, send)

    def _refuse(self, path: str, decision: Decision) -> JSONResponse:
        seconds, message = refusal(decision)
        body = error_body("RATE_LIMITED", message)
        if path in self.pagerduty_paths:
            body = pagerduty_error_body(429, "RATE_LIMITED", message, [message])
        elif path == "/graphql":  # what GraphQL clients read, beside the documented shape
            body["errors"] = [{"message": message, "extensions": {"code": "RATE_LIMITED"}}]
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(seconds)})

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown") and self.limiter is not None:
                await self.limiter.aclose()
            await send(message)

        return wrapped


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole request body and return it with a `receive` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            replay_message: Message = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            replay_message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return replay_message
        return await receive()

    body = replay_message.get("body") if replay_message["type"] == "http.request" else None
    return body, replay
