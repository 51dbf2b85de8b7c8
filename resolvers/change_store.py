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
from resolvers.timeline import NewEntry, record_entries

SUBJECT_TYPE = "Change"

# $1 workspace, $2 how many, $3 now, $4.. one array per column (index i = the i-th change),
# $15/$16 the label rows: the 1-based index of their change, and the label; $17 the kind,
# $18 the subject type, $19 each entry's (deduplicated) labels as JSON.
_INSERT_POSTGRES = """
WITH ws AS (
    UPDATE workspace SET timeline_seq = timeline_seq + $2 WHERE id = $1 RETURNING timeline_seq
), c AS (
    SELECT * FROM unnest(
        $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::text[],
        $10::text[], $11::text[], $12::text[], $13::text[], $14::text[]
    ) WITH ORDINALITY AS c(id, name, occurred_at, category, source, environment, service,
                           labels, metadata, links, actor, n)
), changes AS (
    INSERT INTO change (id, workspace_id, name, occurred_at, category, source, environment,
                        service, labels, metadata, links, actor, created_at)
    SELECT id, $1, name, occurred_at, category, source, environment, service,
           labels::jsonb, metadata::jsonb, links::jsonb, actor, $3
    FROM c
), entries AS (
    INSERT INTO timeline_entry (workspace_id, seq, kind, occurred_at, summary, service,
                                environment, labels, actor, details, subject_type,
                                subject_id, created_at)
    SELECT $1, ws.timeline_seq - $2 + c.n, $17, c.occurred_at, c.name, c.service,
           c.environment, (($19::text[])[c.n])::jsonb, c.actor,
           jsonb_build_object('category', c.category, 'source', c.source), $18, c.id, $3
    FROM ws, c
    RETURNING id, seq
), labels AS (
    INSERT INTO timeline_label (entry_id, workspace_id, label)
    SELECT entries.id, $1, l.label
    FROM unnest($15::bigint[], $16::text[]) AS l(n, label)
    JOIN entries ON entries.seq = (SELECT timeline_seq FROM ws) - $2 + l.n
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
    groups: dict[str, list[int]] = {}
    for index, change in enumerate(changes):
        groups.setdefault(change.workspace_id, []).append(index)
    found: dict[int, tuple[int, int]] = {}
    if len(groups) == 1:
        found.update(await _insert_postgres(connection, changes, groups, now))
    else:  # one transaction, workspaces in id order: two batches never deadlock
        async with in_transaction() as transaction:
            found.update(await _insert_postgres(transaction, changes, groups, now))
    mark_saved(changes)
    entries = []
    for index, change in enumerate(changes):
        entry_id, seq = found[index]
        values = {"id": entry_id, "seq": seq, "created_at": now, **_entry_fields(change)}
        entry = construct(TimelineEntry, values, saved=True)
        entries.append(entry)
    return entries


def _entry_fields(change: Change) -> dict[str, Any]:
    new = entry_of(change)
    return {
        "workspace_id": new.workspace_id,
        "kind": new.kind,
        "occurred_at": new.occurred_at,
        "summary": new.summary,
        "service": new.service,
        "environment": new.environment,
        "labels": list(dict.fromkeys(new.labels)),
        "actor": new.actor,
        "details": new.details,
        "subject_type": new.subject_type,
        "subject_id": new.subject_id,
    }


async def _insert_postgres(
    connection: BaseDBAsyncClient,
    changes: Sequence[Change],
    groups: dict[str, list[int]],
    now: datetime,
) -> dict[int, tuple[int, int]]:
    """Run the statement once per workspace; (entry id, seq) for each change index."""
    found: dict[int, tuple[int, int]] = {}
    for workspace_id in sorted(groups):
        indexes = groups[workspace_id]
        rows = [changes[index] for index in indexes]
        label_n: list[int] = []
        label_text: list[str] = []
        labels_json: list[str] = []
        entry_labels_json: list[str] = []  # each label once
        for n, row in enumerate(rows, start=1):
            unique = list(dict.fromkeys(row.labels))
            label_n.extend([n] * len(unique))
            label_text.extend(unique)
            labels_json.append(json_text(row.labels))
            same = len(unique) == len(row.labels)
            entry_labels_json.append(labels_json[-1] if same else json_text(unique))
        _, records = await connection.execute_query(
            _INSERT_POSTGRES,
            [
                workspace_id,
                len(rows),
                now,
                [row.id for row in rows],
                [row.name for row in rows],
                [row.occurred_at for row in rows],
                [row.category.value for row in rows],
                [row.source for row in rows],
                [row.environment for row in rows],
                [row.service for row in rows],
                labels_json,
                [json_text(row.metadata) for row in rows],
                [json_text(row.links) for row in rows],
                [row.actor for row in rows],
                label_n,
                label_text,
                TimelineKind.CHANGE.value,
                SUBJECT_TYPE,
                entry_labels_json,
            ],
        )
        if len(records) != len(rows):
            raise RuntimeError(f"workspace {workspace_id} is missing: no entries were stored")
        for index, record in zip(indexes, records, strict=True):
            found[index] = (int(record["id"]), int(record["seq"]))
    return found
