"""Database wiring: the Tortoise config, start-up (with migrations) and shut-down."""

from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg  # type: ignore[import-untyped]
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import DB_LOOKUP, expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api import migrate as _migrate

from models import MODEL_MODULES
from models import migrations as migrations_package
from opsgraph.settings import CONNECT_TIMEOUT_SECONDS, Settings

APP_LABEL = "models"
# What the database pool's connections call themselves in `pg_stat_activity`, so an operator
# can tell them apart; an `application_name` in the URL wins.
APPLICATION_NAME = "opsgraph"


def tortoise_config(
    database_url: str, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """The Tortoise config for one database URL (`sqlite://…` or `postgres://…`)."""
    return {
        "connections": {"default": _connection(database_url, connect_timeout)},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _connection(database_url: str, connect_timeout: float) -> dict[str, Any]:
    """Tortoise's connection config for the URL, with our PostgreSQL session settings.

    Each new PostgreSQL connection gives up after `connect_timeout` seconds (asyncpg's
    `timeout`, passed through Tortoise's pool; a `?timeout=` in the URL wins): without it,
    a host that accepts the connection and never answers (another service's port) held
    every command for asyncpg's 60 s, twice (Tortoise's migration recorder tries again).

    Parallel query is off: starting its workers costs more (about 15 ms) than the indexed
    pages this app reads take in one process (1,000,000 timeline entries: 20 ms vs 5 ms).
    Connections go back to the pool without a reset query (see `PooledConnection`).
    """
    url = normalise_url(database_url)
    try:
        config: dict[str, Any] = expand_db_url(url)
    except ValueError as exc:  # a parameter Tortoise casts (`?timeout=1.5`) is not a number
        raise DatabaseUrlError(_unreadable_parameter(url) or str(exc)) from None
    if config["engine"] == "tortoise.backends.sqlite":
        # Tortoise waits for ever on a file it cannot create (its connection lock is never
        # released): say so instead.
        file_path = str(config["credentials"].get("file_path", ""))
        folder = Path(file_path).parent
        if file_path != ":memory:" and not folder.is_dir():
            raise DatabaseUrlError(f"the folder {folder} for the SQLite file does not exist")
        config["engine"] = "opsgraph.sqlite"  # SQL's upper over all of Unicode
    if config["engine"] == "tortoise.backends.asyncpg":
        config["engine"] = "opsgraph.asyncpg_engine"  # the URL's TLS parameters reach asyncpg
        settings = config["credentials"].setdefault("server_settings", {})
        settings.setdefault("max_parallel_workers_per_gather", "0")
        config["credentials"]["connection_class"] = PooledConnection
        given = url_parameters(url)
        _timeout(given, config["credentials"], connect_timeout)
        config["credentials"].setdefault("application_name", APPLICATION_NAME)
        _tls(given, config["credentials"])
        unknown = [name for name in given if name not in POSTGRES_PARAMETERS]
        if unknown:  # passed on, asyncpg would refuse it with a TypeError, mid-connection
            raise DatabaseUrlError(
                f"its ?{unknown[0]}= is not a parameter it takes (those are "
                f"{', '.join(sorted(POSTGRES_PARAMETERS))})"
            )
    return config


# What a PostgreSQL URL may carry: the connection's and the pool's parameters (asyncpg's),
# Tortoise's own, libpq's TLS ones and its `connect_timeout`.
POSTGRES_PARAMETERS = frozenset({
    "host", "port", "database", "service", "servicefile", "direct_tls", "fetch_inserted",
    "user", "password", "passfile", "timeout", "connect_timeout", "command_timeout",
    "statement_cache_size", "max_cached_statement_lifetime", "max_cacheable_statement_size",
    "target_session_attrs", "krbsrvname", "gsslib", "min_size", "max_size", "max_queries",
    "max_inactive_connection_lifetime", "minsize", "maxsize", "schema", "application_name",
    "ssl", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword",
})  # fmt: skip


def _timeout(given: dict[str, str], credentials: dict[str, Any], default: float) -> None:
    """The wait to connect: the URL's `?timeout=` (or libpq's `?connect_timeout=`), among
    its parameters `given`, in whole seconds above 0 (0 gave up at once, on a healthy
    database too), else the setting's."""
    for name in ("timeout", "connect_timeout"):
        if name in given:
            raw = given[name].strip()
            if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
                raise DatabaseUrlError(
                    f"its ?{name}= must be a whole number of seconds, 1 or more, not {raw!r}"
                )
            credentials.pop("connect_timeout", None)
            credentials["timeout"] = int(raw)
            return
    credentials.setdefault("timeout", default)


def url_parameters(url: str) -> dict[str, str]:
    """A URL's query parameters (the last of each name, as Tortoise reads them)."""
    return dict(parse_qsl(urlsplit(url).query))


# libpq's parameters for TLS, which asyncpg reads from a `dsn` only (`opsgraph.asyncpg_engine`
# gives its pool one).
TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# `?ssl=` takes a mode too, or a yes or no (Tortoise read any value as a boolean, so that
# `?ssl=false` and `?ssl=disable` asked for TLS).
SSL_WORDS: dict[str, str | bool] = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": "disable", "no": "disable", "off": "disable", "0": "disable",
}  # fmt: skip


def _tls(given: dict[str, str], credentials: dict[str, Any]) -> None:
    """Put the TLS parameters among the URL's (`given`) where asyncpg takes them: libpq's in
    a `dsn` of their own, `?ssl=true` as asyncpg's `ssl=True` (a default context: TLS,
    certificate and host name checked). Neither: asyncpg's default, `prefer`."""
    for name in (*TLS_PARAMETERS, "ssl"):
        credentials.pop(name, None)
    tls = {name: given[name] for name in TLS_PARAMETERS if name in given}
    if "sslmode" in tls:
        mode = tls["sslmode"].strip().lower()
        if mode not in SSL_MODES:
            raise DatabaseUrlError(
                f"its ?sslmode= must be one of {', '.join(SSL_MODES)}, not {tls['sslmode']!r}"
            )
        tls["sslmode"] = mode  # asyncpg reads it in lower case only
    elif "ssl" in given:
        word = given["ssl"].strip().lower()
        meant = SSL_WORDS.get(word, word)
        if meant is True:
            credentials["ssl"] = True
        elif meant in SSL_MODES:
            tls["sslmode"] = str(meant)
        else:
            choices = ", ".join(SSL_MODES)
            raise DatabaseUrlError(
                f"its ?ssl= must be one of {choices} (or true, false), not {given['ssl']!r}"
            )
    if tls.get("sslrootcert") == "system":  # libpq's, since 16: asyncpg reads it as a file
        raise DatabaseUrlError("its ?sslrootcert=system is not taken: name the CA file")
    if tls.get("sslmode") in ("require", "verify-ca", "verify-full"):  # the files are read
        for name in ("sslrootcert", "sslcert", "sslkey", "sslcrl"):
            path = tls.get(name)
            if path is not None and not Path(path).is_file():
                raise DatabaseUrlError(f"its ?{name}= names no file: {path}")  # else "[Errno 2]"
    if tls:
        credentials["dsn"] = "postgresql://?" + urlencode(tls)


def _unreadable_parameter(url: str) -> str | None:
    """What is wrong with the first of the URL's parameters Tortoise cannot convert."""
    scheme = url.partition("://")[0]
    casts = DB_LOOKUP.get(scheme, {}).get("cast", {})
    for name, value in url_parameters(url).items():
        cast = casts.get(name)
        if cast is int or cast is float:
            try:
                cast(value)
            except ValueError:
                whole = "a whole number" if cast is int else "a number"
                return f"its ?{name}= must be {whole}, not {value!r}"
    return None


class DatabaseUrlError(ValueError):
    """OPSGRAPH_DATABASE_URL names a database that cannot be opened as it stands."""


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`,
    ...): one round trip per query saved. Nothing here keeps session state on a pooled
    connection (no session SET, LISTEN or advisory lock; the bus has its own connection);
    an open transaction is still rolled back on release."""

    def get_reset_query(self) -> str:
        return ""


def normalise_url(url: str) -> str:
    """Accept `postgresql://` as well as Tortoise's `postgres://` spelling."""
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


async def migrate(settings: Settings) -> list[str]:
    """Apply every pending migration to the configured database; the names applied."""
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)

    config = _config(settings)
    try:
        await _reach(config)
        await _migrate(config=config, progress=progress)
    finally:
        await Tortoise.close_connections()
    return applied


async def _reach(config: dict[str, Any]) -> None:
    """Connect once, and let go. Tortoise's migrations read which are applied taking any
    error as "none", then connect again to record them: an unreachable database took its
    connect timeout twice before failing, and a refused one was asked twice."""
    await Tortoise.init(config=config)
    try:
        await connections.get("default").execute_query("SELECT 1")
    finally:
        await Tortoise.close_connections()


async def open_database(settings: Settings, *, run_migrations: bool = True) -> list[str]:
    """Migrate, then open connections visible to every task of the process; once migrated,
    refuse a database whose tables are not what its recorded migrations make
    (`SchemaMismatch`). The migrations applied, by name."""
    applied = await migrate(settings) if run_migrations else []
    await Tortoise.init(config=_config(settings), _enable_global_fallback=True)
    if not run_migrations:  # another process migrates (and checks): `bench.cpu`'s trees
        return applied
    try:
        await check_schema()
    except BaseException:
        await close_database()
        raise
    return applied


class SchemaMismatch(Exception):
    """The database's tables are not those this version's migrations make: it was made by
    another version (a newer one, or a development one whose migrations were rewritten),
    or changed by hand. It is not served (its pending migrations of ours are applied
    first, as they must be before its tables can be compared)."""


_MIGRATION_TABLE = "tortoise_migrations"


async def check_schema() -> None:
    """Compare the open database with this version: every migration it records must be one
    of ours, and every table and column of the models must exist. Migrations are trusted
    by name, so a database whose recorded migrations were rewritten afterwards (the first
    day's development versions) looked migrated and failed on every write."""
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    _, rows = await connection.execute_query(
        f'SELECT name FROM "{_MIGRATION_TABLE}" WHERE app = {"$1" if postgres else "?"}',
        [APP_LABEL],
    )
    ours = {module.name for module in pkgutil.iter_modules(migrations_package.__path__)}
    unknown = sorted({str(row["name"]) for row in rows} - ours)
    if unknown:
        raise SchemaMismatch(
            f"the database records migrations this version does not have ({', '.join(unknown)}):"
            " a newer version of Opsgraph migrated it; run that version"
        )
    if postgres:  # the tables a query finds: the first of each name along the search_path
        query = (
            "SELECT c.relname AS t, a.attname AS c FROM pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid"
            " WHERE c.relkind IN ('r', 'p') AND pg_catalog.pg_table_is_visible(c.oid)"
            " AND a.attnum > 0 AND NOT a.attisdropped"
        )
    else:
        query = (
            "SELECT m.name AS t, p.name AS c FROM sqlite_master AS m"
            " JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'"
        )
    _, rows = await connection.execute_query(query)
    present: dict[str, set[str]] = {}
    for row in rows:
        present.setdefault(str(row["t"]), set()).add(str(row["c"]))
    missing: list[str] = []
    for model in Tortoise.apps[APP_LABEL].values():
        table = model._meta.db_table
        if table not in present:
            missing.append(f"table {table}")
            continue
        columns = sorted(set(model._meta.fields_db_projection.values()) - present[table])
        missing.extend(f"{table}.{column}" for column in columns)
    if missing:
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        raise SchemaMismatch(
            f"the database lacks what its recorded migrations make ({shown}): it was made by"
            " another version of Opsgraph (a development one before its migrations were"
            " final) or changed by hand; Opsgraph will not use it"
        )


def _config(settings: Settings) -> dict[str, Any]:
    return tortoise_config(settings.database_url, connect_timeout=settings.connect_timeout_seconds)


async def close_database() -> None:
    """Close every connection opened by `open_database` and forget the models' wiring.

    Resetting the app registry lets one process open another database afterwards
    (the tests switch from SQLite to PostgreSQL); Tortoise offers no public call for it.
    """
    await Tortoise.close_connections()
    await Tortoise._reset_apps()
    EXECUTOR_CACHE.clear()  # its SQL is keyed by connection name, not by dialect


_UNAVAILABLE_NAMES = {
    # asyncpg: connection lost, refused or the server shutting down / starting up.
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "CannotConnectNowError",
    "AdminShutdownError",
    "CrashShutdownError",
    "TooManyConnectionsError",
    "InterfaceError",
    # asyncpg, reconnecting: the database is gone (dropped, renamed) or the server refuses
    # the role or its password (credentials rotated): no request can be served until an
    # operator acts, which is what 503 and /healthz say.
    "InvalidCatalogNameError",
    "InvalidAuthorizationSpecificationError",
    "InvalidPasswordError",
    # Tortoise's wrapper for failures to connect.
    "DBConnectionError",
}


def database_unavailable(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) means the database is unreachable,
    so the caller should get 503 and retry, not a 500."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if type(current).__name__ in _UNAVAILABLE_NAMES:
            return True
        current = current.__cause__ or current.__context__
    return False
