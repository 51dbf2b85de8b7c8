"""`resolvers.rows`: `construct` makes the instance `Model.construct` makes, for every model
the group commits build rows of, whatever values are given and left out; `insert_rows` and
`update_rows` store what the ORM's own `bulk_create` and `save` store."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from tortoise import connections, fields
from tortoise.models import Model

from models import MODEL_MODULES
from models.agent import AgentEvent, Run, RunStatus, ToolCall, ToolCallDecision, ToolCallStatus
from models.approval import Approval, ApprovalStatus
from models.change import Change, ChangeCategory
from models.columns import STORED_JSON_DUMPS
from models.ids import new_id
from models.incident import Incident, IncidentAlert, IncidentStatus, Severity
from models.timeline import TimelineEntry, TimelineKind
from models.workspace import Service, Workspace
from resolvers import auth
from resolvers.rows import construct, insert_rows, json_text, new_row, update_rows
from tests.conftest import Tenant

NOW = datetime(2026, 3, 4, 14, 25, tzinfo=UTC)


def rows(workspace_id: str) -> list[tuple[type[Model], dict[str, Any]]]:
    """Values as the group commits give them, some fields left to their defaults."""
    return [
        (Change, {"id": "chg_1", "workspace_id": workspace_id, "name": "Deploy",
                  "occurred_at": NOW, "labels": ["a"], "metadata": {"k": 1}}),
        (TimelineEntry, {"id": 7, "seq": 3, "created_at": NOW, "workspace_id": workspace_id,
                         "kind": TimelineKind.CHANGE, "occurred_at": NOW, "summary": "s",
                         "labels": [], "subject_type": "Change", "subject_id": "chg_1"}),
        (Run, {"id": "run_1", "workspace_id": workspace_id, "run_key": "r1",
               "agent_id": "a", "status": RunStatus.RUNNING, "started_at": NOW}),
        (ToolCall, {"id": "tc_1", "workspace_id": workspace_id, "run_id": "run_1",
                    "call_key": "c1", "agent_id": "a", "tool_name": "deploy",
                    "decision": ToolCallDecision.ALLOWED, "status": ToolCallStatus.ALLOWED}),
        (Approval, {"id": "apr_1", "workspace_id": workspace_id, "tool_call_id": "tc_1",
                    "status": ApprovalStatus.PENDING, "expires_at": NOW}),
        (AgentEvent, {"id": "aev_1", "workspace_id": workspace_id, "event_id": "e1",
                      "event_type": "tool.called", "body_hash": "0" * 64, "body": "{}"}),
    ]  # fmt: skip


def state(row: Model) -> dict[str, Any]:
    """An instance's attributes, a default made per row (a callable's) by its type only."""
    defaults = {
        name: field.default for name, field in row._meta.fields_map.items() if field.default
    }
    return {
        name: type(value) if callable(defaults.get(name)) else value
        for name, value in vars(row).items()
    }


@pytest.mark.parametrize("saved", [False, True])
async def test_the_same_instance_as_model_construct(tenant: Tenant, saved: bool) -> None:
    for model, values in rows(tenant.workspace_id):
        fast = construct(model, dict(values), saved=saved)
        slow = model.construct(_saved_in_db=saved, **values)
        assert type(fast) is model
        assert state(fast) == state(slow), model.__name__
        assert fast._saved_in_db is saved
        assert fast._await_when_save == {} and fast._await_when_save is not slow._await_when_save


async def test_rows_share_no_mutable_state(tenant: Tenant) -> None:
    model, values = rows(tenant.workspace_id)[0]
    first, second = construct(model, dict(values)), construct(model, dict(values))
    first._await_when_save["x"] = 1
    assert second._await_when_save == {}
    first.name = "changed"
    assert second.name == "Deploy"


async def test_a_relation_goes_to_model_construct(tenant: Tenant) -> None:
    """A related instance rather than its id: `Model.construct` sets both, as before."""
    workspace = Workspace.construct(id=tenant.workspace_id, name="w")
    values = {"id": "chg_2", "workspace": workspace, "name": "Deploy", "occurred_at": NOW}
    row = construct(Change, values)
    assert row.workspace_id == tenant.workspace_id and row.workspace is workspace
    assert state(row) == state(Change.construct(**values))


def postgres_only() -> None:
    if connections.get("default").capabilities.dialect != "postgres":
        pytest.skip("elsewhere insert_rows and update_rows are the ORM's own writes")


async def stored(model: type[Model], ids: list[Any]) -> list[dict[str, Any]]:
    """The rows as the ORM reads them back, in the order of `ids`, without their ids."""
    found = {row.pk: row for row in await model.filter(pk__in=ids)}
    return [
        {name: value for name, value in vars(found[id_]).items()
         if name in model._meta.fields_map and name != model._meta.pk_attr}
        for id_ in ids
    ]  # fmt: skip


def incident_values(service: Service, n: int, key: str) -> dict[str, Any]:
    """Every kind of column: text, NULL or not, an enum, ints, timestamps, nested JSON."""
    return {
        "workspace_id": service.workspace_id, "service_id": service.id,
        "dedup_key": f"{key}-{n}", "opened_at": NOW, "last_seen_at": NOW,
        "summary": "cpu \u00e9 \"quoted\" \\ 91%", "source": "prometheus",
        "severity": Severity.CRITICAL if n % 2 else Severity.INFO,
        "sent_at": None if n % 2 else NOW, "component": "db" if n % 2 else None,
        "custom_details": {"nested": {"list": [1, 2.5, None, True, "x"]}, "n": n},
        "images": [], "links": [{"href": "https://example.com", "text": "runbook"}],
        "alert_count": 7 + n, "open_marker": None if n == 2 else 1,
        "status": IncidentStatus.RESOLVED if n == 2 else IncidentStatus.TRIGGERED,
    }  # fmt: skip


async def a_service(tenant: Tenant) -> Service:
    found = await auth.service_for_routing_key(routing_key=await tenant.service("api"))
    assert found is not None
    return found


async def test_insert_rows_stores_what_bulk_create_stores(tenant: Tenant) -> None:
    postgres_only()
    service = await a_service(tenant)
    ours = [
        new_row(Incident, id=new_id("inc"), **incident_values(service, n, "a")) for n in range(3)
    ]
    orms = [Incident(id=new_id("inc"), **incident_values(service, n, "b")) for n in range(3)]

    await insert_rows(connections.get("default"), ours)
    await Incident.bulk_create(orms)

    assert all(row._saved_in_db for row in ours)
    ours_stored = await stored(Incident, [row.id for row in ours])
    orms_stored = await stored(Incident, [row.id for row in orms])
    for row in orms_stored:
        row["dedup_key"] = row["dedup_key"].replace("b-", "a-")
    assert ours_stored == orms_stored
    assert ours_stored[2]["open_marker"] is None and ours_stored[2]["alert_count"] == 9
    details = ours_stored[0]["custom_details"]
    assert details == {"nested": {"list": [1, 2.5, None, True, "x"]}, "n": 0}


async def test_insert_rows_leaves_a_serial_key_to_the_database(tenant: Tenant) -> None:
    postgres_only()
    service = await a_service(tenant)
    incident = new_row(Incident, id=new_id("inc"), **incident_values(service, 1, "s"))
    await insert_rows(connections.get("default"), [incident])
    alerts = [
        new_row(IncidentAlert, incident_id=incident.id, received_at=NOW, summary=f"s{n}",
                source="p", severity=Severity.INFO, custom_details={"n": n})
        for n in range(3)
    ]  # fmt: skip
    chosen = IncidentAlert(
        id=10**12, incident_id=incident.id, received_at=NOW, summary="chosen", source="p",
        severity=Severity.INFO,
    )  # fmt: skip

    await insert_rows(connections.get("default"), alerts)
    await insert_rows(connections.get("default"), [chosen])

    rows = await IncidentAlert.filter(incident_id=incident.id).order_by("id")
    assert [(row.summary, row.custom_details) for row in rows] == [
        ("s0", {"n": 0}), ("s1", {"n": 1}), ("s2", {"n": 2}), ("chosen", {}),
    ]  # fmt: skip
    assert len({row.id for row in rows}) == 4 and rows[-1].id == 10**12


UPDATED = ("alert_count", "summary", "severity", "sent_at", "component", "custom_details",
           "links", "status", "open_marker", "resolved_at", "resolved_by")  # fmt: skip


async def test_update_rows_writes_what_save_writes(tenant: Tenant) -> None:
    postgres_only()
    service = await a_service(tenant)
    ours = [Incident(id=new_id("inc"), **incident_values(service, n, "a")) for n in range(2)]
    orms = [Incident(id=new_id("inc"), **incident_values(service, n, "b")) for n in range(2)]
    await Incident.bulk_create(ours + orms)
    untouched = await stored(Incident, [row.id for row in ours])
    for rows in (ours, orms):
        for n, row in enumerate(rows):
            row.alert_count, row.summary, row.severity = 40 + n, f"now {n}", Severity.WARNING
            row.sent_at, row.component = (NOW, None) if n else (None, "api")
            row.custom_details, row.links = {"after": [n, {"deep": None}]}, []
            row.status, row.open_marker = IncidentStatus.RESOLVED, None
            row.resolved_at, row.resolved_by = NOW, "ci-pipeline"
            row.dedup_key = "not written"  # not among the attributes: stays as stored

    await update_rows(connections.get("default"), ours, UPDATED)
    for row in orms:
        await row.save(update_fields=list(UPDATED))

    ours_stored = await stored(Incident, [row.id for row in ours])
    orms_stored = await stored(Incident, [row.id for row in orms])
    for row in orms_stored:
        row["dedup_key"] = row["dedup_key"].replace("b-", "a-")
    assert ours_stored == orms_stored
    assert ours_stored != untouched
    assert [row["dedup_key"] for row in ours_stored] == [row["dedup_key"] for row in untouched]
    assert ours_stored[0]["custom_details"] == {"after": [0, {"deep": None}]}


async def test_json_fields_take_json_text_values_and_text_of_any_kind(tenant: Tenant) -> None:
    postgres_only()
    """A string for a JSON field is JSON text, as Tortoise takes it; text columns keep
    quotes, backslashes, non-ASCII and characters JSON escapes exactly."""
    tricky = 'quote " backslash \\ tab \t newline \n é ✓ 😀 </script> \u2028'
    values = {
        "workspace_id": tenant.workspace_id, "event_type": "tool.called", "body_hash": tricky,
        "body": '{"a": [1, "x", null, {"b": 2.5}], "s": "\\u00e9"}',
        "response": {"text": tricky, "nothing": None}, "run_ref": None,
    }  # fmt: skip
    ours = new_row(AgentEvent, id=new_id("aev"), event_id="ours", **values)
    orms = AgentEvent(id=new_id("aev"), event_id="orms", **values)

    await insert_rows(connections.get("default"), [ours])
    await AgentEvent.bulk_create([orms])

    [mine], [theirs] = await stored(AgentEvent, [ours.id]), await stored(AgentEvent, [orms.id])
    assert mine["body"] == {"a": [1, "x", None, {"b": 2.5}], "s": "é"}
    assert mine["body_hash"] == tricky and mine["response"]["text"] == tricky
    assert mine["created_at"] == ours.created_at  # filled in on the row, as Tortoise does
    del mine["created_at"], theirs["created_at"]
    assert {**mine, "event_id": "orms"} == theirs


# Values orjson (the batch documents' encoder) writes in its own way: exponents, non-ASCII,
# the 64-bit extremes; and values it refuses, written by the standard library instead:
# integers past 64 bits, a key that is not a string.
OWN_WAY = {
    "floats": [1e16, 1.5e-07, 1e-05, 0.1, -0.0, 1e22, 2.5], "text": "é ✓ 😀 \u2028 \"q\" \\",
    "max": 2**64 - 1, "min": -(2**63), "empty": [{}, []], "nothing": None,
}  # fmt: skip
REFUSED = {"big": 2**64, "negative": -(2**70), "huge": 10**40, 7: "int key"}


@pytest.mark.parametrize("details", [OWN_WAY, REFUSED], ids=["orjson's own way", "refused"])
async def test_json_of_every_kind_is_stored_as_the_orm_stores_it(
    tenant: Tenant, details: dict[Any, Any]
) -> None:
    postgres_only()
    service = await a_service(tenant)
    values = {**incident_values(service, 0, "a"), "custom_details": details}
    ours = new_row(Incident, id=new_id("inc"), **values)
    orms = Incident(id=new_id("inc"), **{**values, "dedup_key": "b-0"})

    await insert_rows(connections.get("default"), [ours])
    await Incident.bulk_create([orms])

    [mine], [theirs] = await stored(Incident, [ours.id]), await stored(Incident, [orms.id])
    assert mine["custom_details"] == theirs["custom_details"]
    assert mine["custom_details"] == {str(key): value for key, value in details.items()}
    for key in ("max", "min", "big", "negative", "huge"):
        if key in details:
            assert type(mine["custom_details"][key]) is int


@dataclass
class _Row:
    name: str


def test_what_json_refuses_json_text_refuses() -> None:
    """orjson would write these (a time, a dataclass); the standard library, as before, does not."""
    for value in ({"at": NOW}, [_Row("x")]):
        with pytest.raises(TypeError):
            json_text(value)


def test_every_json_column_reads_and_writes_with_the_standard_library() -> None:
    """A plain `fields.JSONField` would take orjson, installed here (see models/columns.py)."""
    json_fields = [
        (model, name, field)
        for module in MODEL_MODULES
        for model in vars(importlib.import_module(module)).values()
        if isinstance(model, type) and issubclass(model, Model) and model is not Model
        for name, field in model._meta.fields_map.items()
        if isinstance(field, fields.JSONField)
    ]
    assert len(json_fields) >= 20
    for model, name, field in json_fields:
        assert field.encoder is STORED_JSON_DUMPS, (model.__name__, name)
        assert field.decoder is json.loads, (model.__name__, name)


async def test_json_columns_read_back_integers_past_64_bits_exactly(tenant: Tenant) -> None:
    """orjson is installed, and Tortoise's default JSON decoder would be orjson's, which
    reads `2**64` as a float: the models' columns read with the standard library."""
    metadata = {"big": 2**64, "negative": -(2**70), "huge": 10**40, "nested": [{"n": 2**65}]}
    change = await Change.create(
        id=new_id("chg"), workspace_id=tenant.workspace_id, name="Deploy", occurred_at=NOW,
        category=ChangeCategory.TECHNICAL, source="ci", metadata=metadata,
    )  # fmt: skip
    found = await Change.get(id=change.id)
    assert found.metadata == metadata
    assert type(found.metadata["big"]) is int and type(found.metadata["nested"][0]["n"]) is int
    [read] = await Change.filter(id=change.id).values_list("metadata", flat=True)
    assert read == metadata
