"""The PostgreSQL engine Opsgraph configures Tortoise with: Tortoise's asyncpg client, whose
pool is also given a `dsn` holding the database URL's TLS parameters (`sslmode`,
`sslrootcert`, `sslcert`, ...), which asyncpg reads the way libpq does, and only from a
`dsn`: Tortoise passed them on as keywords, which asyncpg refused (`?sslmode=require`, in
every managed database's connection string, was a TypeError). The host, the database and
the rest stay Tortoise's keywords, which win over the `dsn`'s.

Keep this module's name holding "asyncpg": Tortoise's migrations pick their PostgreSQL schema
editor by `"asyncpg" in connection.__class__.__module__`.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from tortoise.backends.asyncpg.client import AsyncpgDBClient


class TlsAsyncpgClient(AsyncpgDBClient):
    def __init__(self, *, dsn: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dsn = dsn

    async def create_pool(self, **kwargs: Any) -> asyncpg.Pool:
        return await asyncpg.create_pool(self.dsn, **kwargs)


client_class = TlsAsyncpgClient
