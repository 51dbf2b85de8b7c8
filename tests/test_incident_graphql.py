"""Incidents over GraphQL: `sendIncidentEvent(s)`, `incidents`, `incident`, acknowledge,
resolve and annotate by people, and `suspectChanges`, on both databases."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.incident import IncidentStatus
from models.timeline import TimelineKind
from opsgraph.settings import Settings
from resolvers import incident_rows, incidents
from resolvers.auth import Scope
from resolvers.timeline import record_entry
from schema import build_schema
from schema.context import Context
from schema.incident_events import IncidentEventInput
from tests.conftest import GraphQL, Recorder, Tenant, walk_pages
from tests.input_hooks import built_both_ways
from tests.test_timeline import b64

SEND = """
mutation($input: IncidentEventInput!) {
  sendIncidentEvent(input: $input) {
    __typename
    ... on IncidentEventAccepted { outcome dedupKey incidentKey reason entryId
      incident { id status alertCount service { name } } }
    ... on InvalidRoutingKey { code message }
    ... on InvalidEvent { code message fields { field message } }
  }
}
"""

INCIDENT = """
query($id: ID!) {
  incident(id: $id) {
    id status acknowledgedBy acknowledgedAt resolvedBy resolvedAt alertCount
    alerts { summary severity }
    timeline { kind summary actor details subject { __typename ... on Incident { id } } }
  }
}
"""

ACK = """mutation($id: ID!, $note: String) {
  acknowledgeIncident(id: $id, note: $note) { status acknowledgedBy } }"""
RESOLVE = """mutation($id: ID!, $note: String) {
  resolveIncident(id: $id, note: $note) { status resolvedBy } }"""
ANNOTATE = """mutation($id: ID!, $note: String!) {
  annotateIncident(id: $id, note: $note) { id status } }"""


def trigger(routing_key: str, dedup_key: str = "disk", **payload: Any) -> dict[str, Any]:
    body = {"summary": "Disk full", "source": "db-1", "severity": "ERROR", **payload}
    return {
        "eventAction": "TRIGGER",
        "routingKey": routing_key,
        "dedupKey": dedup_key,
        "payload": body,
    }


async def send(gql: GraphQL, key: str, event: dict[str, Any]) -> dict[str, Any]:
    result = await gql(SEND, key, input=event)
    assert result.errors is None, result.errors
    outcome: dict[str, Any] = result.data["sendIncidentEvent"]
    return outcome


async def test_send_incident_event_results(
    gql: GraphQL, tenant: Tenant, recorder: Recorder
) -> None:
    routing_key = await tenant.service("db")
    opened = await send(gql, tenant.writer, trigger(routing_key))
    assert opened["__typename"] == "IncidentEventAccepted"
    assert opened["outcome"] == "OPENED" and opened["dedupKey"] == "disk"
    assert opened["incident"]["service"] == {"name": "db"}
    assert opened["incident"]["id"] == opened["incidentKey"]
    assert recorder.announced[-1] == (tenant.workspace_id, int(opened["entryId"]))

    updated = await send(gql, tenant.writer, trigger(routing_key))
    assert updated["outcome"] == "UPDATED" and updated["incident"]["alertCount"] == 2

    dropped = await send(
        gql,
        tenant.writer,
        {"eventAction": "ACKNOWLEDGE", "routingKey": routing_key, "dedupKey": "other"},
    )
    assert dropped["outcome"] == "DROPPED" and dropped["incident"] is None
    assert dropped["reason"] == "no incident has this dedup_key"

    invalid = await send(gql, tenant.writer, {**trigger(routing_key), "payload": {"source": " "}})
    assert invalid["__typename"] == "InvalidEvent" and invalid["code"] == "INVALID_EVENT"
    assert [f["field"] for f in invalid["fields"]] == [
        "payload.summary",
        "payload.source",
        "payload.severity",
    ]
    unknown = await send(gql, tenant.writer, trigger("R-not-a-key"))
    assert unknown == {
        "__typename": "InvalidRoutingKey",
        "code": "INVALID_ROUTING_KEY",
        "message": "Routing key not found",
    }

    result = await gql(SEND, tenant.reader, input=trigger(routing_key))
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}


SEND_MANY = """
mutation($inputs: [IncidentEventInput!]!) {
  sendIncidentEvents(inputs: $inputs) {
    __typename
    ... on IncidentEventAccepted { outcome dedupKey incidentKey reason entryId
      incident { id status alertCount } }
    ... on InvalidRoutingKey { code message }
    ... on InvalidEvent { code message fields { field message } }
  }
}
"""


async def test_send_incident_events_answers_each_in_order(
    gql: GraphQL, tenant: Tenant, recorder: Recorder
) -> None:
    """One call: each event answered as `sendIncidentEvent` would answer it sent after the
    ones before it (a trigger then its repeat and acknowledge; an invalid event and an
    unknown routing key answered at their places), the entries announced once."""
    routing_key = await tenant.service("db")
    inputs = [
        trigger(routing_key),
        {**trigger(routing_key), "payload": {"source": " "}},
        trigger(routing_key),
        trigger("R-not-a-key", dedup_key="other"),
        {"eventAction": "ACKNOWLEDGE", "routingKey": routing_key, "dedupKey": "disk"},
        {"eventAction": "RESOLVE", "routingKey": routing_key, "dedupKey": "never"},
    ]
    announced = len(recorder.announced)
    result = await gql(SEND_MANY, tenant.writer, inputs=inputs)
    assert result.errors is None, result.errors
    opened, invalid, updated, unknown, acked, dropped = result.data["sendIncidentEvents"]
    assert opened["outcome"] == "OPENED" and opened["incident"]["alertCount"] == 1
    assert invalid["__typename"] == "InvalidEvent"
    assert [f["field"] for f in invalid["fields"]][0] == "payload.summary"
    assert updated["outcome"] == "UPDATED" and updated["incidentKey"] == opened["incidentKey"]
    assert updated["incident"]["alertCount"] == 2
    assert unknown == {
        "__typename": "InvalidRoutingKey",
        "code": "INVALID_ROUTING_KEY",
        "message": "Routing key not found",
    }
    assert acked["outcome"] == "ACKNOWLEDGED" and acked["incident"]["status"] == "ACKNOWLEDGED"
    assert dropped["outcome"] == "DROPPED" and dropped["reason"] == "no incident has this dedup_key"
    entries = [int(item["entryId"]) for item in (opened, updated, acked, dropped)]
    assert entries == sorted(entries)
    # One note for the call, naming its newest entry (the hub reads every entry up to it).
    assert recorder.announced[announced:] == [(tenant.workspace_id, max(entries))]
    # As stored: one incident, acknowledged, with both alerts.
    incident = await gql(INCIDENT, tenant.reader, id=opened["incidentKey"])
    assert incident.data["incident"]["status"] == "ACKNOWLEDGED"
    assert incident.data["incident"]["alertCount"] == 2


async def test_an_invalid_event_names_the_input_s_own_fields(gql: GraphQL, tenant: Tenant) -> None:
    """A dashboard's form maps `fields` onto what it sent: the names are the GraphQL input's
    (`dedupKey`), not the events API's (`dedup_key`), which `POST /api/events` keeps."""
    routing_key = await tenant.service("db")
    bad = {
        "eventAction": "TRIGGER",
        "dedupKey": "d" * 256,
        "clientUrl": "u" * 2049,
        "payload": {"summary": "s", "source": "s", "severity": "INFO", "customDetails": "text"},
    }
    expected = {
        "routingKey": "is required (or serviceId)",
        "dedupKey": "must be at most 255 characters",
        "clientUrl": "must be at most 2048 characters",
        "payload.customDetails": "must be a JSON object",
    }
    one = await send(gql, tenant.writer, bad)
    result = await gql(SEND_MANY, tenant.writer, inputs=[trigger(routing_key), bad])
    assert result.errors is None, result.errors
    many = result.data["sendIncidentEvents"][1]
    for invalid in (one, many):
        assert invalid["__typename"] == "InvalidEvent"
        assert {f["field"]: f["message"] for f in invalid["fields"]} == expected
        assert "routingKey: is required (or serviceId)" in invalid["message"]
        assert "_" not in invalid["message"].replace("d" * 256, "")


async def test_send_incident_events_is_limited_and_needs_the_scope(
    settings: Settings, recorder: Recorder, gql: GraphQL, tenant: Tenant
) -> None:
    routing_key = await tenant.service("db")
    limited = replace(settings, max_incident_events_per_call=2)
    context = Context(settings=limited, publisher=recorder, secret=tenant.writer)
    inputs = [trigger(routing_key, dedup_key=f"k{i}") for i in range(3)]
    result = await build_schema(limited).execute(
        SEND_MANY, variable_values={"inputs": inputs}, context_value=context
    )
    assert result.data is None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert "at most 2 events" in result.errors[0].message
    refused = await gql(SEND_MANY, tenant.reader, inputs=inputs[:1])
    assert refused.errors[0].extensions == {"code": "FORBIDDEN"}
    none = await gql(SEND_MANY, tenant.writer, inputs=[])
    assert none.errors is None and none.data == {"sendIncidentEvents": []}
    listed = await gql("{ incidents(first: 10) { edges { node { id } } } }", tenant.reader)
    assert listed.data["incidents"]["edges"] == []


async def test_people_acknowledge_and_resolve_with_a_note(
    gql: GraphQL, tenant: Tenant, recorder: Recorder
) -> None:
    routing_key = await tenant.service("db")
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    nobody = await tenant.key(name="nobody")  # no scope: cannot act
    result = await gql(ACK, nobody, id=incident_id)
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}

    alice = await tenant.key(Scope.EVENTS_WRITE, Scope.READ, name="alice")
    result = await gql(ACK, alice, id=incident_id, note="looking")
    assert result.data["acknowledgeIncident"] == {
        "status": "ACKNOWLEDGED",
        "acknowledgedBy": "alice",
    }
    again = await gql(ACK, alice, id=incident_id)  # idempotent, no new entry
    assert again.data["acknowledgeIncident"]["status"] == "ACKNOWLEDGED"
    announced = len(recorder.announced)

    result = await gql(RESOLVE, alice, id=incident_id, note="freed 20 GB")
    assert result.data["resolveIncident"] == {"status": "RESOLVED", "resolvedBy": "alice"}
    assert len(recorder.announced) == announced + 1
    assert (await gql(RESOLVE, alice, id=incident_id)).data["resolveIncident"][
        "status"
    ] == "RESOLVED"

    result = await gql(ACK, alice, id=incident_id)
    assert result.errors[0].extensions == {"code": "CONFLICT"}
    result = await gql(ACK, alice, id="inc_missing")
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}
    result = await gql(RESOLVE, alice, id=incident_id, note="x" * 2000)
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}

    incident = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]
    assert incident["acknowledgedBy"] == "alice" and incident["resolvedBy"] == "alice"
    assert incident["acknowledgedAt"] <= incident["resolvedAt"]
    timeline = incident["timeline"]
    assert [e["kind"] for e in timeline] == [
        "INCIDENT_RESOLVED",
        "INCIDENT_ACKNOWLEDGED",
        "INCIDENT_TRIGGERED",
    ]
    assert timeline[0]["summary"] == "Resolved: Disk full" and timeline[0]["actor"] == "alice"
    assert timeline[0]["details"]["note"] == "freed 20 GB"
    assert timeline[1]["details"]["note"] == "looking"
    assert all(e["subject"] == {"__typename": "Incident", "id": incident_id} for e in timeline)


async def test_a_note_no_database_can_store_is_refused_by_what_is_wrong(
    gql: GraphQL, tenant: Tenant
) -> None:
    """A NUL in a note was refused as if the note were too long."""
    incident_id = (await send(gql, tenant.writer, trigger(await tenant.service("db"))))[
        "incidentKey"
    ]
    for document in (ACK, RESOLVE, ANNOTATE):
        for note, says in (("\x00abc", "note must not contain NUL"), ("a\ud800", "surrogate")):
            [error] = (await gql(document, tenant.writer, id=incident_id, note=note)).errors
            assert error.extensions == {"code": "BAD_USER_INPUT"} and says in error.message
    incident = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]
    assert [entry["kind"] for entry in incident["timeline"]] == ["INCIDENT_TRIGGERED"]


async def test_acknowledging_or_resolving_again_keeps_the_note(
    gql: GraphQL, tenant: Tenant
) -> None:
    """Nothing moves, but a person's note is not thrown away: it goes on the timeline as a
    note; without one, nothing is recorded."""
    routing_key = await tenant.service("db")
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    alice = await tenant.key(Scope.EVENTS_WRITE, name="alice")
    await gql(ACK, alice, id=incident_id, note="looking")
    again = await gql(ACK, alice, id=incident_id, note="still looking")
    assert again.data["acknowledgeIncident"] == {
        "status": "ACKNOWLEDGED",
        "acknowledgedBy": "alice",
    }
    await gql(ACK, alice, id=incident_id)
    await gql(RESOLVE, alice, id=incident_id, note="fixed")
    again = await gql(RESOLVE, alice, id=incident_id, note="for good")
    assert again.data["resolveIncident"] == {"status": "RESOLVED", "resolvedBy": "alice"}
    await gql(RESOLVE, alice, id=incident_id)

    timeline = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]["timeline"]
    assert [(e["kind"], e["details"].get("note"), e["details"]["status"]) for e in timeline] == [
        ("INCIDENT_ANNOTATED", "for good", "resolved"),
        ("INCIDENT_RESOLVED", "fixed", "resolved"),
        ("INCIDENT_ANNOTATED", "still looking", "acknowledged"),
        ("INCIDENT_ACKNOWLEDGED", "looking", "acknowledged"),
        ("INCIDENT_TRIGGERED", None, "triggered"),
    ]


async def test_a_note_records_the_status_it_was_written_under(gql: GraphQL, tenant: Tenant) -> None:
    """A note whose incident was read before a resolve committed (a race of the two) records
    the incident as the resolve left it, and answers it so."""
    routing_key = await tenant.service("db")
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    stale = await incidents.get_incident(workspace_id=tenant.workspace_id, incident_id=incident_id)
    assert stale is not None and stale.status is IncidentStatus.TRIGGERED
    await gql(RESOLVE, tenant.writer, id=incident_id)

    noted = await incident_rows.annotate(incident=stale, actor="bob", note="late note")
    assert noted is not None
    fresh, entry = noted
    assert fresh.status is IncidentStatus.RESOLVED and fresh.resolved_at is not None
    assert entry.details is not None and entry.details["status"] == "resolved"
    timeline = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]["timeline"]
    assert [e["kind"] for e in timeline][:2] == ["INCIDENT_ANNOTATED", "INCIDENT_RESOLVED"]

    # A second acknowledge's note, its incident resolved meanwhile: nothing is written (the
    # acknowledge is decided again, and is then a conflict).
    expected = await incident_rows.annotate(
        incident=stale, actor="bob", note="ack note", expect=IncidentStatus.ACKNOWLEDGED
    )
    assert expected is None
    after = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]["timeline"]
    assert after == timeline


async def test_people_annotate_an_incident_open_or_resolved(
    gql: GraphQL, tenant: Tenant, recorder: Recorder
) -> None:
    routing_key = await tenant.service("db")
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    result = await gql(ANNOTATE, tenant.reader, id=incident_id, note="read-only")
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}

    bob = await tenant.key(Scope.EVENTS_WRITE, name="bob")
    announced = len(recorder.announced)
    result = await gql(ANNOTATE, bob, id=incident_id, note="  db-1 disk at 97%  ")
    assert result.data["annotateIncident"] == {"id": incident_id, "status": "TRIGGERED"}
    assert len(recorder.announced) == announced + 1  # live subscribers see it
    await gql(RESOLVE, bob, id=incident_id)
    result = await gql(ANNOTATE, bob, id=incident_id, note="postmortem: log rotation")
    assert result.data["annotateIncident"]["status"] == "RESOLVED"

    for bad in ("   ", "x" * 2000, "nul\x00"):
        result = await gql(ANNOTATE, bob, id=incident_id, note=bad)
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}, bad
    result = await gql(ANNOTATE, bob, id="inc_missing", note="hello")
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}

    timeline = (await gql(INCIDENT, tenant.reader, id=incident_id)).data["incident"]["timeline"]
    notes = [e for e in timeline if e["kind"] == "INCIDENT_ANNOTATED"]
    assert [(e["summary"], e["actor"]) for e in notes] == [
        ("postmortem: log rotation", "bob"),
        ("db-1 disk at 97%", "bob"),
    ]
    assert notes[1]["details"]["note"] == "db-1 disk at 97%"
    assert notes[1]["details"]["status"] == "triggered"  # as the other incident entries
    assert all(e["subject"] == {"__typename": "Incident", "id": incident_id} for e in notes)


async def test_incident_has_its_alert_history_and_is_private_to_its_workspace(
    gql: GraphQL, tenant: Tenant, make_tenant: Any
) -> None:
    routing_key = await tenant.service("db")
    for summary, severity in (("Disk 90%", "WARNING"), ("Disk 99%", "CRITICAL")):
        outcome = await send(
            gql, tenant.writer, trigger(routing_key, summary=summary, severity=severity)
        )
    incident = (await gql(INCIDENT, tenant.reader, id=outcome["incidentKey"])).data["incident"]
    assert incident["alertCount"] == 2
    assert incident["alerts"] == [
        {"summary": "Disk 99%", "severity": "CRITICAL"},
        {"summary": "Disk 90%", "severity": "WARNING"},
    ]
    assert [e["kind"] for e in incident["timeline"]] == ["INCIDENT_UPDATED", "INCIDENT_TRIGGERED"]
    other = await make_tenant()
    assert (await gql(INCIDENT, other.reader, id=outcome["incidentKey"])).data == {"incident": None}
    result = await gql(ACK, other.writer, id=outcome["incidentKey"])
    assert result.errors[0].extensions == {"code": "NOT_FOUND"}


LIST = """
query($filter: IncidentFilter, $first: Int, $after: String) {
  incidents(filter: $filter, first: $first, after: $after) {
    edges { cursor node { dedupKey } } pageInfo { hasNextPage endCursor }
  }
}
"""


async def keys_of(gql: GraphQL, key: str, **variables: Any) -> list[str]:
    result = await gql(LIST, key, **variables)
    assert result.errors is None, result.errors
    return [edge["node"]["dedupKey"] for edge in result.data["incidents"]["edges"]]


async def test_incidents_filter_and_pages(gql: GraphQL, tenant: Tenant) -> None:
    db, web = await tenant.service("db"), await tenant.service("web")
    started = datetime.now(UTC)
    for routing_key, dedup_key, severity in (
        (db, "a", "CRITICAL"),
        (web, "b", "WARNING"),
        (db, "c", "INFO"),
        (web, "d", "CRITICAL"),
    ):
        await send(gql, tenant.writer, trigger(routing_key, dedup_key, severity=severity))
    await send(gql, tenant.writer, {"eventAction": "RESOLVE", "routingKey": db, "dedupKey": "c"})
    await send(
        gql, tenant.writer, {"eventAction": "ACKNOWLEDGE", "routingKey": web, "dedupKey": "b"}
    )

    assert await keys_of(gql, tenant.reader) == ["d", "c", "b", "a"]
    assert await keys_of(gql, tenant.reader, filter={"services": ["db"]}) == ["c", "a"]
    assert await keys_of(gql, tenant.reader, filter={"statuses": ["TRIGGERED"]}) == ["d", "a"]
    both = {"statuses": ["ACKNOWLEDGED", "RESOLVED"]}
    assert await keys_of(gql, tenant.reader, filter=both) == ["c", "b"]
    assert await keys_of(gql, tenant.reader, filter={"severities": ["CRITICAL"]}) == ["d", "a"]
    since = (started - timedelta(seconds=1)).isoformat()
    assert len(await keys_of(gql, tenant.reader, filter={"since": since})) == 4
    assert await keys_of(gql, tenant.reader, filter={"until": since}) == []

    seen: list[str] = []
    after = None
    while True:
        result = await gql(LIST, tenant.reader, first=3, after=after)
        page = result.data["incidents"]
        seen += [edge["node"]["dedupKey"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["d", "c", "b", "a"]

    for after in ("garbage", b64("i1:1:" + "x" * 5000), b64("i1:1:inc_\u0000")):
        result = await gql(LIST, tenant.reader, after=after)
        assert result.errors[0].message == "Invalid cursor.", after
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    result = await gql(LIST, tenant.writer)
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}


SUSPECTS = """
query($id: ID!, $window: Int) {
  incident(id: $id) {
    suspectChanges(window: $window) { kind summary service
      subject { __typename ... on Change { name } } }
  }
}
"""

RECORD = "mutation($input: ChangeInput!) { recordChange(input: $input) { __typename } }"


async def test_suspect_changes_are_changes_and_tool_calls_before_it_opened(
    gql: GraphQL, tenant: Tenant
) -> None:
    routing_key = await tenant.service("checkout")
    now = datetime.now(UTC)

    async def change(name: str, minutes_ago: float, service: str = "checkout") -> None:
        at = (now - timedelta(minutes=minutes_ago)).isoformat()
        event = {
            "name": name,
            "timestamp": at,
            "category": "TECHNICAL",
            "source": "ci",
            "service": service,
        }
        assert (await gql(RECORD, tenant.writer, input=event)).data is not None

    await change("Deploy v41", 300)
    await change("Deploy v42", 90)
    await change("Flag flip", 20)
    await change("Deploy web", 10, service="web")
    # The agents domain records each tool call as a TOOL_CALLED entry on the service.
    await record_entry(
        workspace_id=tenant.workspace_id,
        kind=TimelineKind.TOOL_CALLED,
        occurred_at=now - timedelta(minutes=5),
        summary="agent ran kubectl scale",
        service="checkout",
    )
    await record_entry(
        workspace_id=tenant.workspace_id,
        kind=TimelineKind.RUN_STARTED,
        occurred_at=now - timedelta(minutes=6),
        summary="run started",
        service="checkout",
    )
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    await change("Rollback", -1)  # after it opened: not a suspect

    result = await gql(SUSPECTS, tenant.reader, id=incident_id)
    suspects = result.data["incident"]["suspectChanges"]
    assert [(s["kind"], s["summary"]) for s in suspects] == [
        ("TOOL_CALLED", "agent ran kubectl scale"),
        ("CHANGE", "Flag flip"),
        ("CHANGE", "Deploy v42"),
    ]
    assert suspects[1]["subject"] == {"__typename": "Change", "name": "Flag flip"}
    result = await gql(SUSPECTS, tenant.reader, id=incident_id, window=30 * 60)
    assert [s["summary"] for s in result.data["incident"]["suspectChanges"]] == [
        "agent ran kubectl scale",
        "Flag flip",
    ]
    result = await gql(SUSPECTS, tenant.reader, id=incident_id, window=0)
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}


async def test_timeline_shows_incident_entries_with_their_subject(
    gql: GraphQL, tenant: Tenant
) -> None:
    routing_key = await tenant.service("db")
    incident_id = (await send(gql, tenant.writer, trigger(routing_key)))["incidentKey"]
    query = """{ timeline(filter: {kinds: [INCIDENT_TRIGGERED]}) { nodes { summary service actor
      subject { __typename ... on Incident { id status service { name } } } } } }"""
    result = await gql(query, tenant.reader)
    assert result.errors is None, result.errors
    assert result.data["timeline"]["nodes"] == [
        {
            "summary": "Disk full",
            "service": "db",
            "actor": "ci-pipeline",
            "subject": {
                "__typename": "Incident",
                "id": incident_id,
                "status": "TRIGGERED",
                "service": {"name": "db"},
            },
        }
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {
            "eventAction": "TRIGGER",
            "routingKey": "R1",
            "dedupKey": "disk",
            "payload": {
                "summary": "Disk full",
                "source": "db-1",
                "severity": "CRITICAL",
                "timestamp": "2026-03-04T14:25:00Z",
                "component": "pg",
                "group": "db",
                "class": "disk",
                "customDetails": {"free": 1},
            },  # fmt: skip
            "images": [{"src": "https://i", "href": "https://h"}, {"src": "https://j"}],
            "links": [{"href": "https://l", "text": "runbook"}],
            "client": "prom",
            "clientUrl": "https://prom",
        },
        {"eventAction": "RESOLVE", "serviceId": "svc_1", "dedupKey": "disk"},
    ],
)
def test_incident_inputs_are_built_as_strawberry_builds_them(raw: dict[str, Any]) -> None:
    built, generic = built_both_ways(IncidentEventInput, raw)
    assert built == generic


TIMES = "{ incidents(first: 50) { edges { node { dedupKey openedAt lastSeenAt alertCount } } } }"


async def incident_times(gql: GraphQL, key: str) -> list[dict[str, Any]]:
    result = await gql(TIMES, key)
    assert result.errors is None, result.errors
    return [edge["node"] for edge in result.data["incidents"]["edges"]]


async def test_incidents_opened_together_page_without_a_gap_or_an_empty_page(
    gql: GraphQL, tenant: Tenant
) -> None:
    db = await tenant.service("db")
    keys = [f"k{n}" for n in range(5)]
    result = await gql(SEND_MANY, tenant.writer, inputs=[trigger(db, key) for key in keys])
    assert result.errors is None, result.errors
    # One batch, one time: only the ids order them, across page boundaries too.
    assert len({node["openedAt"] for node in await incident_times(gql, tenant.reader)}) == 1
    for first in (1, 2, 5):
        pages = await walk_pages(gql, LIST, tenant.reader, "incidents", "dedupKey", first=first)
        assert sorted(sum(pages, [])) == keys, first
        assert len(pages) == -(-len(keys) // first), first  # a full last page is the last


async def test_a_repeated_trigger_moves_last_seen(gql: GraphQL, tenant: Tenant) -> None:
    db = await tenant.service("db")
    await send(gql, tenant.writer, trigger(db, "disk"))
    await asyncio.sleep(0.01)
    await send(gql, tenant.writer, trigger(db, "disk"))
    [incident] = await incident_times(gql, tenant.reader)
    assert incident["alertCount"] == 2
    opened = datetime.fromisoformat(incident["openedAt"])
    assert datetime.fromisoformat(incident["lastSeenAt"]) >= opened + timedelta(milliseconds=10)
