"""Approval subscriptions: the live queue and one approval until it is settled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry

from opsgraph.bus import Bus
from opsgraph.settings import Settings
from schema.context import Context
from tests.agent_helpers import CREATE_POLICY, DECIDE, RECORD, SEED_POLICY, tool_called
from tests.conftest import Tenant

PENDING = "subscription { pendingApprovals { kind approval { id status comment } } }"
ONE = "subscription($id: ID!) { approval(id: $id) { id status decidedBy } }"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    live = Bus("memory://", heartbeat_seconds=1.0)
    await live.connect()
    yield live
    await live.disconnect()


class Api:
    def __init__(self, schema: strawberry.Schema, settings: Settings, bus: Bus) -> None:
        self.schema, self.settings, self.bus = schema, settings, bus

    def context(self, key: str) -> Context:
        return Context(settings=self.settings, publisher=self.bus, secret=key, hub=self.bus.hub)

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
