"""The SQLite engine Opsgraph configures Tortoise with: its own client, whose connection
has SQL's `upper` letter by letter over all of Unicode, as PostgreSQL's is (SQLite's own
changes ASCII letters only).

The timeline's text filter compares `upper(summary) LIKE upper(text)` (Tortoise's
`icontains`), and a live subscription compares the same with `resolvers.timeline.fold`:
with SQLite's own `upper`, "café" matched "CAFÉ" live but not in a query, so a subscriber
resuming with `after` missed entries the live feed would have given it.

Keep this module's name holding "sqlite": Tortoise's migrations pick their SQLite schema
editor by `"sqlite" in connection.__class__.__module__`.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.sqlite.client import SqliteClient

from resolvers.timeline import fold


class UnicodeSqliteClient(SqliteClient):
    async def create_connection(self, with_db: bool) -> None:
        await super().create_connection(with_db)
        if self._connection is not None:
            await self._connection.create_function("upper", 1, _upper, deterministic=True)


def _upper(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


client_class = UnicodeSqliteClient
