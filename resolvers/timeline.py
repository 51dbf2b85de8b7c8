"""The timeline: recording entries, paging and filtering them by cursor."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.filters import escape_like
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.agent import Run, ToolCall
from models.approval import Approval
from models.change import Change
from models.incident import Incident
from models.timeline import TimelineEntry, TimelineKind, TimelineLabel
from models.workspace import Workspace
from resolvers.rows import (
    Part,
    construct,
    insert_part,
    insert_rows,
    json_text,
    update_part,
    update_rows,
)

# What an entry's `subject_type` names.
SUBJECT_MODELS: dict[str, Any] = {
    "Change": Change,
    "Incident": Incident,
    "Run": Run,
    "ToolCall": ToolCall,
    "Approval": Approval,
}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BIGINT_MAX = 2**63 - 1  # the largest entry id or seq a column holds


def fold(text: str) -> str:
    """`text` in capitals letter by letter, as SQL's `upper` makes it (PostgreSQL's, and
    SQLite's as `opsgraph.sqlite` sets it): Unicode's one-letter (simple) capital. A letter
    whose full capital is several letters ("ß", "ﬁ") stays as it is, so "straße" matches
    "STRAßE" and not "STRASSE", but for the Greek letters with a iota below ("ᾀ"), whose
    one-letter capital is their title case ("ᾈ"). What the text filter compares, in
    queries and live alike (a test holds it to PostgreSQL's `upper` over all of Unicode)."""
    upper = text.upper()
    if len(upper) == len(text):  # no letter became several
        return upper
    return "".join(_simple_capital(letter) for letter in text)


def _simple_capital(letter: str) -> str:
    capital = letter.upper()
    if len(capital) == 1:
        return capital
    title = letter.title()  # "ᾀ": "ᾈ"; "ß": "Ss", so "ß" stays
    return title if len(title) == 1 else letter


class Publisher(Protocol):
    """Told about committed entries, so live subscribers can be fanned out to: one call
    with the newest entry covers every entry committed with it (a hub reads every entry
    after the last it delivered)."""

    async def entry_committed(self, *, workspace_id: str, entry_id: int) -> None: ...


class Match(StrEnum):
    ANY = "ANY"
    ALL = "ALL"


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """What a timeline query or subscription wants to see; empty fields match everything."""

    kinds: Sequence[TimelineKind] = ()
    services: Sequence[str] = ()
    environments: Sequence[str] = ()
    labels: Sequence[str] = ()
    labels_match: Match = Match.ANY
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    def matches(self, entry: TimelineEntry) -> bool:
        """The same filter, evaluated on one entry in memory (for live delivery)."""
        if self.kinds and entry.kind not in self.kinds:
            return False
        if self.services and entry.service not in self.services:
            return False
        if self.environments and entry.environment not in self.environments:
            return False
        if self.labels:
            present = set(entry.labels)
            wanted = set(self.labels)
            if self.labels_match is Match.ALL and not wanted <= present:
                return False
            if self.labels_match is Match.ANY and not wanted & present:
                return False
        if self.since is not None and entry.occurred_at < self.since:
            return False
        if self.until is not None and entry.occurred_at > self.until:
            return False
        return not self.text or fold(self.text) in fold(entry.summary)


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position: (occurred_at, id) in the newest-first query order, and `seq`, the
    commit order that live subscriptions resume from."""

    occurred_at: datetime
    entry_id: int
    seq: int

    def encode(self) -> str:
        since = self.occurred_at - EPOCH  # exact, in whole days, seconds and microseconds
        micros = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
        raw = f"v1:{micros}:{self.entry_id}:{self.seq}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Parse an opaque cursor; raises ValueError on anything malformed."""
        try:
            padded = value + "=" * (-len(value) % 4)
            version, micros, entry_id, seq = base64.urlsafe_b64decode(padded).decode().split(":")
            if version != "v1":
                raise ValueError(version)
            occurred_at = EPOCH + timedelta(microseconds=int(micros))
            cursor = cls(occurred_at=occurred_at, entry_id=int(entry_id), seq=int(seq))
            if not (0 <= cursor.entry_id <= BIGINT_MAX and 0 <= cursor.seq <= BIGINT_MAX):
                raise ValueError(entry_id)  # no entry is there: a number no column holds
            return cursor
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
            raise ValueError("Invalid cursor.") from None

    @classmethod
    def of(cls, entry: TimelineEntry) -> Cursor:
        return cls(occurred_at=entry.occurred_at, entry_id=entry.id, seq=entry.seq)


@dataclass(slots=True)
class Page:
    """One page of entries, newest first, with Relay-style paging facts."""

    entries: list[TimelineEntry] = field(default_factory=list)
    has_next_page: bool = False

    @property
    def end_cursor(self) -> str | None:
        return Cursor.of(self.entries[-1]).encode() if self.entries else None


async def take_seqs(*, workspace_id: str, count: int) -> int:
    """Take the workspace's next `count` seqs inside the caller's transaction (its row
    stays locked until commit); the last of them (0 for an unknown workspace).

    One statement (UPDATE … RETURNING), so the lock is held one round trip less.
    """
    connection = connections.get("default")
    mark = "$1" if connection.capabilities.dialect == "postgres" else "?"
    rows = await connection.execute_query_dict(
        f"UPDATE workspace SET timeline_seq = timeline_seq + {int(count)} "
        f"WHERE id = {mark} RETURNING timeline_seq",
        [workspace_id],
    )
    return int(rows[0]["timeline_seq"]) if rows else 0


async def record_entry(
    *,
    workspace_id: str,
    kind: TimelineKind,
    occurred_at: datetime,
    summary: str,
    service: str | None = None,
    environment: str | None = None,
    labels: Sequence[str] = (),
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
) -> TimelineEntry:
    """Store one entry and its label rows inside the caller's transaction.

    Taking the next `seq` locks the workspace row until commit, so call this after the
    transaction's other writes (always lock domain rows first, the workspace last).
    """
    new = NewEntry(
        workspace_id=workspace_id,
        kind=kind,
        occurred_at=occurred_at,
        summary=summary,
        service=service,
        environment=environment,
        labels=labels,
        actor=actor,
        details=details,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    return (await record_entries([new]))[0]


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One entry for `record_entries` (the same fields `record_entry` takes)."""

    workspace_id: str
    kind: TimelineKind
    occurred_at: datetime
    summary: str
    service: str | None = None
    environment: str | None = None
    labels: Sequence[str] = ()
    actor: str | None = None
    details: dict[str, Any] | None = None
    subject_type: str | None = None
    subject_id: str | None = None


# PostgreSQL: one statement per workspace takes the `seq` range and inserts the entries and
# their label rows. $1 workspace, $2 how many, $3 now, $4 the entries as one JSON array (an
# array per entry, its fields in the order of `e` below; see `resolvers.rows` on why JSON).
_INSERT_POSTGRES = """
WITH ws AS (
    UPDATE workspace SET timeline_seq = timeline_seq + $2 WHERE id = $1 RETURNING timeline_seq
), entries AS (
    INSERT INTO timeline_entry (workspace_id, seq, kind, occurred_at, summary, service,
                                environment, labels, actor, details, subject_type,
                                subject_id, created_at)
    SELECT $1, ws.timeline_seq - $2 + e.n, e.r->>0, (e.r->>1)::timestamptz, e.r->>2,
           e.r->>3, e.r->>4, e.r->5, e.r->>6, NULLIF(e.r->7, 'null'), e.r->>8, e.r->>9, $3
    FROM ws, jsonb_array_elements($4::jsonb) WITH ORDINALITY AS e(r, n)
    RETURNING id, seq, labels
), labels AS (
    INSERT INTO timeline_label (entry_id, workspace_id, label)
    SELECT entries.id, $1, l.label
    FROM entries, jsonb_array_elements_text(entries.labels) AS l(label)
)
SELECT id, seq FROM entries ORDER BY seq
"""


# Other rows written with entries: new rows of one model each, and stored rows of one model
# with the attributes to write.
Inserts = Sequence[Sequence[Model]]
Updates = Sequence[tuple[Sequence[Model], Sequence[str]]]


async def record_entries(
    new: Sequence[NewEntry], *, inserting: Inserts = (), updating: Updates = ()
) -> list[TimelineEntry]:
    """Store several entries and their label rows inside the caller's transaction, in order,
    with the rows they tell of: `updating` and `inserting` (`resolvers.rows`) go in first.

    Each workspace's `seq` range is taken once (one lock, one UPDATE), and its entries and
    label rows go in with it: on PostgreSQL in one statement, elsewhere one INSERT for
    entries and one for labels. Workspace rows are locked in id order, so two batches never
    deadlock. On PostgreSQL, for one workspace's entries, the other rows' statements are
    parts (CTEs) of the entries' statement, which runs them before it takes the workspace's
    lock, in no set order among themselves: an insert that needs an update's effect first
    (a unique key it frees) needs that update written beforehand, not in `updating`.
    """
    connection = connections.get("default")
    plan = _plan(connection, new, inserting, updating)
    if plan is not None:
        return await _record_postgres(connection, new, plan)
    return await _record_apart(connection, new, inserting, updating)


async def _record_apart(
    connection: BaseDBAsyncClient, new: Sequence[NewEntry], inserting: Inserts, updating: Updates
) -> list[TimelineEntry]:
    """`record_entries` where it is not one statement: the rows first, each table's own
    statement, then the entries (inside the caller's transaction)."""
    for rows, attributes in updating:
        await update_rows(connection, rows, attributes)
    for rows in inserting:
        await insert_rows(connection, rows)
    by_workspace: dict[str, list[int]] = {}
    for index, item in enumerate(new):
        by_workspace.setdefault(item.workspace_id, []).append(index)
    if connection.capabilities.dialect == "postgres":
        return await _record_postgres(connection, new, _Plan(by_workspace, ()))
    seqs = [0] * len(new)
    for workspace_id in sorted(by_workspace):
        indexes = by_workspace[workspace_id]
        first = await take_seqs(workspace_id=workspace_id, count=len(indexes)) - len(indexes) + 1
        for offset, index in enumerate(indexes):
            seqs[index] = first + offset
    entries = [
        TimelineEntry(seq=seq, **entry_fields(item)) for item, seq in zip(new, seqs, strict=True)
    ]
    await TimelineEntry.bulk_create(entries)
    # bulk_create hands back no generated ids: read them by (workspace, seq), which is unique.
    ranges = [
        Q(workspace_id=workspace_id, seq__gte=seqs[indexes[0]], seq__lte=seqs[indexes[-1]])
        for workspace_id, indexes in by_workspace.items()
    ]
    ids: dict[tuple[str, int], int] = {
        (workspace_id, seq): entry_id
        for entry_id, workspace_id, seq in await TimelineEntry.filter(
            Q(*ranges, join_type="OR")
        ).values_list("id", "workspace_id", "seq")
    }
    for entry in entries:
        entry.id = ids[(entry.workspace_id, entry.seq)]
        entry._saved_in_db = True
    labels = [
        TimelineLabel(entry_id=entry.id, workspace_id=entry.workspace_id, label=label)
        for entry in entries
        for label in entry.labels
    ]
    if labels:
        await TimelineLabel.bulk_create(labels)
    return entries


def entry_fields(item: NewEntry) -> dict[str, Any]:
    """An entry's column values but its id, `seq` and `created_at` (labels each once)."""
    return {
        "workspace_id": item.workspace_id,
        "kind": item.kind,
        "occurred_at": item.occurred_at,
        "summary": item.summary,
        "service": item.service,
        "environment": item.environment,
        "labels": list(dict.fromkeys(item.labels)),
        "actor": item.actor,
        "details": item.details,
        "subject_type": item.subject_type,
        "subject_id": item.subject_id,
    }


@dataclass(frozen=True, slots=True)
class _Plan:
    by_workspace: dict[str, list[int]]  # the entries' indexes, by workspace
    parts: tuple[Part, ...]  # statements of other rows, parts of the single workspace's


def _plan(
    connection: BaseDBAsyncClient, new: Sequence[NewEntry], inserting: Inserts, updating: Updates
) -> _Plan | None:
    """How the entries and rows go in as one statement, or None if they cannot: not on
    PostgreSQL, no entries, several workspaces, a row of a kind the ORM must store."""
    if connection.capabilities.dialect != "postgres" or not new:
        return None
    workspace_id = new[0].workspace_id
    if any(item.workspace_id != workspace_id for item in new):
        return None
    now = datetime.now(UTC)
    parts: list[Part] = []
    for rows, attributes in updating:
        if rows:
            part = update_part(rows, tuple(attributes), now)
            if part is None:
                return None
            parts.append(part)
    for rows in inserting:
        if rows:
            part = insert_part(rows, now)
            if part is None:
                return None
            parts.append(part)
    return _Plan({workspace_id: list(range(len(new)))}, tuple(parts))


async def record_atomically(
    new: Sequence[NewEntry], *, inserting: Inserts = (), updating: Updates = ()
) -> list[TimelineEntry]:
    """`record_entries` all or nothing, for a caller outside any transaction: one statement
    where it is one (no BEGIN and COMMIT to wait for), else in a transaction of its own."""
    connection = connections.get("default")
    plan = _plan(connection, new, inserting, updating)
    if plan is not None:
        return await _record_postgres(connection, new, plan)
    async with in_transaction() as transaction:
        return await _record_apart(transaction, new, inserting, updating)


# The entries' statement with other rows' statements as CTEs before it, by their SQL (a
# few callers, each with a few combinations of tables).
_COMPOSED: dict[tuple[str, ...], str] = {}
STATEMENTS_REMEMBERED = 64
_PARAMETER = re.compile(r"\$(\d+)")
_ENTRY_PARAMETERS = 4  # $1..$4 of _INSERT_POSTGRES
_TAKE_SEQ = "UPDATE workspace SET timeline_seq = timeline_seq + $2 WHERE id = $1"
assert _INSERT_POSTGRES.count(_TAKE_SEQ) == 1


def _composed(parts: Sequence[Part]) -> str:
    key = tuple(part.sql for part in parts)
    found = _COMPOSED.get(key)
    if found is None:
        ctes, offset = [], _ENTRY_PARAMETERS
        for n, part in enumerate(parts):
            ctes.append(f"part{n} AS ({_shifted(part.sql, offset)} RETURNING 1)")
            offset += len(part.parameters)
        # The workspace's lock waits for the parts' rows (their counts gate its UPDATE), as
        # on the other path: domain rows first, the workspace last, so the two never
        # deadlock over a unique key one holds while waiting for the other's workspace.
        gate = " + ".join(f"(SELECT count(*) FROM part{n})" for n in range(len(parts)))
        found = _INSERT_POSTGRES.replace(_TAKE_SEQ, f"{_TAKE_SEQ} AND {gate} >= 0", 1)
        found = found.replace("WITH ws AS", f"WITH {', '.join(ctes)}, ws AS", 1)
        if len(_COMPOSED) >= STATEMENTS_REMEMBERED:
            _COMPOSED.clear()
        _COMPOSED[key] = found
    return found


def _shifted(sql: str, offset: int) -> str:
    """A statement's parameters `$n` renumbered `$n+offset`."""
    return _PARAMETER.sub(lambda match: f"${int(match.group(1)) + offset}", sql)


async def _record_postgres(
    connection: BaseDBAsyncClient, new: Sequence[NewEntry], plan: _Plan
) -> list[TimelineEntry]:
    """`record_entries` on PostgreSQL: one statement per workspace, in workspace id order,
    the plan's parts in the first (there is one workspace when it has parts)."""
    now = datetime.now(UTC)
    entries: list[TimelineEntry | None] = [None] * len(new)
    parts = plan.parts
    for workspace_id in sorted(plan.by_workspace):
        indexes = plan.by_workspace[workspace_id]
        fields = [entry_fields(new[index]) for index in indexes]
        document = [
            [
                row["kind"].value,
                row["occurred_at"].isoformat(),
                row["summary"],
                row["service"],
                row["environment"],
                row["labels"],
                row["actor"],
                row["details"],
                row["subject_type"],
                row["subject_id"],
            ]
            for row in fields
        ]
        _, records = await connection.execute_query(
            _composed(parts) if parts else _INSERT_POSTGRES,
            [
                workspace_id,
                len(fields),
                now,
                json_text(document),
                *(parameter for part in parts for parameter in part.parameters),
            ],
        )
        if len(records) != len(fields):
            raise RuntimeError(f"workspace {workspace_id} is missing: no entries were stored")
        for part in parts:
            part.stored()
        parts = ()
        for index, row, record in zip(indexes, fields, records, strict=True):
            values = {"id": int(record["id"]), "seq": int(record["seq"]), "created_at": now, **row}
            entries[index] = construct(TimelineEntry, values, saved=True)
    return [entry for entry in entries if entry is not None]


def _filtered(workspace_id: str, flt: TimelineFilter) -> Any:
    """The entries `flt` matches, as a query set; `_bound` lists the values it binds."""
    query = TimelineEntry.filter(workspace_id=workspace_id)
    if flt.kinds:
        query = query.filter(kind__in=list(flt.kinds))
    if flt.services:
        query = query.filter(service__in=list(flt.services))
    if flt.environments:
        query = query.filter(environment__in=list(flt.environments))
    for group in _label_groups(flt):
        ids = TimelineLabel.filter(workspace_id=workspace_id, label__in=group).values("entry_id")
        query = query.filter(id__in=Subquery(ids))
    if flt.since is not None:
        query = query.filter(occurred_at__gte=flt.since)
    if flt.until is not None:
        query = query.filter(occurred_at__lte=flt.until)
    if flt.text:
        query = query.filter(summary__icontains=flt.text)
    return query


def _label_groups(flt: TimelineFilter) -> list[list[str]]:
    """Label sets an entry must each share a label with: ANY one set, ALL one per label."""
    if not flt.labels:
        return []
    if flt.labels_match is Match.ANY:
        return [list(flt.labels)]
    return [[label] for label in dict.fromkeys(flt.labels)]


def _bound(workspace_id: str, flt: TimelineFilter) -> tuple[tuple[Any, ...], list[Any]]:
    """The shape of `_filtered`'s statement (which filters, how many values each) and the
    values it binds, in the order it binds them."""
    groups = _label_groups(flt)
    values: list[Any] = [workspace_id]
    values += [TimelineKind(kind).value for kind in flt.kinds]
    values += flt.services
    values += flt.environments
    for group in groups:
        values += [workspace_id, *group]
    values += [bound for bound in (flt.since, flt.until) if bound is not None]
    if flt.text:
        values.append(f"%{escape_like(flt.text)}%")
    shape = (
        len(flt.kinds),
        len(flt.services),
        len(flt.environments),
        tuple(len(group) for group in groups),
        flt.since is not None,
        flt.until is not None,
        bool(flt.text),
    )
    return shape, values


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    columns: tuple[tuple[str, str, Callable[[Any], Any]], ...]  # row key, field, to Python


# Reads by statement. Tortoise takes about 0.5 ms of CPU to turn a page's filter into SQL, a
# tenth of the page; the SQL depends only on the read's kind and its filter's shape, so it
# is built once per shape and each read binds its own values to it. A shape's first read
# checks those values against the ones Tortoise binds; where they differ (a shape `_bound`
# does not foresee) the read uses Tortoise's and its statement is not remembered.
_READS: dict[tuple[Any, ...], _Statement] = {}
READS_REMEMBERED = 256  # shapes; past it the remembered ones are forgotten


async def _read(
    shape: tuple[Any, ...], values: list[Any], query: Callable[[], Any], limit: int
) -> list[TimelineEntry]:
    """The entries `query()` (a TimelineEntry query set, `values` its bound values but the
    limit) selects, the same instances `await query().limit(limit)` gives, read with the
    shape's remembered statement. Rows are converted by each field as the ORM converts them,
    and made without its per-instance set-up (`construct`), which saved about 0.5 ms of CPU
    for a page of 51 rows before the statement was remembered too."""
    connection = connections.get("default")
    key = (connection.capabilities.dialect, bool(limit), *shape)
    values = [*values, limit] if limit else values
    statement = _READS.get(key)
    if statement is None:
        # Read here: the `workspace_id` column is there once Tortoise is set up.
        names = tuple(TimelineEntry._meta.fields_db_projection)
        built = query().limit(limit).values_list(*names)
        built.sql()  # builds `built.query`
        sql, bound = built.query.get_parameterized_sql()
        convert = built.resolve_to_python_value
        columns = tuple(
            (str(n), name, convert(TimelineEntry, name)) for n, name in enumerate(names)
        )
        statement = _Statement(sql, columns)
        if bound == values:
            if len(_READS) >= READS_REMEMBERED:
                _READS.clear()
            _READS[key] = statement
        else:
            values = bound
    _, rows = await connection.execute_query(statement.sql, values)
    columns = statement.columns
    return [
        construct(
            TimelineEntry, {name: to_python(row[at]) for at, name, to_python in columns}, saved=True
        )
        for row in rows
    ]


async def list_entries(
    *, workspace_id: str, flt: TimelineFilter, first: int, after: Cursor | None = None
) -> Page:
    """A page of matching entries, newest first, strictly after `after` in that order."""

    def query() -> Any:
        query = _filtered(workspace_id, flt)
        if after is not None:
            query = query.filter(
                Q(occurred_at__lt=after.occurred_at)
                | Q(occurred_at=after.occurred_at, id__lt=after.entry_id)
            )
        return query.order_by("-occurred_at", "-id")

    shape, values = _bound(workspace_id, flt)
    if after is not None:
        values += [after.occurred_at, after.occurred_at, after.entry_id]
    rows = await _read(("page", after is not None, *shape), values, query, first + 1)
    return Page(entries=rows[:first], has_next_page=len(rows) > first)


async def entries_between(
    *, workspace_id: str, flt: TimelineFilter, after_seq: int, upto_seq: int, limit: int
) -> list[TimelineEntry]:
    """Matching entries with after_seq < seq <= upto_seq, in commit order (live resume)."""

    def query() -> Any:
        query = _filtered(workspace_id, flt).filter(seq__gt=after_seq, seq__lte=upto_seq)
        return query.order_by("seq")

    shape, values = _bound(workspace_id, flt)
    return await _read(("between", *shape), [*values, after_seq, upto_seq], query, limit)


async def entries_after(*, workspace_id: str, after_seq: int, limit: int) -> list[TimelineEntry]:
    """Every entry of the workspace after `after_seq`, in commit order (fan-out reads)."""

    def query() -> Any:
        return TimelineEntry.filter(workspace_id=workspace_id, seq__gt=after_seq).order_by("seq")

    return await _read(("after",), [workspace_id, after_seq], query, limit)


async def current_seqs(workspace_ids: Sequence[str]) -> dict[str, int]:
    """Each workspace's last committed entry's `seq`, in one query."""
    rows = await Workspace.filter(id__in=list(workspace_ids)).values_list("id", "timeline_seq")
    return {str(workspace_id): int(seq) for workspace_id, seq in rows}


async def holds(cursor: Cursor, *, workspace_id: str) -> bool:
    """Whether the workspace's entry at the cursor's `seq` is the cursor's entry, its id
    and its time both (the position is still there: not past the end, not from before a
    restore or another deployment or workspace). In a deployment of one workspace an
    entry's id is its `seq`, so a restored database soon holds the pair again; its time
    tells the entry apart."""
    found = TimelineEntry.filter(
        workspace_id=workspace_id,
        seq=cursor.seq,
        id=cursor.entry_id,
        occurred_at=cursor.occurred_at,
    )
    return await found.exists()


async def current_seq(*, workspace_id: str) -> int:
    """The workspace's last committed entry's `seq` (0 when it has none)."""
    workspace = await Workspace.filter(id=workspace_id).only("id", "timeline_seq").first()
    return workspace.timeline_seq if workspace is not None else 0


async def subjects_by_id(
    *, workspace_id: str, subject_type: str, subject_ids: Sequence[str]
) -> dict[str, Any]:
    """The stored subjects of one type, by id, in one query (absent ids are left out)."""
    model = SUBJECT_MODELS.get(subject_type)
    if model is None or not subject_ids:
        return {}
    query = model.filter(workspace_id=workspace_id, id__in=list(set(subject_ids)))
    if subject_type == "Incident":
        query = query.select_related("service")
    return {row.id: row for row in await query}
