"""Rate limits per key: a token bucket per presented key (or routing key), 429 with
`Retry-After` in the documented shape, bounded memory, and one limit shared by every
process through Redis."""

from __future__ import annotations

import logging
import socket
from typing import Any

import httpx
import pytest
from redis import asyncio as redis

from opsgraph.app import create_app
from opsgraph.ratelimit import (
    REDIS_PREFIX,
    LocalLimiter,
    bucket_name,
    header_secrets,
    redis_url_for,
)
from opsgraph.settings import Settings
from resolvers.auth import Scope
from tests.asgi import running
from tests.conftest import GraphQL, Tenant, with_settings
from tests.test_changes import SEED_EVENT, bearer, timeline_of

REDIS_URL = "redis://127.0.0.1:6379/0"
VIEWER = "{ viewer { name } }"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# The bucket itself, on a clock we move by hand.


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = LocalLimiter(rate=2.0, burst=3, max_keys=10, clock=clock)
    assert [limiter.take_now("k").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take_now("k")
    assert refused.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take_now("k").allowed
    assert not limiter.take_now("k").allowed
    clock.now += 10  # refills up to the burst, never beyond it
    assert [limiter.take_now("k").allowed for _ in range(4)] == [True, True, True, False]


def test_each_key_has_its_own_bucket() -> None:
    limiter = LocalLimiter(rate=1.0, burst=1, max_keys=10, clock=Clock())
    assert limiter.take_now("a").allowed
    assert not limiter.take_now("a").allowed
    assert limiter.take_now("b").allowed


def test_memory_is_bounded_by_dropping_the_least_recently_used() -> None:
    clock = Clock()
    limiter = LocalLimiter(rate=1.0, burst=5, max_keys=100, clock=clock)
    for number in range(1000):
        limiter.take_now(f"spray-{number}")
    assert len(limiter) == 100
    # A busy key in debt stays tracked (and refused) while idle keys make way.
    for _ in range(5):
        assert limiter.take_now("busy").allowed
    for number in range(150):
        limiter.take_now(f"other-{number}")
        if number % 50 == 0:
            assert not limiter.take_now("busy").allowed
    assert len(limiter) == 100
    assert not limiter.take_now("busy").allowed


def test_keys_are_read_from_every_documented_header() -> None:
    assert header_secrets([(b"authorization", b"Bearer og_abc")]) == ["og_abc"]
    assert header_secrets([(b"authorization", b"Token token=pd_abc")]) == ["pd_abc"]
    assert header_secrets([(b"x-api-key", b" og_xyz ")]) == ["og_xyz"]
    assert header_secrets([(b"authorization", b"Basic dXNlcg==")]) == []
    assert header_secrets([]) == []
    both = [(b"authorization", b"Bearer og_made_up"), (b"x-api-key", b"og_real")]
    assert header_secrets(both) == ["og_made_up", "og_real"]
    assert bucket_name("og_abc") == bucket_name("og_abc") != "og_abc"


def test_redis_is_used_when_configured_or_when_the_bus_is_redis() -> None:
    assert redis_url_for(Settings()) is None
    assert redis_url_for(Settings(broadcast_url=REDIS_URL)) == REDIS_URL
    assert redis_url_for(Settings(broadcast_url="postgres://x/y")) is None
    assert redis_url_for(Settings(rate_limit_redis_url="redis://other:6379/1")) == (
        "redis://other:6379/1"
    )
    assert redis_url_for(Settings(broadcast_url=REDIS_URL, rate_limit_redis_url="memory://")) is (
        None
    )


# Through the app, buckets in the process.


def limited(settings: Settings, **changes: Any) -> Settings:
    # A token each 100 s: none comes back while a test runs, however loaded the machine (at
    # 0.5/s, three posts that took over 2 s on a loaded run left the fourth a token).
    base = {"rate_limit_per_second": 0.01, "rate_limit_burst": 3, **changes}
    return with_settings(settings, **base)


def assert_rate_limited(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "100"  # one token at 0.01/s, in whole seconds
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "RATE_LIMITED"
    assert "retry after 100 s" in body["error"]["message"]
    return body


async def test_a_key_over_its_burst_gets_429_and_others_do_not(
    settings: Settings, tenant: Tenant, make_tenant: Any, gql: GraphQL
) -> None:
    other = await make_tenant()
    app = create_app(limited(settings, broadcast_url="memory://"), manage_database=False)
    async with running(app) as client:
        for _ in range(3):
            response = await client.post("/events", headers=bearer(tenant.writer), json=SEED_EVENT)
            assert response.status_code == 201
        refused = await client.post(
            "/events", headers=bearer(tenant.writer), json={**SEED_EVENT, "name": "refused"}
        )
        assert set(assert_rate_limited(refused)) == {"error"}
        # Another key (same workspace or another) has its own bucket.
        other_key = await tenant.key(Scope.EVENTS_WRITE, name="second")
        ok = await client.post("/events", headers=bearer(other_key), json=SEED_EVENT)
        assert ok.status_code == 201
        ok = await client.post("/events", headers=bearer(other.writer), json=SEED_EVENT)
        assert ok.status_code == 201
        # No key at all is not rate limited here: it is refused by authentication.
        anonymous = await client.post("/events", json=SEED_EVENT)
        assert anonymous.status_code == 401
    names = [entry["summary"] for entry in await timeline_of(gql, tenant.reader, first=50)]
    assert "refused" not in names and len(names) == 4


async def test_graphql_over_http_and_x_api_key_endpoints_are_limited(
    settings: Settings, tenant: Tenant
) -> None:
    app = create_app(limited(settings, broadcast_url="memory://"), manage_database=False)
    async with running(app) as client:
        for _ in range(3):
            response = await client.post(
                "/graphql", headers=bearer(tenant.reader), json={"query": VIEWER}
            )
            assert response.status_code == 200 and response.json()["data"]["viewer"]
        body = assert_rate_limited(
            await client.post("/graphql", headers=bearer(tenant.reader), json={"query": VIEWER})
        )
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # X-API-Key (agent events) is keyed the same way: the same key shares its bucket.
        body = assert_rate_limited(
            await client.get("/v1/approvals/ap_unknown", headers={"X-API-Key": tenant.reader})
        )
        assert set(body) == {"error"}


async def test_pagerduty_endpoints_answer_429_in_both_shapes(
    settings: Settings, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("pd-limited")
    app = create_app(limited(settings, broadcast_url="memory://"), manage_database=False)
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "payload": {"summary": "disk full", "source": "host-1", "severity": "critical"},
    }
    async with running(app) as client:
        for _ in range(3):
            response = await client.post("/v2/enqueue", json=event)
            assert response.status_code == 202, response.text
        body = assert_rate_limited(await client.post("/v2/enqueue", json=event))
        assert body["status"] == "error" and body["errors"] == [body["error"]["message"]]
        assert body["message"] == body["error"]["message"]
        # /v2/change/enqueue shares the routing key's bucket.
        change = {"routing_key": routing_key, "payload": {"summary": "deploy", "source": "ci"}}
        assert_rate_limited(await client.post("/v2/change/enqueue", json=change))
        # /api/events is keyed by its bearer key, not by the routing key in the body.
        for _ in range(3):
            response = await client.post(
                "/api/events", headers=bearer(tenant.writer), json={**event, "dedup_key": "d"}
            )
            assert response.status_code == 202, response.text
        body = assert_rate_limited(
            await client.post(
                "/api/events", headers=bearer(tenant.writer), json={**event, "dedup_key": "d"}
            )
        )
        assert body["status"] == "error"
    incidents = await gql("{ incidents { edges { node { alertCount } } } }", tenant.reader)
    assert incidents.errors is None, incidents.errors
    counts = sorted(edge["node"]["alertCount"] for edge in incidents.data["incidents"]["edges"])
    assert sum(counts) == 6  # 3 + 3 accepted triggers; the refused ones stored nothing


async def test_a_made_up_extra_header_does_not_dodge_the_bucket(
    settings: Settings, tenant: Tenant
) -> None:
    routing_key = await tenant.service("pd-dodge")
    app = create_app(limited(settings, broadcast_url="memory://"), manage_database=False)
    event = {"routing_key": routing_key, "event_action": "acknowledge", "dedup_key": "x"}
    async with running(app) as client:
        for number in range(4):
            made_up = {"Authorization": f"Bearer og_made_up_{number}"}
            agent = await client.get(
                "/v1/approvals/ap_x", headers={**made_up, "X-API-Key": tenant.reader}
            )
            enqueue = await client.post("/v2/enqueue", json=event, headers=made_up)
            if number < 3:
                assert agent.status_code == 404 and enqueue.status_code == 202, enqueue.text
        assert_rate_limited(agent)
        assert_rate_limited(enqueue)


async def test_limit_off_by_default(settings: Settings, tenant: Tenant) -> None:
    app = create_app(with_settings(settings, rate_limit_burst=1), manage_database=False)
    async with running(app) as client:
        for _ in range(5):
            response = await client.post(
                "/graphql", headers=bearer(tenant.reader), json={"query": VIEWER}
            )
            assert response.status_code == 200


# Shared through Redis: two app instances (as two processes would) draw from one bucket.


async def test_two_instances_share_one_limit_through_redis(
    settings: Settings, tenant: Tenant
) -> None:
    shared = limited(settings, rate_limit_burst=4, rate_limit_redis_url=REDIS_URL)
    first = create_app(shared, manage_database=False)
    second = create_app(shared, manage_database=False)
    async with running(first) as a, running(second) as b:
        statuses = []
        for client in (a, b, a, b, a, b):
            response = await client.post(
                "/graphql", headers=bearer(tenant.reader), json={"query": VIEWER}
            )
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert_rate_limited(
            await b.post("/graphql", headers=bearer(tenant.reader), json={"query": VIEWER})
        )
    store = redis.Redis.from_url(REDIS_URL)
    try:
        # The bucket is named by the key's hash (never the key) and expires on its own.
        name = REDIS_PREFIX + bucket_name(tenant.reader)
        assert await store.exists(name)
        assert 0 < await store.pttl(name) <= 401_000  # time to fill 4 tokens at 0.01/s, 1 s
        assert not [key async for key in store.scan_iter(match=f"*{tenant.reader}*")]
    finally:
        await store.aclose()


async def test_a_bus_on_redis_shares_the_limit_too(settings: Settings, tenant: Tenant) -> None:
    shared = limited(settings, rate_limit_burst=2, broadcast_url=REDIS_URL)
    first = create_app(shared, manage_database=False)
    second = create_app(shared, manage_database=False)
    async with running(first) as a, running(second) as b:
        key = {"X-API-Key": tenant.reader}
        statuses = [(await c.get("/v1/approvals/ap_x", headers=key)).status_code for c in (a, b)]
        assert 429 not in statuses
        assert (await a.get("/v1/approvals/ap_x", headers=key)).status_code == 429


async def test_redis_down_falls_back_to_limits_per_process(
    settings: Settings, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    app = create_app(limited(settings, rate_limit_redis_url=dead), manage_database=False)
    with caplog.at_level(logging.WARNING, logger="opsgraph.ratelimit"):
        async with running(app) as client:
            statuses = []
            for _ in range(4):
                response = await client.post(
                    "/graphql", headers=bearer(tenant.reader), json={"query": VIEWER}
                )
                statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    warnings = [r.getMessage() for r in caplog.records if r.name == "opsgraph.ratelimit"]
    assert len(warnings) == 1 and "limiting per process" in warnings[0]
    assert tenant.reader not in caplog.text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
