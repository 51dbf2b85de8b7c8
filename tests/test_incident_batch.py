"""Group commit of triggers: a batch applies its triggers in order, as one after the other
would, answers each with the incident as that trigger left it, and a batch the database
refuses is stored trigger by trigger, with nothing lost or counted twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError

from models.incident import Incident, IncidentAlert, Severity
from models.timeline import TimelineEntry
from models.workspace import Service
from resolvers import auth, incident_batch
from resolvers.batching import bad_value
from resolvers.incident_batch import PendingEvent, StoredEvent, _store_each
from resolvers.incident_events import AlertData, EventAction, IncidentEvent
from tests.conftest import GraphQL, Tenant

SEND = """
mutation($input: IncidentEventInput!) {
  sendIncidentEvent(input: $input) {
    ... on IncidentEventAccepted { outcome incident { id alertCount summary } }
  }
}
"""


async def service(tenant: Tenant, name: str) -> Service:
    found = await auth.service_for_routing_key(routing_key=await tenant.service(name))
    assert found is not None
    return found


def trigger(tenant: Tenant, service: Service, key: str, summary: str) -> PendingEvent:
    alert = AlertData(summary=summary, source="prometheus", severity=Severity.CRITICAL)
    return PendingEvent(
        workspace_id=tenant.workspace_id,
        actor="monitor",
        service=service,
        event=IncidentEvent(action=EventAction.TRIGGER, dedup_key=key, alert=alert),
    )


def move(tenant: Tenant, service: Service, key: str, action: EventAction) -> PendingEvent:
    return PendingEvent(
        workspace_id=tenant.workspace_id,
        actor="monitor",
        service=service,
        event=IncidentEvent(action=action, dedup_key=key),
    )


def before_insert(
    monkeypatch: pytest.MonkeyPatch, model: type[Any], hook: Callable[[list[Any]], Awaitable[None]]
) -> None:
    """Await `hook(rows)` before each batch writes its `model` rows (it may raise)."""
    record = incident_batch.record_entries

    async def hooked(new: Any, *, inserting: Any = (), updating: Any = ()) -> Any:
        for rows in inserting:
            if rows and isinstance(rows[0], model):
                await hook(list(rows))
        return await record(new, inserting=inserting, updating=updating)

    monkeypatch.setattr(incident_batch, "record_entries", hooked)


def count_incident_inserts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each INSERT of incidents from now on (one entry per statement)."""
    inserts: list[int] = []

    async def count(rows: list[Incident]) -> None:
        inserts.append(len(rows))

    before_insert(monkeypatch, Incident, count)
    return inserts


async def history(tenant: Tenant) -> list[tuple[str, str, int]]:
    """The workspace's entries in order: kind, dedup key, the alert count they report."""
    rows = await TimelineEntry.filter(workspace_id=tenant.workspace_id).order_by("seq")
    return [
        (row.kind.value, row.details["dedup_key"], row.details["alert_count"])
        for row in rows
        if row.details
    ]


async def incidents(tenant: Tenant) -> dict[str, tuple[int, str, int]]:
    """Open incidents by dedup key: alert count, latest summary, alert rows kept."""
    found = {}
    for row in await Incident.filter(workspace_id=tenant.workspace_id, open_marker=1):
        alerts = await IncidentAlert.filter(incident_id=row.id).count()
        found[row.dedup_key] = (row.alert_count, row.summary, alerts)
    return found


async def test_a_batch_applies_its_triggers_in_order(
    tenant: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, web = await service(tenant, "api"), await service(tenant, "web")
    first = await gql(
        SEND,
        tenant.writer,
        input={
            "serviceId": api.id,
            "eventAction": "TRIGGER",
            "dedupKey": "cpu",
            "payload": {"summary": "cpu 91%", "source": "prometheus", "severity": "CRITICAL"},
        },
    )
    assert first.errors is None, first.errors
    open_cpu = first.data["sendIncidentEvent"]["incident"]["id"]
    inserts = count_incident_inserts(monkeypatch)

    outcomes = await _store_each(
        [
            trigger(tenant, api, "cpu", "cpu 95%"),  # the open incident
            trigger(tenant, api, "disk", "disk 80%"),  # opens
            trigger(tenant, web, "cpu", "web cpu"),  # same key, other service: opens
            trigger(tenant, api, "disk", "disk 90%"),  # the one opened just before
            trigger(tenant, api, "cpu", "cpu 99%"),
        ]
    )

    stored = [outcome for outcome in outcomes if isinstance(outcome, StoredEvent)]
    assert len(stored) == 5, outcomes
    assert inserts == [2]  # one transaction opened both, not each trigger alone
    assert [s.step.value for s in stored] == ["UPDATE", "OPEN", "OPEN", "UPDATE", "UPDATE"]
    assert [(s.incident.alert_count, s.incident.summary) for s in stored] == [
        (2, "cpu 95%"),
        (1, "disk 80%"),
        (1, "web cpu"),
        (2, "disk 90%"),
        (3, "cpu 99%"),
    ]
    assert stored[0].incident.id == stored[4].incident.id == open_cpu
    assert stored[1].incident.id == stored[3].incident.id != stored[2].incident.id
    assert [s.entry.seq for s in stored] == [2, 3, 4, 5, 6]
    assert await history(tenant) == [
        ("INCIDENT_TRIGGERED", "cpu", 1),
        ("INCIDENT_UPDATED", "cpu", 2),
        ("INCIDENT_TRIGGERED", "disk", 1),
        ("INCIDENT_TRIGGERED", "cpu", 1),
        ("INCIDENT_UPDATED", "disk", 2),
        ("INCIDENT_UPDATED", "cpu", 3),
    ]
    by_service = {
        (row.service_id, row.dedup_key): (row.alert_count, row.summary)
        for row in await Incident.filter(workspace_id=tenant.workspace_id)
    }
    assert by_service == {
        (api.id, "cpu"): (3, "cpu 99%"),
        (api.id, "disk"): (2, "disk 90%"),
        (web.id, "cpu"): (1, "web cpu"),
    }
    assert await IncidentAlert.filter(incident__workspace_id=tenant.workspace_id).count() == 6


async def test_a_batch_refused_once_is_stored_again_whole(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await service(tenant, "api")
    await _store_each([trigger(tenant, api, "cpu", "cpu 91%")])
    calls: list[int] = []
    record = incident_batch.record_entries

    async def refuse_first(new: Any, **rows: Any) -> Any:
        stored = await record(new, **rows)
        calls.append(len(new))
        if len(calls) == 1:  # after the batch wrote everything: none of it may stay
            raise IntegrityError("refused")
        return stored

    monkeypatch.setattr(incident_batch, "record_entries", refuse_first)

    outcomes = await _store_each(
        [
            trigger(tenant, api, "cpu", "cpu 95%"),
            trigger(tenant, api, "disk", "disk 80%"),
            trigger(tenant, api, "disk", "disk 90%"),
        ]
    )

    assert calls == [3, 3]  # refused, then the whole batch again on fresh state
    assert [type(outcome) for outcome in outcomes] == [StoredEvent] * 3
    assert await incidents(tenant) == {"cpu": (2, "cpu 95%", 2), "disk": (2, "disk 90%", 2)}
    assert await history(tenant) == [
        ("INCIDENT_TRIGGERED", "cpu", 1),
        ("INCIDENT_UPDATED", "cpu", 2),
        ("INCIDENT_TRIGGERED", "disk", 1),
        ("INCIDENT_UPDATED", "disk", 2),
    ]


async def test_a_trigger_refused_alone_fails_alone(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await service(tenant, "api")

    async def refuse_disk(alerts: list[IncidentAlert]) -> None:
        if any(alert.summary.startswith("disk") for alert in alerts):
            raise IntegrityError("refused")

    before_insert(monkeypatch, IncidentAlert, refuse_disk)

    outcomes = await _store_each(
        [trigger(tenant, api, "cpu", "cpu 95%"), trigger(tenant, api, "disk", "disk 80%")]
    )

    assert isinstance(outcomes[0], StoredEvent) and isinstance(outcomes[1], IntegrityError)
    assert await incidents(tenant) == {"cpu": (1, "cpu 95%", 1)}
    assert await history(tenant) == [("INCIDENT_TRIGGERED", "cpu", 1)]


async def test_two_batches_opening_one_key_at_once_leave_one_incident(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' batches (here two tasks on two connections) both find the key with
    nothing open and both insert: the one that loses the unique key stores its trigger
    again, as an update of the incident the other opened."""
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("SQLite runs one transaction at a time: two batches cannot interleave")
    api = await service(tenant, "api")
    arrived: list[int] = []
    both = asyncio.Event()

    async def meet(opened: list[Incident]) -> None:
        arrived.append(len(opened))
        if len(arrived) <= 2:  # both batches read "nothing open" before either inserts
            if len(arrived) == 2:
                both.set()
            await asyncio.wait_for(both.wait(), timeout=10)

    before_insert(monkeypatch, Incident, meet)

    first, second = await asyncio.gather(
        _store_each([trigger(tenant, api, "cpu", "from a")]),
        _store_each([trigger(tenant, api, "cpu", "from b")]),
    )

    assert arrived == [1, 1]  # the loser's second attempt updated instead of opening
    outcomes = [*first, *second]
    assert all(isinstance(outcome, StoredEvent) for outcome in outcomes), outcomes
    steps = [o.step.value for o in outcomes if isinstance(o, StoredEvent)]
    assert sorted(steps) == ["OPEN", "UPDATE"]
    [(count, _, alerts)] = (await incidents(tenant)).values()
    assert (count, alerts) == (2, 2)
    kinds = [kind for kind, _, _ in await history(tenant)]
    assert kinds == ["INCIDENT_TRIGGERED", "INCIDENT_UPDATED"]


async def test_routing_keys_looked_up_together_each_find_their_own_service(
    tenant: Tenant, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await make_tenant()
    api_key, web_key = await tenant.service("api"), await other.service("web")
    queries: list[int] = []
    work = auth.ROUTING_KEY_LOOKUP._work

    async def counted(digests: Any) -> Any:
        queries.append(len(digests))
        return await work(digests)

    monkeypatch.setattr(auth.ROUTING_KEY_LOOKUP, "_work", counted)

    asked = [api_key, web_key, "R-no-such-key", api_key, web_key]
    found = await asyncio.gather(*(auth.service_for_routing_key(routing_key=k) for k in asked))

    names = [(s.workspace_id, s.name) if s else None for s in found]
    assert names == [
        (tenant.workspace_id, "api"),
        (other.workspace_id, "web"),
        None,
        (tenant.workspace_id, "api"),
        (other.workspace_id, "web"),
    ]
    assert queries == [5]  # one query for the five


async def test_a_value_the_database_refuses_fails_its_trigger_alone(tenant: Tenant) -> None:
    api = await service(tenant, "api")
    too_long = replace(
        trigger(tenant, api, "disk", "disk 80%"), actor="x" * 201
    )  # the alert's actor column holds 200

    outcomes = await _store_each(
        [trigger(tenant, api, "cpu", "cpu 95%"), too_long, trigger(tenant, api, "cpu", "cpu 99%")]
    )

    assert isinstance(outcomes[0], StoredEvent) and isinstance(outcomes[2], StoredEvent)
    assert bad_value(outcomes[1]), outcomes[1]  # told to the caller as their input's fault
    assert await incidents(tenant) == {"cpu": (2, "cpu 99%", 2)}
    assert await history(tenant) == [
        ("INCIDENT_TRIGGERED", "cpu", 1),
        ("INCIDENT_UPDATED", "cpu", 2),
    ]


async def test_a_trigger_on_an_acknowledged_incident_keeps_it_acknowledged(
    tenant: Tenant, gql: GraphQL
) -> None:
    api = await service(tenant, "api")
    [opened] = await _store_each([trigger(tenant, api, "cpu", "cpu 91%")])
    assert isinstance(opened, StoredEvent)
    acked = await gql(
        "mutation($id: ID!) { acknowledgeIncident(id: $id) { status } }",
        tenant.writer,
        id=opened.incident.id,
    )
    assert acked.errors is None, acked.errors

    [again] = await _store_each([trigger(tenant, api, "cpu", "cpu 95%")])

    assert isinstance(again, StoredEvent) and again.step.value == "UPDATE"
    assert again.incident is not None and opened.incident is not None
    assert again.incident.id == opened.incident.id
    assert again.incident.status.value == "acknowledged"
    row = await Incident.get(id=opened.incident.id)
    assert (row.status.value, row.acknowledged_by, row.alert_count) == (
        "acknowledged",
        "ci-pipeline",
        2,
    )
    last = await TimelineEntry.filter(workspace_id=tenant.workspace_id).order_by("-seq").first()
    assert last is not None and last.details["status"] == "acknowledged"


async def test_acknowledges_and_resolves_take_their_turn_in_the_batch(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await service(tenant, "api")
    [first] = await _store_each([trigger(tenant, api, "cpu", "cpu 91%")])
    assert isinstance(first, StoredEvent) and first.incident is not None
    inserts = count_incident_inserts(monkeypatch)

    outcomes = await _store_each(
        [
            move(tenant, api, "cpu", EventAction.ACKNOWLEDGE),
            trigger(tenant, api, "cpu", "cpu 95%"),  # acknowledged: still counts
            move(tenant, api, "cpu", EventAction.ACKNOWLEDGE),  # already acknowledged
            move(tenant, api, "cpu", EventAction.RESOLVE),
            move(tenant, api, "cpu", EventAction.ACKNOWLEDGE),  # resolved just before
            trigger(tenant, api, "cpu", "cpu 99%"),  # opens a new one
            move(tenant, api, "disk", EventAction.RESOLVE),  # never had one
        ]
    )

    stored = [outcome for outcome in outcomes if isinstance(outcome, StoredEvent)]
    assert len(stored) == 7, outcomes
    assert inserts == [1]  # one transaction: the resolve freed the key before the new open
    assert [(s.step.value, s.reason) for s in stored] == [
        ("ACKNOWLEDGE", None),
        ("UPDATE", None),
        ("DROP", "the incident is already acknowledged"),
        ("RESOLVE", None),
        ("DROP", "the incident is already resolved"),
        ("OPEN", None),
        ("DROP", "no incident has this dedup_key"),
    ]
    old, new = first.incident.id, stored[5].incident.id if stored[5].incident else None
    assert [s.incident.id if s.incident else None for s in stored] == [old] * 5 + [new, None]
    assert [s.incident.status.value for s in stored[:6] if s.incident] == [
        "acknowledged",
        "acknowledged",
        "acknowledged",
        "resolved",
        "resolved",
        "triggered",
    ]
    rows = {row.id: row for row in await Incident.filter(workspace_id=tenant.workspace_id)}
    assert (rows[old].status.value, rows[old].alert_count, rows[old].open_marker) == (
        "resolved",
        2,
        None,
    )
    assert (rows[old].acknowledged_by, rows[old].resolved_by) == ("monitor", "monitor")
    assert (rows[new].status.value, rows[new].alert_count, rows[new].summary) == (
        "triggered",
        1,
        "cpu 99%",
    )
    kinds = [
        row.kind.value
        for row in await TimelineEntry.filter(workspace_id=tenant.workspace_id).order_by("seq")
    ]
    assert kinds == [
        "INCIDENT_TRIGGERED",
        "INCIDENT_ACKNOWLEDGED",
        "INCIDENT_UPDATED",
        "INCIDENT_DROPPED",
        "INCIDENT_RESOLVED",
        "INCIDENT_DROPPED",
        "INCIDENT_TRIGGERED",
        "INCIDENT_DROPPED",
    ]
