"""Race safety: concurrent events on one dedup key, on SQLite and PostgreSQL, plus the pure
dedup decision."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from models.incident import Incident, IncidentStatus
from resolvers.incident_events import EventAction, Plan, Step, plan_event
from tests.conftest import GraphQL, Tenant

TRIGGER: dict[str, Any] = {
    "event_action": "trigger",
    "dedup_key": "server-cpu-high",
    "payload": {"summary": "CPU usage above 90%", "source": "prometheus", "severity": "critical"},
}

STATE = """
{ incidents { nodes { id status alertCount alerts(first: 200) { summary } } }
  timeline(first: 200) { nodes { kind } } }
"""


async def state(gql: GraphQL, key: str) -> tuple[list[dict[str, Any]], Counter[str]]:
    result = await gql(STATE, key)
    assert result.errors is None, result.errors
    kinds = Counter(node["kind"] for node in result.data["timeline"]["nodes"])
    return result.data["incidents"]["nodes"], kinds


async def test_fifty_concurrent_triggers_open_exactly_one_incident(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = {"Authorization": f"Bearer {tenant.writer}"}

    async def post(number: int) -> httpx.Response:
        payload = {**TRIGGER["payload"], "summary": f"CPU usage above 90% (#{number})"}
        body = {**TRIGGER, "routing_key": routing_key, "payload": payload}
        return await client.post("/api/events", headers=headers, json=body)

    responses = await asyncio.gather(*(post(number) for number in range(50)))
    assert [response.status_code for response in responses] == [202] * 50
    assert len({response.json()["incident_key"] for response in responses}) == 1

    [incident], kinds = await state(gql, tenant.reader)
    assert incident["status"] == "TRIGGERED"
    assert incident["alertCount"] == 50
    assert len(incident["alerts"]) == 50
    assert {alert["summary"] for alert in incident["alerts"]} == {
        f"CPU usage above 90% (#{number})" for number in range(50)
    }
    assert kinds == {"INCIDENT_TRIGGERED": 1, "INCIDENT_UPDATED": 49}


async def test_concurrent_resolves_and_acknowledges_move_it_once(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = {"Authorization": f"Bearer {tenant.writer}"}
    await client.post("/api/events", headers=headers, json={**TRIGGER, "routing_key": routing_key})

    async def post(action: str) -> httpx.Response:
        body = {"routing_key": routing_key, "event_action": action, "dedup_key": "server-cpu-high"}
        return await client.post("/api/events", headers=headers, json=body)

    actions = ["acknowledge", "resolve"] * 10
    responses = await asyncio.gather(*(post(action) for action in actions))
    assert {response.status_code for response in responses} == {202}

    [incident], kinds = await state(gql, tenant.reader)
    assert incident["status"] == "RESOLVED"
    assert kinds["INCIDENT_RESOLVED"] == 1
    assert kinds["INCIDENT_ACKNOWLEDGED"] <= 1
    assert kinds["INCIDENT_DROPPED"] == 20 - 1 - kinds["INCIDENT_ACKNOWLEDGED"]


async def test_triggers_racing_a_resolve_never_leave_two_open(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    routing_key = await tenant.service("api")
    headers = {"Authorization": f"Bearer {tenant.writer}"}
    trigger = {**TRIGGER, "routing_key": routing_key}
    resolve = {
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": "server-cpu-high",
    }
    await client.post("/api/events", headers=headers, json=trigger)
    bodies = [trigger] * 10 + [resolve] + [trigger] * 10
    responses = await asyncio.gather(
        *(client.post("/api/events", headers=headers, json=body) for body in bodies)
    )
    assert {response.status_code for response in responses} == {202}
    incidents, _ = await state(gql, tenant.reader)
    assert sum(1 for incident in incidents if incident["status"] != "RESOLVED") <= 1
    assert sum(incident["alertCount"] for incident in incidents) == 21


@pytest.mark.parametrize(
    ("action", "status", "known", "plan"),
    [
        (EventAction.TRIGGER, None, False, Plan(Step.OPEN)),
        (EventAction.TRIGGER, None, True, Plan(Step.OPEN)),
        (EventAction.TRIGGER, IncidentStatus.TRIGGERED, True, Plan(Step.UPDATE)),
        (EventAction.TRIGGER, IncidentStatus.ACKNOWLEDGED, True, Plan(Step.UPDATE)),
        (EventAction.ACKNOWLEDGE, IncidentStatus.TRIGGERED, True, Plan(Step.ACKNOWLEDGE)),
        (
            EventAction.ACKNOWLEDGE,
            IncidentStatus.ACKNOWLEDGED,
            True,
            Plan(Step.DROP, "the incident is already acknowledged"),
        ),
        (EventAction.RESOLVE, IncidentStatus.ACKNOWLEDGED, True, Plan(Step.RESOLVE)),
        (EventAction.RESOLVE, IncidentStatus.TRIGGERED, True, Plan(Step.RESOLVE)),
        (EventAction.RESOLVE, None, True, Plan(Step.DROP, "the incident is already resolved")),
        (EventAction.ACKNOWLEDGE, None, False, Plan(Step.DROP, "no incident has this dedup_key")),
    ],
)
def test_plan_event(
    action: EventAction, status: IncidentStatus | None, known: bool, plan: Plan
) -> None:
    assert plan_event(action, status, known=known) == plan


async def test_a_move_that_waited_for_the_incident_is_stamped_when_it_applies(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL
) -> None:
    """A resolve arriving while a trigger batch holds the incident waits for it: its
    `resolvedAt` comes after that batch's alerts, as its entry does on the timeline (it was
    the time it arrived, before alerts it came after)."""
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("SQLite runs one transaction at a time: nothing waits for a row")
    routing_key = await tenant.service("api")
    headers = {"Authorization": f"Bearer {tenant.writer}"}
    opened = await client.post(
        "/api/events", headers=headers, json={**TRIGGER, "routing_key": routing_key}
    )
    incident_id = opened.json()["incident_key"]
    resolve = "mutation($id: ID!) { resolveIncident(id: $id) { resolvedAt } }"
    locked = asyncio.Event()

    async def resolve_once_locked() -> Any:
        await locked.wait()
        return await gql(resolve, tenant.admin, id=incident_id)

    resolving = asyncio.ensure_future(resolve_once_locked())  # outside the transaction below
    async with in_transaction() as holder:  # as a trigger batch holds it
        await Incident.filter(id=incident_id).select_for_update(no_key=True).using_db(holder)
        locked.set()
        await asyncio.sleep(0.3)
        assert not resolving.done()  # it waits for the row
        released = datetime.now(UTC)
    result = await asyncio.wait_for(resolving, timeout=10)
    assert result.errors is None, result.errors
    assert datetime.fromisoformat(result.data["resolveIncident"]["resolvedAt"]) >= released
