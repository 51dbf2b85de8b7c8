"""A run's agent events apply in the order they arrived, whichever of the workspace's keys
sent them, even where the first one's wait before its batch (its key's rate limit, a round
trip to Redis when buckets are shared) is the longer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from opsgraph.app import create_app
from opsgraph.ratelimit import LocalLimiter, bucket_name
from opsgraph.settings import Settings
from resolvers.auth import Scope
from tests.agent_helpers import CURL_TOOL_CALLED, api_key
from tests.asgi import running
from tests.conftest import Tenant, with_settings

COMPLETED = {
    "eventId": "evt_done",
    "runId": "run_001",
    "agentId": "my-agent",
    "timestamp": "2026-03-19T10:00:02Z",
    "eventType": "tool.completed",
    "metadata": {"toolCallId": "tc_001", "outputPayload": {"ok": True}},
}


async def test_a_run_s_events_from_two_keys_apply_as_they_arrived(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    calling = await tenant.key(Scope.EVENTS_WRITE, name="agent")
    finishing = await tenant.key(Scope.EVENTS_WRITE, name="runner")
    slow_bucket = bucket_name(calling)
    in_limit = asyncio.Event()
    take = LocalLimiter.take

    async def slow_take(self: LocalLimiter, bucket: str) -> Any:
        if bucket == slow_bucket:  # the first key's round trip is the slower
            in_limit.set()
            await asyncio.sleep(0.2)
        return await take(self, bucket)

    monkeypatch.setattr(LocalLimiter, "take", slow_take)
    limited = with_settings(
        settings, broadcast_url="memory://", rate_limit_per_second=1000, rate_limit_burst=1000
    )
    app = create_app(limited, manage_database=False)
    async with running(app) as client:
        called = asyncio.create_task(
            client.post("/v1/events", headers=api_key(calling), content=CURL_TOOL_CALLED)
        )
        await asyncio.wait_for(in_limit.wait(), 10)  # it has arrived
        done = await client.post(
            "/v1/events", headers=api_key(finishing), content=json.dumps(COMPLETED)
        )
        call = await called
    assert call.status_code == 200, call.text
    assert done.status_code == 200, done.text
