"""What is already stored about an agent event, read before its transaction.

The idempotency check (`eventId`), the workspace's policy version (for the policy cache),
the event's run and whether its tool call was recorded: one statement instead of four,
shared by the events that arrive together (one statement per batch, like key checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortoise import connections

from opsgraph.settings import Settings
from resolvers.batching import Batcher

# Whether the call was recorded is a scalar subquery, not EXISTS: PostgreSQL may run an
# EXISTS as one hashed scan of the whole table when its statistics say the table is small
# (they lag while it grows from empty). In the agent benchmark that scan cost more than all
# the rest of a decision's database work; a scalar subquery is always one probe of the
# unique (run, call key) index.
_COLUMNS = """
SELECT q.i, w.policy_version,
  (SELECT e.id FROM agent_event e WHERE e.workspace_id = w.id AND e.event_id = q.event_id),
  r.id, r.service, r.environment,
  (SELECT c.id FROM agent_tool_call c WHERE c.run_id = r.id AND c.call_key = q.call_key)
    IS NOT NULL
"""
_JOINS = """
JOIN workspace w ON w.id = q.workspace_id
LEFT JOIN agent_run r ON r.workspace_id = w.id AND r.run_key = q.run_key
"""
# PostgreSQL: one statement text for any batch size (prepared once), arrays unnested.
_POSTGRES = (
    _COLUMNS
    + "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
    + " AS q(event_id, call_key, run_key, workspace_id, i)"
    + _JOINS
)


@dataclass(frozen=True, slots=True)
class KnownRun:
    """The stored run an event belongs to (what a tool call inherits from it)."""

    id: str
    service: str | None
    environment: str | None


@dataclass(frozen=True, slots=True)
class Seen:
    """The stored facts an event's processing starts from."""

    policy_version: int
    event_pk: str | None = None
    run: KnownRun | None = None
    call_recorded: bool = False


@dataclass(frozen=True, slots=True)
class _Key:
    event_id: str
    call_key: str | None
    run_key: str
    workspace_id: str


async def _look_up_many(keys: Sequence[_Key]) -> list[Seen]:
    """Every key's stored facts, in one statement (one consistent snapshot)."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        values: list[object] = [
            [key.event_id for key in keys],
            [key.call_key for key in keys],
            [key.run_key for key in keys],
            [key.workspace_id for key in keys],
        ]
        sql, first = _POSTGRES, 1
    else:
        rows = ", ".join(["(?, ?, ?, ?, ?)"] * len(keys))
        sql = f"WITH q(i, event_id, call_key, run_key, workspace_id) AS (VALUES {rows})"
        sql += _COLUMNS + "FROM q" + _JOINS
        values = [
            item
            for index, key in enumerate(keys)
            for item in (index, key.event_id, key.call_key, key.run_key, key.workspace_id)
        ]
        first = 0
    _, found = await connection.execute_query(sql, values)
    seen = [Seen(policy_version=0)] * len(keys)  # a workspace that is gone has nothing
    for row in found:
        index, version, event_pk, run_id, service, environment, call_recorded = tuple(row)
        run = KnownRun(id=run_id, service=service, environment=environment) if run_id else None
        seen[int(index) - first] = Seen(
            policy_version=int(version),
            event_pk=event_pk,
            run=run,
            call_recorded=bool(call_recorded),
        )
    return seen


# Look-ups that arrive together share one statement (at most `Settings.batch_max`).
LOOK_UPS: Batcher[_Key, Seen] = Batcher(_look_up_many, max_items=Settings().batch_max)


async def look_up(
    *, workspace_id: str, event_id: str, run_key: str, call_key: str | None, settings: Settings
) -> Seen:
    """What is stored about this event, read with the look-ups that arrive meanwhile."""
    LOOK_UPS.max_items = max(1, settings.batch_max)
    return await LOOK_UPS.submit(_Key(event_id, call_key, run_key, workspace_id))
