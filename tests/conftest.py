"""Fixtures: real databases (SQLite and PostgreSQL), the app, builders for keys and services.

Every storage test runs twice, once per backend. Each test session makes its own
PostgreSQL database (dropped afterwards), so parallel runs never collide. Tests isolate
from each other by workspace, as tenants do in production.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import strawberry
from hypothesis import settings as hypothesis_settings
from starlette.applications import Starlette

from opsgraph.app import create_app
from opsgraph.bus import Bus
from opsgraph.db import close_database, open_database
from opsgraph.settings import Settings
from resolvers import auth
from resolvers.auth import Scope
from schema import build_schema
from schema.context import Context

# Property tests draw the same examples on every run, so a run that passed passes again and
# a failure replays; no deadline, as this machine's speed drifts. FUZZ_RANDOM=1 draws new
# examples each run (as `tests/test_fuzz.py` does with its own settings).
hypothesis_settings.register_profile(
    "opsgraph",
    derandomize=os.environ.get("FUZZ_RANDOM", "") != "1",
    deadline=None,
    database=None,
)
hypothesis_settings.load_profile("opsgraph")

POSTGRES_ADMIN_URL = os.environ.get(
    "OPSGRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def until_waiting_for_a_lock(connection: Any, *, query_like: str = "%") -> bool:
    """Whether, within about 2 s, a statement of this database (one LIKE `query_like`)
    waits for a lock: what a test holding a row from `connection` waits for."""
    for _ in range(100):
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE $1",
            query_like,
        )
        if waiting:
            return True
        await asyncio.sleep(0.02)
    return False


@dataclass
class Recorder:
    """A publisher that remembers what was announced (the bus is tested on its own)."""

    announced: list[tuple[str, int]]

    async def entry_committed(self, *, workspace_id: str, entry_id: int) -> None:
        self.announced.append((workspace_id, entry_id))


async def _create_postgres_database() -> tuple[str, str]:
    name = "opsgraph_test_" + secrets.token_hex(4)
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The database the test runs on, migrated and open; once per backend."""
    postgres_name = None
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('sqlite') / 'opsgraph.sqlite3'}"
    else:
        postgres_name, url = await _create_postgres_database()
    await open_database(Settings(database_url=url))
    yield url
    await close_database()
    if postgres_name is not None:
        await _drop_postgres_database(postgres_name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The app's settings; `@pytest.mark.settings(name=value, ...)` changes some."""
    marker = request.node.get_closest_marker("settings")
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_url": "http://opsgraph.test",
        "frontend_dir": str(tmp_path / "no-ui"),
        "mask_errors": True,
    }
    return Settings(**{**values, **(marker.kwargs if marker else {})})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(announced=[])


@pytest.fixture
def schema(settings: Settings) -> strawberry.Schema:
    return build_schema(settings)


@dataclass
class Tenant:
    """A workspace with one key per role; builders make more."""

    workspace_id: str
    admin: str
    writer: str
    reader: str

    async def key(self, *scopes: Scope, name: str = "extra") -> str:
        issued = await auth.create_api_key(
            workspace_id=self.workspace_id, name=name, scopes=frozenset(scopes)
        )
        return issued.secret

    async def service(self, name: str) -> str:
        """Create a service; returns its routing key."""
        return (await auth.create_service(workspace_id=self.workspace_id, name=name)).routing_key


MakeTenant = Callable[[], Awaitable[Tenant]]


@pytest.fixture
def make_tenant(database_url: str) -> MakeTenant:
    async def make() -> Tenant:
        workspace = await auth.create_workspace(name="ws-" + secrets.token_hex(3))

        async def key(name: str, *scopes: Scope) -> str:
            issued = await auth.create_api_key(
                workspace_id=workspace.id, name=name, scopes=frozenset(scopes)
            )
            return issued.secret

        return Tenant(
            workspace_id=workspace.id,
            admin=await key("admin", Scope.ADMIN),
            writer=await key("ci-pipeline", Scope.EVENTS_WRITE),
            reader=await key("dashboard", Scope.READ),
        )

    return make


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


GraphQL = Callable[..., Awaitable[Any]]


async def walk_pages(
    gql: GraphQL, document: str, key: str, connection: str, value: str, *, first: int
) -> list[list[Any]]:
    """Every page of a connection (`document` takes `$first` and `$after`), followed by
    `endCursor` while `hasNextPage`: each page's nodes' `value`."""
    pages: list[list[Any]] = []
    after = None
    while True:
        result = await gql(document, key, first=first, after=after)
        assert result.errors is None, result.errors
        page = result.data[connection]
        pages.append([edge["node"][value] for edge in page["edges"]])
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]


@pytest.fixture
def gql(schema: strawberry.Schema, settings: Settings, recorder: Recorder) -> GraphQL:
    """Run a document as a key; returns the ExecutionResult."""

    async def run(document: str, key: str | None, **variables: Any) -> Any:
        context = Context(settings=settings, publisher=recorder, secret=key)
        return await schema.execute(document, variable_values=variables, context_value=context)

    return run


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings, manage_database=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@asynccontextmanager
async def memory_bus(*, queue_size: int, heartbeat_seconds: float = 1.0) -> AsyncIterator[Bus]:
    """A connected in-process bus (its hub included), disconnected afterwards."""
    live = Bus("memory://", queue_size=queue_size, heartbeat_seconds=heartbeat_seconds)
    await live.connect()
    try:
        yield live
    finally:
        await live.disconnect()


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
