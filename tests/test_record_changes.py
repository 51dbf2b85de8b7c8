"""`recordChanges`: many changes in one call, each with its own result; and `POST /events`,
whose concurrent requests run as one such call per key, each answered on its own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from models.change import Change
from models.timeline import TimelineEntry
from opsgraph.settings import Settings
from resolvers.auth import Scope
from rest_compat import changes as rest_changes
from schema import build_schema
from schema.change import ChangeInput
from schema.context import Context
from tests.conftest import GraphQL, Recorder, Tenant, with_settings
from tests.held_calls import Held
from tests.input_hooks import built_both_ways
from tests.test_changes import SEED_EVENT, bearer, timeline_of

RECORD_MANY = """
mutation($inputs: [ChangeInput!]!) {
  recordChanges(inputs: $inputs) {
    __typename
    ... on ChangeRecorded { entryId change { id name actor labels } }
    ... on InvalidEvent { code message fields { field message } }
  }
}
"""


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {**SEED_EVENT, "name": name, **extra}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Labels longer than the label index's column (200) pass validation: the database
    refuses them, which is how one change of a call fails where the others succeed."""
    return with_settings(settings, max_label_length=300)


# Valid by these settings, refused by the database.
REFUSED = {"labels": ["l" * 250]}


async def test_each_input_gets_its_own_result_in_order(gql: GraphQL, tenant: Tenant) -> None:
    inputs = [event("one"), event("two", labels=["ok", " "]), event("three")]
    result = await gql(RECORD_MANY, tenant.writer, inputs=inputs)

    assert result.errors is None
    one, two, three = result.data["recordChanges"]
    assert [one["__typename"], three["__typename"]] == ["ChangeRecorded", "ChangeRecorded"]
    assert [one["change"]["name"], three["change"]["name"]] == ["one", "three"]
    assert one["change"]["actor"] == "ci-pipeline"
    assert two["__typename"] == "InvalidEvent" and two["code"] == "INVALID_EVENT"
    assert [f["field"] for f in two["fields"]] == ["labels"]
    entries = await timeline_of(gql, tenant.reader)
    assert [entry["summary"] for entry in entries] == ["three", "one"]
    assert {entry["id"] for entry in entries} == {one["entryId"], three["entryId"]}


async def test_an_input_the_database_refuses_fails_alone(gql: GraphQL, tenant: Tenant) -> None:
    inputs = [event("first"), event("too long", **REFUSED), event("last")]
    result = await gql(RECORD_MANY, tenant.writer, inputs=inputs)

    first, refused, last = result.data["recordChanges"]
    assert refused is None
    [error] = result.errors
    assert error.path == ["recordChanges", 1]
    assert error.extensions == {"code": "BAD_USER_INPUT"}
    assert first["__typename"] == last["__typename"] == "ChangeRecorded"
    assert sorted(e["summary"] for e in await timeline_of(gql, tenant.reader)) == ["first", "last"]


async def test_the_number_of_inputs_is_limited(
    settings: Settings, recorder: Recorder, tenant: Tenant, gql: GraphQL
) -> None:
    limited = with_settings(settings, max_changes_per_call=2)
    context = Context(settings=limited, publisher=recorder, secret=tenant.writer)
    inputs = [event(f"e{i}") for i in range(3)]
    result = await build_schema(limited).execute(
        RECORD_MANY, variable_values={"inputs": inputs}, context_value=context
    )

    assert result.data is None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert "at most 2 changes" in result.errors[0].message
    assert await timeline_of(gql, tenant.reader) == []

    result = await gql(RECORD_MANY, tenant.writer, inputs=[])
    assert result.errors is None and result.data == {"recordChanges": []}


async def test_a_read_only_key_records_nothing(gql: GraphQL, tenant: Tenant) -> None:
    result = await gql(RECORD_MANY, tenant.reader, inputs=[event("no")])
    assert result.errors[0].extensions == {"code": "FORBIDDEN"}
    assert await timeline_of(gql, tenant.reader) == []


async def test_concurrent_posts_run_as_one_call_per_key_each_answered_on_its_own(
    client: httpx.AsyncClient, tenant: Tenant, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await tenant.key(Scope.EVENTS_WRITE, name="other-pipeline")
    held = Held(monkeypatch)

    def post(key: str, body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(client.post("/events", headers=bearer(key), json=body))

    first = post(tenant.writer, event("first"))
    await held.calls(1)  # the first call holds the batcher: the others queue meanwhile
    posts = [
        post(tenant.writer, event("a")),
        post(other, event("b")),
        post(tenant.writer, event("too long", **REFUSED)),
        post(tenant.reader, event("not allowed")),
        post(tenant.writer, event("c")),
        post(other, event("d")),
    ]
    await held.queued(5)
    held.gate.set()
    responses = [await first, *await asyncio.gather(*posts)]

    assert [response.status_code for response in responses] == [201, 201, 201, 400, 403, 201, 201]
    assert responses[3].json()["error"]["code"] == "INVALID_EVENT"
    assert responses[4].json()["error"]["code"] == "FORBIDDEN"
    assert held.sizes == [1, 3, 2]  # the first alone, then one call per key
    actors = {}
    for response in responses:
        if response.status_code == 201:
            body = response.json()
            change = await Change.get(id=body["id"])
            entry = await TimelineEntry.get(id=int(body["entryId"]))
            assert entry.subject_id == change.id and entry.summary == change.name
            actors[change.name] = change.actor
    assert actors == {
        "first": "ci-pipeline",
        "a": "ci-pipeline",
        "c": "ci-pipeline",
        "b": "other-pipeline",
        "d": "other-pipeline",
    }
    assert len(await timeline_of(gql, tenant.reader)) == 5


@pytest.mark.parametrize(
    "raw",
    [
        {**SEED_EVENT, "links": [{"href": "https://x", "text": "run"}, {"href": "https://y"}]},
        {"name": "n", "timestamp": "2026-03-04T14:25:00Z", "category": "BUSINESS", "source": "s"},
    ],
)
def test_change_inputs_are_built_as_strawberry_builds_them(raw: dict[str, Any]) -> None:
    built, generic = built_both_ways(ChangeInput, raw)
    assert built == generic


async def test_an_input_the_call_cannot_take_fails_alone(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the REST checks ever let through what GraphQL cannot coerce (the whole call
    fails before it runs), each request of the batch runs alone."""
    held = Held(monkeypatch)
    first = asyncio.create_task(
        client.post("/events", headers=bearer(tenant.writer), json=event("first"))
    )
    await held.calls(1)
    lenient = SimpleNamespace(validate_change=lambda raw, settings: None)
    monkeypatch.setattr(rest_changes, "changes", lenient)
    bodies = [event("good"), event("bad", category="NOPE"), event("fine")]
    posts = [
        asyncio.create_task(client.post("/events", headers=bearer(tenant.writer), json=body))
        for body in bodies
    ]
    await held.queued(3)
    held.gate.set()
    responses = [await first, *await asyncio.gather(*posts)]

    assert [response.status_code for response in responses] == [201, 201, 400, 201]
    assert responses[2].json()["error"]["code"] == "INVALID_EVENT"
    assert held.sizes == [1, 3, 1, 1, 1]
