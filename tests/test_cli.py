"""The `opsgraph` command's keys and services commands name what is wrong, without a
traceback, and change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlencode

import asyncpg  # type: ignore[import-untyped]
import certifi
import pytest

from opsgraph.db import DatabaseUrlError, tortoise_config
from resolvers.auth import NAME_LOCK
from tests.servers import OPSGRAPH, free_port, postgres_database
from tests.test_server import run_cli


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory whose embedded database is migrated (one workspace, its admin key)."""
    migrated = run_cli(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "create", "--name", "ci", "--scopes", "events:write"],
        ["keys", "list"],
        ["keys", "revoke", "key_unknown"],
        ["services", "create", "checkout"],
    ],
)
def test_an_unknown_workspace_is_named(workdir: Path, command: list[str]) -> None:
    done = run_cli(workdir, *command, "--workspace", "ws_nope")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "opsgraph: no workspace ws_nope\n"
    keys = run_cli(workdir, "keys", "list")
    assert [line.split("\t")[2] for line in keys.stdout.splitlines()] == ["admin"]


def test_the_default_workspace_is_used_without_the_option(workdir: Path) -> None:
    created = run_cli(workdir, "services", "create", "checkout")
    assert created.returncode == 0, created.stderr
    again = run_cli(workdir, "services", "create", "checkout")
    assert again.returncode == 1
    assert again.stderr == "opsgraph: A service named 'checkout' already exists.\n"


def run_with(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with these OPSGRAPH_* variables (and no others from this process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
    return subprocess.run(
        [OPSGRAPH, *args],
        cwd=workdir,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:///nonexistent-folder/x.sqlite3", "the folder /nonexistent-folder for the SQLite"),
        # PostgreSQL's reason, which Tortoise's "Can't establish connection" left out.
        (
            "postgres://postgres@127.0.0.1:5432/opsgraph_no_such_db",
            '"opsgraph_no_such_db" does not',
        ),
        ("postgres://postgres:hunter2@127.0.0.1:1/x", "Connect call failed"),
        ("postgres://postgres@127.0.0.1:1/x?password=hunter2", "password=***"),
        ("postgres://postgres@127.0.0.1:1/x?timeout=1.5", "its ?timeout= must be a whole number"),
        # 0 gave up at once on a healthy database, blaming it; a parameter asyncpg does not
        # take was a TypeError's traceback.
        ("postgres://postgres@127.0.0.1:5432/x?timeout=0", "its ?timeout= must be a whole"),
        ("postgres://postgres@127.0.0.1:5432/x?connect_timeout=-1", "its ?connect_timeout="),
        ("postgres://postgres@127.0.0.1:5432/x?foo=bar", "its ?foo= is not a parameter it takes"),
    ],
    ids=[
        "sqlite folder missing (it hung)",
        "no such database",
        "nothing listening",
        "a password as a parameter",
        "a parameter that is not a number (a traceback)",
        "no time to connect",
        "libpq's connect_timeout below 1",
        "a parameter nothing takes (a traceback)",
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(
    tmp_path: Path, url: str, says: str
) -> None:
    for command in (["migrate"], ["keys", "list"]):
        done = run_with(tmp_path, {"OPSGRAPH_DATABASE_URL": url}, *command)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(
            "opsgraph: cannot open the database at OPSGRAPH_DATABASE_URL="
        )
        assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert "hunter2" not in done.stderr  # a password is never shown


def test_a_listing_cut_short_by_its_reader_ends_quietly(tmp_path: Path) -> None:
    """`opsgraph keys list | head -1`: the reader goes before the list is written, which
    printed a BrokenPipeError traceback. Now nothing on stderr, and a shell's SIGPIPE status."""
    assert run_with(tmp_path, {}, "migrate").returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
    clean.pop("PYTHONUNBUFFERED", None)  # buffered, as in a shell: written at the end
    listing = subprocess.Popen(
        [OPSGRAPH, "keys", "list"], cwd=tmp_path, env=clean, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert listing.stdout is not None
    listing.stdout.close()  # the reader has gone
    _, err = listing.communicate(timeout=60)
    assert (listing.returncode, err) == (141, "")


def test_serve_names_an_unreachable_bus_before_it_creates_anything(tmp_path: Path) -> None:
    done = run_with(tmp_path, {"OPSGRAPH_BROADCAST_URL": "redis://127.0.0.1:1/0"}, "serve")
    assert done.returncode == 1
    assert done.stderr.startswith("opsgraph: cannot open the bus at OPSGRAPH_BROADCAST_URL=")
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "opsgraph.sqlite3").exists()  # no admin key made and never shown


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"OPSGRAPH_DATABASE_URL": "mysql://x@y/z"}, ["migrate"], "OPSGRAPH_DATABASE_URL: must"),
        ({"OPSGRAPH_BROADCAST_URL": "kafka://x"}, ["serve"], "OPSGRAPH_BROADCAST_URL: must"),
        ({"OPSGRAPH_PORT": "70000"}, ["serve"], "OPSGRAPH_PORT: must be 1 to 65535"),
        ({}, ["serve", "--port", "70000"], "--port: must be 1 to 65535"),
        ({}, ["keys", "create", "--name", " ", "--scopes", "read"], "name must be 1 to"),
        ({}, ["services", "create", ""], "name must be 1 to"),
        # A newline in a name would print as another row of `keys list`.
        ({}, ["keys", "create", "--name", "a\nb", "--scopes", "read"], "control characters"),
        ({}, ["services", "create", "tab\there"], "control characters"),
        # An actor name must read as what it is: no right-to-left override, no zero-width.
        ({}, ["keys", "create", "--name", "ops\u202eadmin", "--scopes", "read"], "invisible"),
        ({}, ["services", "create", "api\u200b"], "invisible formatting characters"),
        # It would pose as a service's routing key on the timeline.
        ({}, ["keys", "create", "--name", "Service:api", "--scopes", "read"], "'service:'"),
        ({}, ["serve", "--workers", "0"], "--workers must be at least 1"),
        ({"OPSGRAPH_RATE_LIMIT_REDIS_URL": "http://x"}, ["serve"], "must be empty or start"),
    ],
)
def test_values_nothing_could_use_stop_the_command(
    workdir: Path, env: dict[str, str], args: list[str], says: str
) -> None:
    done = run_with(workdir, env, *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    keys = run_cli(workdir, "keys", "list")
    assert [line.split("\t")[2] for line in keys.stdout.splitlines()] == ["admin"]


def test_revoking_with_an_unreachable_bus_still_revokes_and_says_how_servers_learn(
    workdir: Path,
) -> None:
    run_cli(workdir, "keys", "create", "--name", "ci", "--scopes", "events:write")
    [key_id] = [
        line.split("\t")[0] for line in run_cli(workdir, "keys", "list").stdout.splitlines()
        if line.split("\t")[2] == "ci"
    ]  # fmt: skip
    done = run_with(
        workdir, {"OPSGRAPH_BROADCAST_URL": "redis://127.0.0.1:1/0"}, "keys", "revoke", key_id
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stderr.splitlines()
    assert first == f"revoked {key_id}"
    assert second.startswith("opsgraph: cannot open the bus at OPSGRAPH_BROADCAST_URL=")
    assert second.endswith("within OPSGRAPH_KEY_RECHECK_SECONDS instead")
    assert "revoked" in run_cli(workdir, "keys", "list").stdout


def test_a_misspelt_setting_is_named_beside_the_one_meant(workdir: Path) -> None:
    env = {"OPSGRAPH_DATABSE_URL": "postgres://postgres@127.0.0.1:1/x", "OPSGRAPH_KEY": "og_…"}
    done = run_with(workdir, env, "keys", "list")
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "opsgraph: warning: OPSGRAPH_DATABSE_URL is not a setting"
        " (did you mean OPSGRAPH_DATABASE_URL?)\n"
    )  # and OPSGRAPH_KEY, like no setting (the README's own variable), passes unremarked
    assert done.stdout.split("\t")[2] == "admin"  # the default database, as warned


def test_services_are_listed_with_their_prefix_never_their_routing_key(workdir: Path) -> None:
    keys = {name: run_cli(workdir, "services", "create", name).stdout.strip()
            for name in ("web", "api")}  # fmt: skip
    listed = run_cli(workdir, "services", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [name for _, name, _ in rows] == ["api", "web"]
    for service_id, name, prefix in rows:
        assert service_id.startswith("svc_") and prefix.endswith("…")
        assert keys[name].startswith(prefix[:-1]) and keys[name] not in listed.stdout
    rotated = run_cli(workdir, "services", "rotate", "api")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert rotated.stdout == new + "\n" and len(new) == 32 and new != keys["api"]
    rows = [line.split("\t") for line in run_cli(workdir, "services", "list").stdout.splitlines()]
    assert [prefix for _, name, prefix in rows if name == "api"] == [new[:10] + "…"]
    missing = run_cli(workdir, "services", "rotate", "nowhere")
    assert (missing.returncode, missing.stderr) == (1, "opsgraph: no service named 'nowhere'\n")


def test_the_version_is_the_installed_distribution_s() -> None:
    done = subprocess.run([OPSGRAPH, "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f"opsgraph {version('opsgraph')}\n")


def test_a_workspace_is_created_with_its_own_admin_key(workdir: Path) -> None:
    created = run_cli(workdir, "workspaces", "create", " team b ")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    listed = [
        line.split("\t") for line in run_cli(workdir, "workspaces", "list").stdout.splitlines()
    ]
    assert [name for _, name, _ in listed] == ["default", "team b"]  # oldest first
    new_id = listed[1][0]
    assert created.stderr.startswith(f"created workspace {new_id} (team b).")
    [key] = [line.split("\t") for line in run_cli(workdir, "keys", "list", "--workspace", new_id)
             .stdout.splitlines()]  # fmt: skip
    assert key[2:] == ["admin", "admin,approvals:decide,events:write,read"]
    assert secret.startswith(key[1].removesuffix("…"))
    # The default workspace (what commands act on without --workspace) is unchanged.
    assert [
        line.split("\t")[2] for line in run_cli(workdir, "keys", "list").stdout.splitlines()
    ] == ["admin"]
    assert run_cli(workdir, "workspaces", "create", "").returncode == 2
    # The same name again (the command run twice) is refused, and creates nothing.
    again = run_cli(workdir, "workspaces", "create", "team b")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == f"opsgraph: A workspace named 'team b' already exists ({new_id}).\n"
    assert len(run_cli(workdir, "workspaces", "list").stdout.splitlines()) == 2


def test_serve_on_a_port_in_use_says_so_in_one_line_before_anything_opens(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for bus in ("memory://", "redis://127.0.0.1:6379/0"):
            env = {"OPSGRAPH_BROADCAST_URL": bus, "OPSGRAPH_PORT": str(port)}
            done = run_with(tmp_path, env, "serve")
            assert (done.returncode, done.stdout) == (1, ""), done.stderr
            assert done.stderr == (
                f"opsgraph: cannot listen on 127.0.0.1:{port}: Address already in use\n"
            )
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Several workers share one dual-stack socket: `::` then needs IPv4's port too.
        env = {"OPSGRAPH_BROADCAST_URL": "redis://127.0.0.1:6379/0"}
        done = run_with(
            tmp_path, env, "serve", "--host", "::", "--port", str(port), "--workers", "2"
        )
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert done.stderr == f"opsgraph: cannot listen on [::]:{port}: Address already in use\n"
    refused = run_with(tmp_path, {}, "serve", "--workers", "0")
    assert refused.returncode == 2, refused.stderr
    assert not (tmp_path / "opsgraph.sqlite3").exists()  # no admin key made and never shown


@pytest.mark.parametrize(
    ("query", "limit"),
    [("", "OPSGRAPH_CONNECT_TIMEOUT_SECONDS"), ("?timeout=2", "2 s (the URL's ?timeout=)")],
)
def test_a_database_port_that_never_answers_is_given_up_on_after_the_timeout(
    tmp_path: Path, query: str, limit: str
) -> None:
    """A port that accepts and never answers (another service's, as Redis's did) held every
    command for asyncpg's 60 s connect timeout, twice: 2 minutes before its one line. The
    line names what limited the wait: the setting, or the URL's own `?timeout=`. It is
    waited for once: Tortoise's migrations took a failure to read what is applied as
    "nothing applied" and connected again, so the wait was twice the timeout."""
    with socket.socket() as silent:  # the kernel completes the handshake; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgres://postgres@127.0.0.1:{silent.getsockname()[1]}/x{query}"
        env = {"OPSGRAPH_DATABASE_URL": url, "OPSGRAPH_CONNECT_TIMEOUT_SECONDS": "1"}
        started = time.monotonic()
        done = run_with(tmp_path, env, "migrate")
        elapsed = time.monotonic() - started
        assert _connections_made(silent) == 1
    assert done.returncode == 1
    assert done.stderr == (
        f"opsgraph: cannot open the database at OPSGRAPH_DATABASE_URL={url}: "
        f"no answer within {limit}\n"
    )
    assert elapsed < 30, elapsed  # a hang would be 60 s or more (run_with's own limit)


def _connections_made(listening: socket.socket) -> int:
    """How many connections wait in `listening`'s queue (each one a try to connect)."""
    listening.setblocking(False)
    made = 0
    while True:
        try:
            connection, _ = listening.accept()
        except BlockingIOError:
            return made
        connection.close()
        made += 1


def test_the_connect_timeout_reaches_asyncpg_and_leaves_sqlite_alone() -> None:
    def credentials(url: str) -> dict[str, object]:
        config = tortoise_config(url, connect_timeout=3.5)
        return config["connections"]["default"]["credentials"]  # type: ignore[no-any-return]

    assert credentials("postgres://u@127.0.0.1:5432/db")["timeout"] == 3.5
    assert credentials("postgres://u@127.0.0.1:5432/db?timeout=7")["timeout"] == 7  # the URL's
    with_libpq_s = credentials("postgres://u@127.0.0.1:5432/db?connect_timeout=4")  # libpq's name
    assert with_libpq_s["timeout"] == 4 and "connect_timeout" not in with_libpq_s
    # A Unix socket's folder as the host, as Tortoise and asyncpg take it (Cloud SQL's too).
    assert credentials("postgres://u@/db?host=/run/postgresql&port=5433")["host"] == (
        "/run/postgresql"
    )
    # A CA file for a mode that reads none (the default, `prefer`) is not looked for.
    assert "dsn" in credentials("postgres://u@127.0.0.1/db?sslrootcert=/no/such/ca.pem")
    for refused, says in [
        ("?connect_timeout=%C2%B2", "its ?connect_timeout= must be a whole number"),  # "²"
        ("?sslrootcert=system&sslmode=verify-full", "its ?sslrootcert=system is not taken"),
    ]:
        with pytest.raises(DatabaseUrlError, match=re.escape(says)):
            credentials(f"postgres://u@127.0.0.1:5432/db{refused}")
    assert "timeout" not in credentials("sqlite://:memory:")  # sqlite3's is its busy timeout


@pytest.mark.parametrize(
    ("query", "dsn", "ssl"),
    [
        ("", None, None),  # asyncpg's default, `prefer`
        ("?sslmode=require", "sslmode=require", None),  # libpq's spelling: a TypeError before
        ("?sslmode=Require", "sslmode=require", None),
        (f"?sslmode=verify-full&sslrootcert={certifi.where()}",
         urlencode({"sslmode": "verify-full", "sslrootcert": certifi.where()}), None),
        ("?ssl=false", "sslmode=disable", None),  # Tortoise read any `ssl` as a boolean: TLS
        ("?ssl=disable", "sslmode=disable", None),
        ("?ssl=true", None, True),
        ("?ssl=prefer&sslmode=disable", "sslmode=disable", None),  # `sslmode` first, as libpq
    ],
)  # fmt: skip
def test_the_url_s_tls_parameters_reach_asyncpg(query: str, dsn: str | None, ssl: object) -> None:
    """libpq's TLS parameters go to asyncpg in a `dsn` of their own (asyncpg reads them
    only from there); the host and the rest stay Tortoise's keywords, which win."""
    credentials = tortoise_config(f"postgres://u@db.example:5432/db{query}")["connections"][
        "default"
    ]["credentials"]
    assert credentials.get("dsn") == (dsn and f"postgresql://?{dsn}")
    assert credentials.get("ssl") == ssl
    assert not {"sslmode", "sslrootcert"} & set(credentials)
    assert credentials["host"] == "db.example"


def test_tls_modes_as_a_server_without_tls_meets_them(tmp_path: Path) -> None:
    """Against this machine's PostgreSQL, which has no TLS: `disable` and `prefer` open it,
    `require` and `verify-full` (with its CA file) are refused in one line, as is a CA file
    that is not there (a traceback before), and a mode nothing knows is named."""
    with postgres_database() as url:
        for query in ("?sslmode=disable", "?ssl=false", "?sslmode=prefer"):
            done = run_with(tmp_path, {"OPSGRAPH_DATABASE_URL": url + query}, "migrate")
            assert done.returncode == 0, (query, done.stderr)
        refused = {
            "?sslmode=require": "rejected SSL upgrade",
            "?ssl=yes": "rejected SSL upgrade",
            f"?sslmode=verify-full&sslrootcert={certifi.where()}": "rejected SSL upgrade",
            "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem": (
                "its ?sslrootcert= names no file: /nonexistent/ca.pem"
            ),
            "?sslmode=maybe": "its ?sslmode= must be one of disable, allow, prefer, require,",
        }
        for query, says in refused.items():
            done = run_with(tmp_path, {"OPSGRAPH_DATABASE_URL": url + query}, "keys", "list")
            assert done.returncode == 1, (query, done.stderr)
            assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_two_servers_bootstrapping_one_empty_database_make_one_workspace(tmp_path: Path) -> None:
    """A process finding the database empty while another is creating its workspace waits
    for it, then finds the workspace there: it creates none, prints no key, and starts
    (it had made a second "default", then, once workspace names were checked, failed)."""
    with postgres_database() as url:
        env = {"OPSGRAPH_DATABASE_URL": url}
        assert run_with(tmp_path, env, "migrate").returncode == 0

        async def race() -> subprocess.CompletedProcess[str]:
            other = await asyncpg.connect(url)
            try:
                await other.execute("DELETE FROM api_key; DELETE FROM workspace")  # empty again
                async with other.transaction():  # the other process, creating its workspace
                    await other.execute("SELECT pg_advisory_xact_lock($1)", NAME_LOCK)
                    await other.execute(
                        "INSERT INTO workspace (id, name, timeline_seq, policy_version,"
                        " created_at) VALUES ('ws_other', 'default', 0, 0, now())"
                    )
                    migrating = asyncio.create_task(
                        asyncio.to_thread(run_with, tmp_path, env, "migrate")
                    )
                    await asyncio.sleep(3)  # started, migrated, and waiting for the lock
                    assert not migrating.done()
                return await migrating
            finally:
                await other.close()

        done = asyncio.run(race())
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert done.stderr.startswith("No migration to apply:"), done.stderr  # and no key
        assert done.stderr.count("\n") == 1, done.stderr


@contextlib.contextmanager
def _migrated(backend: str, workdir: Path) -> Iterator[tuple[str | None, dict[str, str]]]:
    """A database migrated by `opsgraph migrate`: a new PostgreSQL one (its URL), or the
    working directory's SQLite file (None); with the environment naming it."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database()) if backend == "postgres" else None
        env = {"OPSGRAPH_DATABASE_URL": url} if url else {}
        assert run_with(workdir, env, "migrate").returncode == 0
        yield url, env


def _execute(url: str | None, workdir: Path, sql: str) -> None:
    """Run SQL on the PostgreSQL database at `url`, or on the working directory's SQLite."""
    if url is None:
        with sqlite3.connect(workdir / "opsgraph.sqlite3") as connection:
            connection.executescript(sql)
        return

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_unlike_its_recorded_migrations_is_refused_in_one_line(
    tmp_path: Path, backend: str
) -> None:
    """A database whose recorded migrations were rewritten after it applied them (the first
    day's development versions: a column added to 0001, 0002 and 0003 empty at first)
    looked migrated; the server started, said healthy, and failed every write with a 500.
    `migrate` and `serve` now refuse it, naming what is missing, and print no key."""
    with _migrated(backend, tmp_path) as (url, env):
        _execute(
            url,
            tmp_path,
            "ALTER TABLE workspace RENAME COLUMN timeline_seq TO old_seq;"
            " ALTER TABLE timeline_entry RENAME COLUMN seq TO old_seq;"
            " ALTER TABLE incident_alert RENAME TO old_alert;",
        )
        for command in ("migrate", "serve"):
            port = ["--port", str(free_port())] if command == "serve" else []
            done = run_with(tmp_path, env, command, *port)
            assert (done.returncode, done.stdout) == (1, ""), done.stderr
            assert done.stderr.startswith(
                "opsgraph: cannot use the database at OPSGRAPH_DATABASE_URL="
            )
            assert done.stderr.count("\n") == 1, done.stderr
            for missing in ("workspace.timeline_seq", "timeline_entry.seq", "table incident_alert"):
                assert missing in done.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_a_newer_version_migrated_is_refused(tmp_path: Path, backend: str) -> None:
    with _migrated(backend, tmp_path) as (url, env):
        _execute(
            url,
            tmp_path,
            "INSERT INTO tortoise_migrations (app, name, applied_at)"
            " VALUES ('models', '0099_from_the_future', CURRENT_TIMESTAMP);",
        )
        done = run_with(tmp_path, env, "keys", "list")
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert "records migrations this version does not have (0099_from_the_future)" in (
            done.stderr
        )
        assert done.stderr.count("\n") == 1, done.stderr


MIGRATIONS = sorted(
    path.stem
    for path in (Path(__file__).parent.parent / "models" / "migrations").glob(
        "[0-9][0-9][0-9][0-9]_*.py"
    )
)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrate_says_what_it_applied_or_that_nothing_was_needed(
    tmp_path: Path, backend: str
) -> None:
    """An operator upgrading sees which migrations ran (on stderr: stdout stays the key)."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database()) if backend == "postgres" else None
        env = {"OPSGRAPH_DATABASE_URL": url} if url else {}
        where = "the database at OPSGRAPH_DATABASE_URL=" + (url or f"sqlite://{tmp_path}")

        # A database an older version migrated: all but the last migration applied (in
        # another process: this one's Tortoise holds the suite's database).
        older = (
            "import asyncio, sys\n"
            "from tortoise import Tortoise\n"
            "from tortoise.migrations.api import migrate\n"
            "from opsgraph.db import tortoise_config\n"
            "async def main():\n"
            "    try:\n"
            "        await migrate(config=tortoise_config(sys.argv[1]), target=sys.argv[2])\n"
            "    finally:\n"
            "        await Tortoise.close_connections()\n"
            "asyncio.run(main())\n"
        )
        target = url or f"sqlite://{tmp_path / 'opsgraph.sqlite3'}"
        subprocess.run(
            [sys.executable, "-c", older, target, f"models.{MIGRATIONS[-2]}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        upgraded = run_with(tmp_path, env, "migrate")
        assert upgraded.returncode == 0, upgraded.stderr
        applied = upgraded.stderr.splitlines()[0]
        assert applied.startswith(f"Applied 1 migration to {where}"), applied
        assert applied.endswith(f": {MIGRATIONS[-1]}."), applied
        assert upgraded.stdout.startswith("og_")  # the new database's first workspace key

        again = run_with(tmp_path, env, "migrate")
        assert (again.returncode, again.stdout) == (0, ""), again.stderr
        assert again.stderr.startswith(f"No migration to apply: {where}"), again.stderr
        assert again.stderr.endswith(" is up to date.\n"), again.stderr


def test_a_new_database_names_every_migration_applied(tmp_path: Path) -> None:
    done = run_with(tmp_path, {}, "migrate")
    names = ", ".join(MIGRATIONS)
    assert f"Applied {len(MIGRATIONS)} migrations to the database at" in done.stderr
    assert done.stderr.splitlines()[0].endswith(f": {names}.")
