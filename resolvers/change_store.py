"""Storing a batch of changes with their timeline entries (the group commit's write).

On PostgreSQL one statement per workspace takes the workspace's `seq` range, inserts the
changes, their entries and label rows, and returns the entry ids: one round trip and one
commit for the whole batch, so the workspace row (the `seq` lock) is held for as short a
time as possible. Elsewhere (SQLite) the ORM does the same in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.change import Change
from models.timeline import TimelineEntry, TimelineKind
from resolvers.rows import construct, json_text, mark_saved
from resolvers.timeline import NewEntry, entry_fields, record_entries

SUBJECT_TYPE = "Change"

# $1 workspace, $2 how many, $3 now, $4 the changes as one JSON array (one array per change,
# the fields in the order of `c` below), $5 the entries' kind, $6 their subject type. One
# JSON document rather than an array per column: asyncpg encodes arrays element by element,
# and the JSON columns go in as JSON values instead of text encoded one by one.
_INSERT_POSTGRES = """
WITH ws AS (
    UPDATE workspace SET timeline_seq = timeline_seq + $2 WHERE id = $1 RETURNING timeline_seq
), c AS (
    SELECT r->>0 AS id, r->>1 AS name, (r->>2)::timestamptz AS occurred_at,
           r->>3 AS category, r->>4 AS source, r->>5 AS environment, r->>6 AS service,
           r->7 AS labels, r->8 AS metadata, r->9 AS links, r->>10 AS actor,
           r->11 AS entry_labels, n
    FROM jsonb_array_elements($4::jsonb) WITH ORDINALITY AS e(r, n)
), changes AS (
    INSERT INTO change (id, workspace_id, name, occurred_at, category, source, environment,
                        service, labels, metadata, links, actor, created_at)
    SELECT id, $1, name, occurred_at, category, source, environment, service,
           labels, metadata, links, actor, $3
    FROM c
), entries AS (
    INSERT INTO timeline_entry (workspace_id, seq, kind, occurred_at, summary, service,
                                environment, labels, actor, details, subject_type,
                                subject_id, created_at)
    SELECT $1, ws.timeline_seq - $2 + c.n, $5, c.occurred_at, c.name, c.service,
           c.environment, c.entry_labels, c.actor,
           jsonb_build_object('category', c.category, 'source', c.source), $6, c.id, $3
    FROM ws, c
    RETURNING id, seq, labels
), labels AS (
    INSERT INTO timeline_label (entry_id, workspace_id, label)
    SELECT entries.id, $1, l.label
    FROM entries, jsonb_array_elements_text(entries.labels) AS l(label)
)
SELECT id, seq FROM entries ORDER BY seq
"""


def entry_of(change: Change) -> NewEntry:
    """The timeline entry recorded for a change."""
    return NewEntry(
        workspace_id=change.workspace_id,
        kind=TimelineKind.CHANGE,
        occurred_at=change.occurred_at,
        summary=change.name,
        service=change.service,
        environment=change.environment,
        labels=change.labels,
        actor=change.actor,
        details={"category": change.category.value, "source": change.source},
        subject_type=SUBJECT_TYPE,
        subject_id=change.id,
    )


def _postgres() -> bool:
    return bool(connections.get("default").capabilities.dialect == "postgres")


async def store_changes(changes: Sequence[Change]) -> list[TimelineEntry]:
    """Store new changes and their entries atomically; the entries, in the same order."""
    if not _postgres():
        async with in_transaction():
            await Change.bulk_create(list(changes))
            entries = await record_entries([entry_of(change) for change in changes])
        mark_saved(changes)
        return entries
    connection = connections.get("default")
    now = datetime.now(UTC)
    fields = [entry_fields(entry_of(change)) for change in changes]
    groups: dict[str, list[int]] = {}
    for index, change in enumerate(changes):
        groups.setdefault(change.workspace_id, []).append(index)
    found: dict[int, tuple[int, int]] = {}
    if len(groups) == 1:
        found.update(await _insert_postgres(connection, changes, fields, groups, now))
    else:  # one transaction, workspaces in id order: two batches never deadlock
        async with in_transaction() as transaction:
            found.update(await _insert_postgres(transaction, changes, fields, groups, now))
    mark_saved(changes)
    entries = []
    for index, values in enumerate(fields):
        entry_id, seq = found[index]
        values.update(id=entry_id, seq=seq, created_at=now)
        entries.append(construct(TimelineEntry, values, saved=True))
    return entries


async def _insert_postgres(
    connection: BaseDBAsyncClient,
    changes: Sequence[Change],
    fields: Sequence[dict[str, Any]],
    groups: dict[str, list[int]],
    now: datetime,
) -> dict[int, tuple[int, int]]:
    """Run the statement once per workspace; (entry id, seq) for each change index.
    `fields`: each change's entry (`entry_fields`), whose labels are each once."""
    found: dict[int, tuple[int, int]] = {}
    for workspace_id in sorted(groups):
        indexes = groups[workspace_id]
        rows = [changes[index] for index in indexes]
        document = []
        for index, row in zip(indexes, rows, strict=True):
            document.append(
                [
                    row.id,
                    row.name,
                    row.occurred_at.isoformat(),
                    row.category.value,
                    row.source,
                    row.environment,
                    row.service,
                    row.labels,
                    row.metadata,
                    row.links,
                    row.actor,
                    fields[index]["labels"],
                ]
            )
        _, records = await connection.execute_query(
            _INSERT_POSTGRES,
            [
                workspace_id,
                len(rows),
                now,
                json_text(document),
                TimelineKind.CHANGE.value,
                SUBJECT_TYPE,
            ],
        )
        if len(records) != len(rows):
            raise RuntimeError(f"workspace {workspace_id} is missing: no entries were stored")
        for index, record in zip(indexes, records, strict=True):
            found[index] = (int(record["id"]), int(record["seq"]))
    return found
