"""The timeline query: filters, newest-first order and cursor pages, on both databases."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from models.timeline import TimelineEntry
from resolvers import timeline
from resolvers.auth import Principal, Scope
from resolvers.changes import record_change, validate_change
from tests.conftest import GraphQL, MakeTenant, Recorder, Tenant

QUERY = """
query($filter: TimelineFilter, $first: Int, $after: String) {
  timeline(filter: $filter, first: $first, after: $after) {
    edges { cursor node { summary } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

BASE = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


async def add(
    tenant: Tenant, recorder: Recorder, settings: Any, name: str, minutes: int, **fields: Any
) -> None:
    raw = {
        "name": name,
        "timestamp": (BASE + timedelta(minutes=minutes)).isoformat(),
        "category": "TECHNICAL",
        "source": "ci-cd",
        **fields,
    }
    principal = Principal(
        key_id="k", workspace_id=tenant.workspace_id, name="ci", scopes=frozenset({Scope.ADMIN})
    )
    await record_change(
        principal=principal, data=validate_change(raw, settings=settings), publisher=recorder
    )


async def summaries(gql: GraphQL, key: str, **variables: Any) -> list[str]:
    result = await gql(QUERY, key, **variables)
    assert result.errors is None, result.errors
    return [edge["node"]["summary"] for edge in result.data["timeline"]["edges"]]


async def seed(tenant: Tenant, recorder: Recorder, settings: Any) -> None:
    await add(
        tenant,
        recorder,
        settings,
        "api deploy",
        1,
        service="api",
        environment="prod",
        labels=["release", "backend"],
    )
    await add(
        tenant,
        recorder,
        settings,
        "web deploy",
        2,
        service="web",
        environment="prod",
        labels=["release", "frontend"],
    )
    await add(
        tenant,
        recorder,
        settings,
        "api config",
        3,
        service="api",
        environment="staging",
        labels=["config"],
    )
    await add(tenant, recorder, settings, "Pricing launch", 4, labels=["business"])


async def test_newest_first_and_announced(
    gql: GraphQL, tenant: Tenant, recorder: Recorder, settings: Any
) -> None:
    await seed(tenant, recorder, settings)
    assert await summaries(gql, tenant.reader) == [
        "Pricing launch",
        "api config",
        "web deploy",
        "api deploy",
    ]
    assert [workspace for workspace, _ in recorder.announced] == [tenant.workspace_id] * 4


async def test_filters(gql: GraphQL, tenant: Tenant, recorder: Recorder, settings: Any) -> None:
    await seed(tenant, recorder, settings)

    async def check(flt: dict[str, Any], expected: list[str]) -> None:
        assert await summaries(gql, tenant.reader, filter=flt) == expected, flt

    await check({"services": ["api"]}, ["api config", "api deploy"])
    await check({"environments": ["prod"]}, ["web deploy", "api deploy"])
    await check({"labels": ["backend", "frontend"]}, ["web deploy", "api deploy"])
    await check({"labels": ["release", "backend"], "labelsMatch": "ALL"}, ["api deploy"])
    await check({"labels": ["backend", "frontend"], "labelsMatch": "ALL"}, [])
    # labelsMatch is nullable with a default (DESIGN.md): null means ANY.
    await check(
        {"labels": ["backend", "frontend"], "labelsMatch": None}, ["web deploy", "api deploy"]
    )
    await check({"text": "DEPLOY"}, ["web deploy", "api deploy"])
    await check({"kinds": ["CHANGE"], "services": ["web"]}, ["web deploy"])
    await check({"kinds": ["INCIDENT_TRIGGERED"]}, [])
    await check(
        {"since": "2026-03-04T12:02:00Z", "until": "2026-03-04T14:03:00+02:00"},
        ["api config", "web deploy"],
    )
    await check({"services": ["api"], "labels": ["config"], "text": "config"}, ["api config"])
    # Names are stored without the spaces around them, and looked for so.
    await check({"services": [" api "], "labels": ["config\t"]}, ["api config"])


async def test_cursor_pages_have_no_gap_or_duplicate(
    gql: GraphQL, tenant: Tenant, recorder: Recorder, settings: Any
) -> None:
    # Several entries share one timestamp: the id breaks the tie.
    for index in range(7):
        await add(tenant, recorder, settings, f"e{index}", index // 3)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        result = await gql(QUERY, tenant.reader, first=3, after=after)
        connection = result.data["timeline"]
        seen += [edge["node"]["summary"] for edge in connection["edges"]]
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert after == connection["edges"][-1]["cursor"]
    assert pages == 3
    assert seen == ["e6", "e5", "e4", "e3", "e2", "e1", "e0"]


def b64(text: str) -> str:
    """A cursor's wire form of `text`."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_bad_paging_arguments(gql: GraphQL, tenant: Tenant) -> None:
    # Anything but a cursor this server gave, well formed or not, is "Invalid cursor.":
    # an id no column holds was an internal error on SQLite, a storage error on PostgreSQL.
    for after in ("garbage", b64("v1:1:9223372036854775808:1"), b64("v1:1:1:-1")):
        result = await gql(QUERY, tenant.reader, after=after)
        assert result.errors[0].message == "Invalid cursor.", after
        assert result.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    result = await gql(QUERY, tenant.reader, first=10_000)
    assert result.errors[0].message == "first must be between 1 and 200."
    result = await gql(QUERY, tenant.reader, filter={"since": "2026-03-04T12:00:00"})
    assert "time zone" in result.errors[0].message


def test_filter_matches_in_memory_as_the_query_does() -> None:
    entry = timeline.TimelineEntry(
        id=1,
        workspace_id="w",
        kind="CHANGE",
        occurred_at=BASE,
        summary="API deploy",
        service="api",
        environment="prod",
        labels=["a", "b"],
    )
    assert timeline.TimelineFilter(labels=("b", "c")).matches(entry)
    assert not timeline.TimelineFilter(labels=("b", "c"), labels_match=timeline.Match.ALL).matches(
        entry
    )
    assert timeline.TimelineFilter(text="api", services=("api",)).matches(entry)
    assert not timeline.TimelineFilter(since=BASE + timedelta(seconds=1)).matches(entry)


def test_cursor_round_trip() -> None:
    cursor = timeline.Cursor(occurred_at=BASE + timedelta(microseconds=7), entry_id=42, seq=3)
    assert timeline.Cursor.decode(cursor.encode()) == cursor


def test_cursor_wire_form_is_stable() -> None:
    # Clients keep cursors between versions: the text they hold must mean the same.
    def wire(occurred_at: datetime) -> str:
        encoded = timeline.Cursor(occurred_at=occurred_at, entry_id=42, seq=3).encode()
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()

    assert wire(datetime(1970, 1, 1, tzinfo=UTC)) == "v1:0:42:3"
    assert wire(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == "v1:-1:42:3"
    assert wire(datetime(1900, 1, 1, tzinfo=UTC)) == "v1:-2208988800000000:42:3"
    east = timezone(timedelta(hours=2))  # the same instant as 12:00:00.000007 UTC
    assert wire(datetime(2026, 3, 4, 14, 0, 0, 7, tzinfo=east)) == "v1:1772625600000007:42:3"


async def test_a_page_loads_its_subjects_in_one_query_per_kind(
    gql: GraphQL, tenant: Tenant, recorder: Recorder, settings: Any, caplog: Any
) -> None:
    for index in range(30):
        await add(tenant, recorder, settings, f"e{index}", index)
    query = """{ timeline(first: 30) { edges { node {
        subject { ... on Change { id name } } } } } }"""
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        result = await gql(query, tenant.reader)
    names = [edge["node"]["subject"]["name"] for edge in result.data["timeline"]["edges"]]
    assert names == [f"e{index}" for index in reversed(range(30))]
    change_reads = [r for r in caplog.records if 'FROM "change"' in r.getMessage()]
    assert len(change_reads) == 1, [r.getMessage() for r in change_reads]


async def test_entries_of_two_workspaces_stored_together_keep_their_order_and_labels(
    gql: GraphQL, make_tenant: MakeTenant
) -> None:
    first, second = await make_tenant(), await make_tenant()

    def entry(tenant: Tenant, summary: str, labels: list[str], **fields: Any) -> Any:
        return timeline.NewEntry(
            workspace_id=tenant.workspace_id, kind=timeline.TimelineKind.CHANGE,
            occurred_at=BASE, summary=summary, labels=labels, **fields,
        )  # fmt: skip

    new = [
        entry(second, "b1", ["x", "x", "y"], details={"why": "ünïcode"}),
        entry(first, "a1", []),
        entry(second, "b2", ["y"], service="api"),
        entry(first, "a2", ["x"], details=None),
    ]
    async with in_transaction():
        stored = await timeline.record_entries(new)
    assert [row.summary for row in stored] == ["b1", "a1", "b2", "a2"]
    assert [row.seq for row in stored] == [1, 1, 2, 2]  # each workspace's own, in order
    assert stored[0].labels == ["x", "y"] and stored[0].details == {"why": "ünïcode"}
    again = await TimelineEntry.get(id=stored[2].id)
    assert (again.summary, again.seq, again.service) == ("b2", 2, "api")

    async def labelled(tenant: Tenant, label: str) -> list[str]:
        return await summaries(gql, tenant.reader, filter={"labels": [label]})

    assert await labelled(second, "x") == ["b1"]
    assert sorted(await labelled(second, "y")) == ["b1", "b2"]
    assert await labelled(first, "x") == ["a2"]
    assert await labelled(first, "y") == []


async def test_entries_read_as_the_orm_reads_them(
    tenant: Tenant, recorder: Recorder, settings: Any
) -> None:
    # Pages and live reads build entries from values by their own statement (`_read`): each
    # must equal, field by field and type by type, the instance the ORM would make.
    await seed(tenant, recorder, settings)
    bare = timeline.NewEntry(
        workspace_id=tenant.workspace_id,
        kind=timeline.TimelineKind.INCIDENT_TRIGGERED,
        occurred_at=datetime(2026, 3, 4, 14, 0, 0, 7, tzinfo=timezone(timedelta(hours=2))),
        summary="bare",
        details=None,
        subject_type="Incident",
        subject_id="inc_1",
    )
    await timeline.record_entries([bare])
    query = TimelineEntry.filter(workspace_id=tenant.workspace_id).order_by("seq")
    expected = await query
    read = await timeline.entries_after(workspace_id=tenant.workspace_id, after_seq=0, limit=50)
    assert len(read) == len(expected) == 5
    for mine, orm in zip(read, expected, strict=True):
        assert type(mine) is TimelineEntry and mine._saved_in_db and not mine._partial
        assert mine.__dict__.keys() == orm.__dict__.keys()
        for name, value in orm.__dict__.items():
            assert mine.__dict__[name] == value, name
            assert type(mine.__dict__[name]) is type(value), name
            if isinstance(value, datetime):
                assert type(mine.__dict__[name].tzinfo) is type(value.tzinfo), name
    assert read[-1].details is None and read[-1].labels == [] and read[-1].service is None
    assert read[0].labels == ["release", "backend"] and read[0].kind is timeline.TimelineKind.CHANGE


UNICODE = ("", " Café straße", " ΣΊΣΥΦΟΣ CAFÉ ᾀ")


async def test_each_filter_shape_reads_by_its_own_statement(
    tenant: Tenant, monkeypatch: Any
) -> None:
    # A read's SQL is built once per shape of filter (which filters, how many values each)
    # and each read binds its own values to it. Every shape is read twice, with other values
    # the second time and the query builder gone: both give what the filter matches in
    # memory, page by page, and in commit order for live reads.
    monkeypatch.setattr(timeline, "_READS", {})  # none remembered from other tests
    kinds = list(timeline.TimelineKind)[:3]
    new = [
        timeline.NewEntry(
            workspace_id=tenant.workspace_id,
            kind=kinds[n % 3],
            occurred_at=BASE + timedelta(minutes=n // 2),  # pairs share a time: the id decides
            summary=f"{('50%_off' if n % 5 == 0 else 'Deploy')}{UNICODE[n % 3]} {n}",
            service=f"s{n % 4}",
            environment=("prod", "staging")[n % 2],
            labels=[f"l{n % 3}", f"m{n % 5}"],
        )
        for n in range(60)
    ]
    stored = await timeline.record_atomically(new)
    Filter = timeline.TimelineFilter
    since, until = BASE + timedelta(minutes=4), BASE + timedelta(minutes=25)
    pairs = [
        (Filter(), Filter()),
        (Filter(kinds=kinds[:1]), Filter(kinds=kinds[1:2])),
        (Filter(kinds=kinds[:2]), Filter(kinds=kinds[1:])),
        (Filter(services=["s1"]), Filter(services=["s2"])),
        (Filter(services=["s0", "s3"]), Filter(services=["s1", "s2"])),
        (Filter(environments=["prod"]), Filter(environments=["staging"])),
        (Filter(labels=["l0", "m1"]), Filter(labels=["l2", "m3"])),
        (
            Filter(labels=["l0", "m0"], labels_match=timeline.Match.ALL),
            Filter(labels=["l1", "m2"], labels_match=timeline.Match.ALL),
        ),
        (Filter(since=since), Filter(since=until)),
        (Filter(until=until), Filter(until=since)),
        (Filter(text="50%_off"), Filter(text="LOY 1")),
        (Filter(text="0%_O"), Filter(text="%")),
        # Letter by letter over all of Unicode, on SQLite too ("ß" has no one-letter capital).
        (Filter(text="cafÉ"), Filter(text="STRAßE")),
        (Filter(text="σίσυφος"), Filter(text="STRASSE")),
        # A iota below: PostgreSQL's one-letter capital of "ᾀ" is its title case, "ᾈ".
        (Filter(text="ᾈ"), Filter(text="ᾀ")),
        (
            Filter(
                kinds=kinds[:2], services=["s0", "s2"], environments=["prod"],
                labels=["l0", "m0"], labels_match=timeline.Match.ALL,
                since=BASE, until=until, text="off",
            ),
            Filter(
                kinds=kinds[1:], services=["s1", "s3"], environments=["staging"],
                labels=["l1", "m1"], labels_match=timeline.Match.ALL,
                since=since, until=BASE + timedelta(hours=1), text="deploy",
            ),
        ),
    ]  # fmt: skip
    newest = timeline.Cursor.of(max(stored, key=lambda entry: (entry.occurred_at, entry.id)))

    async def read_all(flt: timeline.TimelineFilter) -> None:
        matching = [entry for entry in stored if flt.matches(entry)]
        expected = sorted(matching, key=lambda entry: (entry.occurred_at, entry.id), reverse=True)
        assert expected or flt.text in ("%", "STRASSE")  # each filter but two matches something
        pages, after = [], None
        while True:
            page = await timeline.list_entries(
                workspace_id=tenant.workspace_id, flt=flt, first=4, after=after
            )
            pages.append([entry.summary for entry in page.entries])
            if not page.has_next_page:
                break
            after = timeline.Cursor.of(page.entries[-1])
        assert pages == [
            [entry.summary for entry in expected[at : at + 4]]
            for at in range(0, max(len(expected), 1), 4)
        ]
        after_newest = await timeline.list_entries(
            workspace_id=tenant.workspace_id, flt=flt, first=100, after=newest
        )
        assert [entry.id for entry in after_newest.entries] == [
            entry.id for entry in expected if entry.id != newest.entry_id
        ]
        low, high = stored[10].seq, stored[40].seq
        live = await timeline.entries_between(
            workspace_id=tenant.workspace_id, flt=flt, after_seq=low, upto_seq=high, limit=5
        )
        in_order = sorted(matching, key=lambda entry: entry.seq)
        assert [entry.seq for entry in live] == [
            entry.seq for entry in in_order if low < entry.seq <= high
        ][:5]

    for flt, _ in pairs:
        await read_all(flt)
    first = await timeline.entries_after(workspace_id=tenant.workspace_id, after_seq=0, limit=7)

    def no_building(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a remembered shape's read built its query again")

    monkeypatch.setattr(TimelineEntry, "filter", no_building)
    for _, flt in pairs:
        await read_all(flt)
    later = await timeline.entries_after(
        workspace_id=tenant.workspace_id, after_seq=stored[49].seq, limit=7
    )
    assert [entry.seq for entry in first] == [entry.seq for entry in stored[:7]]
    assert [entry.seq for entry in later] == [entry.seq for entry in stored[50:57]]


async def test_fold_is_postgresql_s_upper_for_every_letter_with_a_longer_capital(
    tenant: Tenant,
) -> None:
    """Live filters compare with `fold`, queries with the database's `upper`; they must
    agree on every letter whose full capital is several letters (27 Greek letters with a
    iota below did not: a live subscriber missed what the same query found)."""
    connection = connections.get("default")
    if connection.capabilities.dialect != "postgres":
        pytest.skip("SQLite's upper is `fold` itself (opsgraph.sqlite)")
    letters = [
        chr(code)
        for code in range(1, 0x30000)
        if not 0xD800 <= code <= 0xDFFF and len(chr(code).upper()) != 1
    ]
    _, rows = await connection.execute_query(
        "SELECT x, upper(x) AS u FROM unnest($1::text[]) AS x", [letters]
    )
    assert len(rows) == len(letters) > 100
    assert {row["x"]: timeline.fold(row["x"]) for row in rows} == {
        row["x"]: row["u"] for row in rows
    }
