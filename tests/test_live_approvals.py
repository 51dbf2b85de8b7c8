"""Approval subscriptions: the live queue and one approval until it is settled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry

from opsgraph.bus import Bus
from opsgraph.settings import Settings
from schema.context import Context
from schema.live_render import SharedReads
from tests.agent_helpers import CREATE_POLICY, DECIDE, RECORD, SEED_POLICY, tool_called
from tests.conftest import Tenant, memory_bus

PENDING = "subscription { pendingApprovals { kind approval { id status comment } } }"
ONE = "subscription($id: ID!) { approval(id: $id) { id status decidedBy } }"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with memory_bus(queue_size=1000) as live:
        yield live


class Api:
    def __init__(self, schema: strawberry.Schema, settings: Settings, bus: Bus) -> None:
        self.schema, self.settings, self.bus = schema, settings, bus
        self.shared_reads: SharedReads | None = None  # as the app has, when set

    def context(self, key: str) -> Context:
        return Context(
            settings=self.settings,
            publisher=self.bus,
            secret=key,
            hub=self.bus.hub,
            shared_reads=self.shared_reads,
        )

    async def run(self, document: str, key: str, **variables: Any) -> Any:
        result = await self.schema.execute(
            document, variable_values=variables, context_value=self.context(key)
        )
        assert result.errors is None, result.errors
        return result.data

    async def subscribe(self, document: str, key: str, **variables: Any) -> Any:
        return await self.schema.subscribe(
            document, variable_values=variables, context_value=self.context(key)
        )

    async def request_approval(self, tenant: Tenant, event_id: str) -> str:
        data = await self.run(
            RECORD,
            tenant.writer,
            input=tool_called(event_id, "tc_" + event_id, environment="production"),
        )
        approval_id: str = data["recordAgentEvent"]["approvalId"]
        assert approval_id
        return approval_id


async def take(stream: Any) -> Any:
    result = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert result.errors is None, result.errors
    return result.data


async def test_pending_queue_then_requests_and_decisions(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant
) -> None:
    api = Api(schema, settings, bus)
    await api.run(CREATE_POLICY, tenant.admin, input=SEED_POLICY)
    existing = await api.request_approval(tenant, "evt_1")

    stream = await api.subscribe(PENDING, tenant.reader)
    first = await take(stream)
    assert first["pendingApprovals"]["kind"] == "REQUESTED"
    assert first["pendingApprovals"]["approval"]["id"] == existing

    fresh = await api.request_approval(tenant, "evt_2")
    event = (await take(stream))["pendingApprovals"]
    assert event == {
        "kind": "REQUESTED",
        "approval": {"id": fresh, "status": "PENDING", "comment": None},
    }

    await api.run(DECIDE, tenant.admin, id=existing, decision="REJECT", comment="not today")
    event = (await take(stream))["pendingApprovals"]
    assert event == {
        "kind": "DECIDED",
        "approval": {"id": existing, "status": "REJECTED", "comment": "not today"},
    }
    await stream.aclose()


async def test_one_approval_until_it_is_settled(
    schema: strawberry.Schema, settings: Settings, bus: Bus, tenant: Tenant, make_tenant: Any
) -> None:
    api = Api(schema, settings, bus)
    await api.run(CREATE_POLICY, tenant.admin, input=SEED_POLICY)
    approval_id = await api.request_approval(tenant, "evt_1")

    stream = await api.subscribe(ONE, tenant.reader, id=approval_id)
    assert (await take(stream))["approval"]["status"] == "PENDING"
    await api.run(DECIDE, tenant.admin, id=approval_id, decision="APPROVE")
    settled = (await take(stream))["approval"]
    assert settled == {"id": approval_id, "status": "APPROVED", "decidedBy": "admin"}
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(stream.__anext__(), timeout=5)

    # Another workspace's key cannot follow it, even with the id.
    stranger = await make_tenant()
    other = await api.subscribe(ONE, stranger.reader, id=approval_id)
    result = await asyncio.wait_for(other.__anext__(), timeout=5)
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}


def approval_reads(caplog: Any) -> int:
    messages = [record.getMessage() for record in caplog.records]
    return sum(1 for m in messages if m.startswith("SELECT") and 'FROM "agent_approval"' in m)


async def test_subscribers_handed_the_same_entry_read_the_approval_once(
    schema: strawberry.Schema,
    settings: Settings,
    bus: Bus,
    tenant: Tenant,
    make_tenant: Any,
    caplog: Any,
) -> None:
    api = Api(schema, settings, bus)
    api.shared_reads = SharedReads(size=10)
    # What a decision reads by itself, in a workspace nobody follows.
    quiet = await make_tenant()
    await api.run(CREATE_POLICY, quiet.admin, input=SEED_POLICY)
    unwatched = await api.request_approval(quiet, "evt_1")
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        await api.run(DECIDE, quiet.admin, id=unwatched, decision="APPROVE")
    alone = approval_reads(caplog)
    caplog.clear()

    await api.run(CREATE_POLICY, tenant.admin, input=SEED_POLICY)
    approval_id = await api.request_approval(tenant, "evt_1")
    queues = [await api.subscribe(PENDING, tenant.reader) for _ in range(4)]
    followers = [await api.subscribe(ONE, tenant.reader, id=approval_id) for _ in range(4)]
    for stream in queues:
        assert (await take(stream))["pendingApprovals"]["kind"] == "REQUESTED"
    for stream in followers:
        assert (await take(stream))["approval"]["status"] == "PENDING"
    await asyncio.sleep(0.05)  # every generator waits on the hub now

    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        await api.run(DECIDE, tenant.admin, id=approval_id, decision="APPROVE")
        decided = [(await take(stream))["pendingApprovals"] for stream in queues]
        settled = [(await take(stream))["approval"] for stream in followers]
    assert {event["kind"] for event in decided} == {"DECIDED"}
    assert {event["approval"]["status"] for event in decided} == {"APPROVED"}
    assert settled == [{"id": approval_id, "status": "APPROVED", "decidedBy": "admin"}] * 4
    assert approval_reads(caplog) == alone + 1  # eight subscribers, one read between them
    for stream in queues + followers:
        await stream.aclose()


async def test_a_shared_read_that_fails_is_made_again_by_each_waiter() -> None:
    shared = SharedReads(size=10)
    release = asyncio.Event()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise ConnectionError("the database went away")
        return f"read {calls}"

    first = asyncio.create_task(shared.get("k", flaky))
    leaving = asyncio.create_task(shared.get("k", flaky))
    waiting = [asyncio.create_task(shared.get("k", flaky)) for _ in range(2)]
    await asyncio.sleep(0.01)
    leaving.cancel()  # a waiter whose client left does not cancel the read for the others
    await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(ConnectionError):
        await first
    assert sorted(await asyncio.gather(*waiting)) == ["read 2", "read 3"]
    assert leaving.cancelled()
    assert await shared.get("k", flaky) == "read 4"  # the failure was not kept
