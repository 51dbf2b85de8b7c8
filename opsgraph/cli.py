"""The `opsgraph` command: the server, its database, keys, services and workspaces.

Commands that create a secret print it alone on stdout, so scripts can capture it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
from asyncpg.exceptions import PostgresError  # type: ignore[import-untyped]
from redis.asyncio import Redis
from redis.exceptions import RedisError
from tortoise.exceptions import ConfigurationError, DBConnectionError

from opsgraph.db import (
    DatabaseUrlError,
    SchemaMismatch,
    close_database,
    open_database,
    url_parameters,
)
from opsgraph.logs import log_config
from opsgraph.settings import ENV_PREFIX, Settings, misspelled, port_problem
from resolvers import auth
from resolvers.errors import AuthError

if TYPE_CHECKING:
    from starlette.applications import Starlette

T = TypeVar("T")
R = TypeVar("R")


def _with_database(
    settings: Settings, work: Callable[[], Awaitable[T]], *, say_up_to_date: bool = False
) -> T:
    """Open (and migrate) the database, saying on stderr which migrations were applied
    (and, with `say_up_to_date`, that none were needed), then run `work`."""

    async def run() -> T:
        applied = await _reached(
            "the database", "DATABASE_URL", settings.database_url, open_database(settings)
        )
        where = f"the database at OPSGRAPH_DATABASE_URL={_shown(settings.database_url)}"
        if applied:
            names = ", ".join(applied)
            plural = "s" if len(applied) > 1 else ""
            print(f"Applied {len(applied)} migration{plural} to {where}: {names}.", file=sys.stderr)
        elif say_up_to_date:
            print(f"No migration to apply: {where} is up to date.", file=sys.stderr)
        try:
            return await work()
        finally:
            await close_database()

    return asyncio.run(run())


async def _reached(what: str, setting: str, url: str, opening: Awaitable[R]) -> R:
    """Await `opening` (connecting to `url`); a failure is a CommandError naming the setting
    and the reason in one line, not the driver's traceback."""
    try:
        return await opening
    except SchemaMismatch as exc:
        raise CommandError(
            f"cannot use {what} at OPSGRAPH_{setting}={_shown(url)}: {exc}"
        ) from None
    except CANNOT_CONNECT as exc:  # anything else (a migration's own error) keeps its traceback
        if isinstance(exc, DBConnectionError) and isinstance(exc.__cause__, PostgresError):
            exc = exc.__cause__  # PostgreSQL's reason ('database "x" does not exist')
        text = str(exc).strip()
        first = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
        if isinstance(exc, TimeoutError) and not text:
            first = f"no answer within {_timeout_named(setting, url)}"
        raise CommandError(
            f"cannot open {what} at OPSGRAPH_{setting}={_shown(url)}: {first}"
        ) from None


def _timeout_named(setting: str, url: str) -> str:
    """What limited the wait to connect: a database URL's `?timeout=` wins over the setting
    (not a bus URL's: the bus is given the setting's timeout whatever its URL says)."""
    given = url_parameters(url).get("timeout") if setting == "DATABASE_URL" else None
    return f"{given} s (the URL's ?timeout=)" if given else "OPSGRAPH_CONNECT_TIMEOUT_SECONDS"


# What failing to reach a database or a bus raises: the network (refused, unknown host,
# timeout: OSError, of which Tortoise's DBConnectionError and redis's ConnectionError are
# kinds), the server refusing the role, password or database, a URL nothing can open.
CANNOT_CONNECT = (
    OSError,
    TimeoutError,
    DatabaseUrlError,
    ConfigurationError,
    RedisError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ClientConfigurationError,  # a TLS file missing or unreadable, say
)


def _shown(url: str) -> str:
    """A URL as a message may show it: without its password (in its user part, or as a
    `?password=` parameter, which asyncpg takes too)."""
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts)


def _reach_bus(settings: Settings) -> None:
    """Connect to the broadcast URL once and let go; CommandError if it cannot be reached."""
    url, timeout = settings.broadcast_url, settings.connect_timeout_seconds
    asyncio.run(_reached("the bus", "BROADCAST_URL", url, _check_bus(url, timeout)))


async def _check_bus(url: str, timeout: float) -> None:
    """Connect to the broadcast URL once and let go (memory:// has nothing to reach)."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        client = Redis.from_url(url, socket_connect_timeout=timeout)
        try:
            await client.ping()
        finally:
            await client.aclose()
    elif scheme in ("postgres", "postgresql"):
        connection = await asyncpg.connect(url, timeout=timeout)
        await connection.close()


def _check_listen(host: str, port: int, *, workers: int) -> None:
    """Bind what uvicorn will listen on and let go: a port in use or an address this host
    lacks is one line here, not uvicorn's log line after the app's start-up, then its
    shutdown and exit code 3. One worker listens as asyncio's `create_server` does (each
    address the host resolves to, IPv6 ones for IPv6 alone); several share one socket made
    as uvicorn's `Config.bind_socket` makes it (IPv6 for a host with a colon, dual-stack)."""
    try:
        if workers > 1:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
            return
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(found):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from None


class CommandError(Exception):
    """A command that cannot go on; `main` prints the message alone (no traceback)."""


async def _workspace(explicit: str | None) -> str:
    """The workspace a command acts on: `--workspace`, which must exist, else the oldest."""
    if explicit is None:
        try:
            return await auth.default_workspace_id()
        except AuthError as exc:
            raise CommandError(exc.message) from None
    if await auth.find_workspace(workspace_id=explicit) is None:
        raise CommandError(f"no workspace {explicit}")
    return explicit


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from opsgraph.app import create_app

    # Everything that can refuse to serve comes before the database is bootstrapped: a
    # failure after it would lose the admin key it prints.
    if args.workers is not None and args.workers < 1:
        print("opsgraph: --workers must be at least 1", file=sys.stderr)
        return 2
    workers = args.workers or settings.workers
    if workers > 1 and settings.broadcast_url.startswith("memory://"):
        print(
            "opsgraph: --workers above 1 needs OPSGRAPH_BROADCAST_URL=redis://… or postgres://…"
            " (memory:// cannot reach subscribers in the other workers)",
            file=sys.stderr,
        )
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    _check_listen(host, port, workers=workers)
    _reach_bus(settings)
    # What the app builds its links from (`Settings.base_url`), in every worker: they read
    # the environment.
    settings = replace(settings, host=host, port=port)
    os.environ[f"{ENV_PREFIX}HOST"], os.environ[f"{ENV_PREFIX}PORT"] = host, str(port)
    issued = _with_database(settings, auth.bootstrap)
    if issued is not None:
        print("Created the default workspace. Its admin API key, shown this once:")
        print(f"\n    {issued.secret}\n", flush=True)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    print(f"Opsgraph on http://{shown}:{port}  (GraphQL at /graphql)", flush=True)
    if workers > 1:  # each worker builds the app itself, from the same environment
        app: str | Starlette = "opsgraph.cli:app_from_env"
    else:
        app = create_app(settings)
        tune_gc(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config(),
        access_log=settings.access_log,
        factory=workers > 1,
        workers=workers,
        **server_options(settings),
    )
    return 0


def server_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app here: HTTP/1.1 by `opsgraph.restlane`'s protocol (the REST
    posts answered without uvicorn's ASGI cycle), WebSockets as `websocket_options` says."""
    from opsgraph.restlane import RestHttpProtocol

    return {"http": RestHttpProtocol, **websocket_options(settings)}


def websocket_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves WebSockets here (the tests serve the app with the same)."""
    from opsgraph.wsserver import GraphQLWebSocket

    return {
        # `graphql-transport-ws` served outside ASGI, for the least memory per idle
        # subscriber; every other handshake goes to uvicorn's sans-I/O protocol and the app
        # (`opsgraph.wsserver`). That protocol alone if `ws_direct` is off.
        "ws": GraphQLWebSocket if settings.ws_direct else "websockets-sansio",
        "ws_ping_interval": settings.ws_ping_interval_seconds or None,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds or None,
        # Live messages are small JSON: compressing each one per client cost more CPU than
        # it saved bandwidth (seen in the fan-out benchmark's profile), and uncompressed
        # frames can be built once for every subscriber.
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_body_bytes,  # a WebSocket message, like an HTTP body
    }


def app_from_env() -> Starlette:
    """The app built from the environment: what each `--workers` process runs."""
    from opsgraph.app import create_app

    settings = Settings.from_env()
    app = create_app(settings)
    tune_gc(settings)
    return app


def tune_gc(settings: Settings) -> None:
    """Collect garbage less often, and never rescan what start-up built (schema, modules).

    Each request allocates thousands of short-lived objects (GraphQL execution, ORM rows),
    so with Python's default threshold (700) the collector runs every few requests and
    its full passes walk everything the process ever loaded: about 15% of the CPU per event.
    Too high a threshold stalls instead: at 50,000 each young collection paused the process
    for 30-40 ms (every second or so under load), which set the p99 of every endpoint;
    at 5,000 a pause is under 2 ms and the collector's total time is lower too.
    """
    if settings.gc_threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(settings.gc_threshold, *gc.get_threshold()[1:])


def _refused_name(
    name: str, *, option: str = "", clean: Callable[[str], str] = auth.clean_name
) -> bool:
    """Whether `name` cannot name a key, service or workspace (`auth.clean_name`, or
    `clean`), having said why on stderr."""
    try:
        clean(name)
    except ValueError as exc:
        print(f"opsgraph: {option}{exc}", file=sys.stderr)
        return True
    return False


def _print_lines(settings: Settings, work: Callable[[], Awaitable[list[str]]]) -> int:
    """Print the lines `work` returns with the database open, one per line."""
    for line in _with_database(settings, work):
        print(line)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    issued = _with_database(settings, auth.bootstrap, say_up_to_date=True)  # it migrates
    if issued is not None:
        print("Created the default workspace. Its admin API key, shown this once:", file=sys.stderr)
        print(issued.secret)
    return 0


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        scopes = auth.parse_scopes([s.strip() for s in args.scopes.split(",") if s.strip()])
    except ValueError as exc:
        print(f"opsgraph: {exc}", file=sys.stderr)
        return 2
    if not scopes:
        print("opsgraph: --scopes must name at least one scope", file=sys.stderr)
        return 2
    if _refused_name(args.name, option="--name: ", clean=auth.clean_key_name):
        return 2

    async def work() -> str:
        issued = await auth.create_api_key(
            workspace_id=await _workspace(args.workspace), name=args.name, scopes=scopes
        )
        return issued.secret

    print(_with_database(settings, work))
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> bool:
        return await auth.revoke_api_key(
            workspace_id=await _workspace(args.workspace), key_id=args.id
        )

    if not _with_database(settings, work):
        print(f"opsgraph: no live key {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}", file=sys.stderr)
    try:
        _reach_bus(settings)
    except CommandError as exc:  # revoked all the same: the servers find out by themselves
        print(
            f"opsgraph: {exc}; running servers end the key's live connections within "
            "OPSGRAPH_KEY_RECHECK_SECONDS instead",
            file=sys.stderr,
        )
        return 0
    asyncio.run(_announce_revoked(settings, args.id))
    return 0


async def _announce_revoked(settings: Settings, key_id: str) -> None:
    """Tell running servers (over a shared broadcast URL) to end the key's live connections."""
    from opsgraph.bus import Bus

    bus = Bus(settings.broadcast_url, connect_timeout_seconds=settings.connect_timeout_seconds)
    try:
        await bus.key_revoked(key_id=key_id)
    finally:
        await bus.disconnect()


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> list[str]:
        keys = await auth.list_api_keys(workspace_id=await _workspace(args.workspace))
        return [
            f"{k.id}\t{k.prefix}…\t{k.name}\t{','.join(k.scopes)}"
            + ("\trevoked" if k.revoked_at else "")
            for k in keys
        ]

    return _print_lines(settings, work)


def cmd_services_create(settings: Settings, args: argparse.Namespace) -> int:
    if _refused_name(args.name):
        return 2

    async def work() -> str:
        issued = await auth.create_service(
            workspace_id=await _workspace(args.workspace), name=args.name
        )
        print(f"created service {issued.service.id} ({args.name})", file=sys.stderr)
        return issued.routing_key

    try:
        print(_with_database(settings, work))
    except auth.DuplicateName as exc:
        print(f"opsgraph: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_services_rotate(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> str | None:
        issued = await auth.rotate_routing_key(
            workspace_id=await _workspace(args.workspace), name=args.name
        )
        return None if issued is None else issued.routing_key

    routing_key = _with_database(settings, work)
    if routing_key is None:
        print(f"opsgraph: no service named {args.name.strip()!r}", file=sys.stderr)
        return 1
    print(
        f"rotated the routing key of {args.name.strip()!r}; the old one is refused", file=sys.stderr
    )
    print(routing_key)
    return 0


def cmd_services_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> list[str]:
        services = await auth.list_services(workspace_id=await _workspace(args.workspace))
        return [f"{s.id}\t{s.name}\t{s.routing_key_prefix}…" for s in services]

    return _print_lines(settings, work)


def cmd_workspaces_create(settings: Settings, args: argparse.Namespace) -> int:
    if _refused_name(args.name):
        return 2
    try:
        issued = _with_database(settings, lambda: auth.open_workspace(name=args.name))
    except auth.DuplicateName as exc:
        print(f"opsgraph: {exc}", file=sys.stderr)
        return 1
    print(
        f"created workspace {issued.key.workspace_id} ({args.name.strip()}). "
        "Its admin API key, shown this once:",
        file=sys.stderr,
    )
    print(issued.secret)
    return 0


def cmd_workspaces_list(settings: Settings, args: argparse.Namespace) -> int:
    for workspace in _with_database(settings, auth.list_workspaces):
        print(f"{workspace.id}\t{workspace.name}\t{workspace.created_at.isoformat()}")
    return 0


def cmd_print_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema import build_schema

    print(build_schema(Settings()).as_str())
    return 0


WORKSPACE_HELP = "the workspace's id (default: the oldest, the one `migrate` created)"


def _port(text: str) -> int:
    port = int(text)
    problem = port_problem(port)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return port


def _version() -> str:
    try:
        return version("opsgraph")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsgraph", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (migrates first)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; OPSGRAPH_HOST)")
    serve.add_argument(
        "--port", type=_port, help="port to listen on, 1 to 65535 (default 8000; OPSGRAPH_PORT)"
    )
    serve.add_argument("--workers", type=int, help="worker processes (default 1; OPSGRAPH_WORKERS)")
    serve.set_defaults(func=cmd_serve)

    commands.add_parser(
        "migrate",
        help="apply database migrations; on a new database also create the workspace and "
        "print its admin key",
    ).set_defaults(func=cmd_migrate)
    commands.add_parser("print-schema", help="print the GraphQL schema (SDL)").set_defaults(
        func=cmd_print_schema
    )

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; prints it alone on stdout")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scopes", required=True, help="comma-separated: events:write,read,approvals:decide,admin"
    )
    create.add_argument("--workspace", help=WORKSPACE_HELP)
    create.set_defaults(func=cmd_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    revoke.add_argument("--workspace", help=WORKSPACE_HELP)
    revoke.set_defaults(func=cmd_keys_revoke)
    listing = keys.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--workspace", help=WORKSPACE_HELP)
    listing.set_defaults(func=cmd_keys_list)

    services = commands.add_parser("services", help="services").add_subparsers(
        dest="services_command", required=True
    )
    service_create = services.add_parser(
        "create", help="create a service; prints its routing key alone on stdout"
    )
    service_create.add_argument("name")
    service_create.add_argument("--workspace", help=WORKSPACE_HELP)
    service_create.set_defaults(func=cmd_services_create)
    service_rotate = services.add_parser(
        "rotate", help="give a service a new routing key, printed alone on stdout"
    )
    service_rotate.add_argument("name")
    service_rotate.add_argument("--workspace", help=WORKSPACE_HELP)
    service_rotate.set_defaults(func=cmd_services_rotate)
    service_list = services.add_parser(
        "list", help="list services: id, name, routing key prefix (never the key)"
    )
    service_list.add_argument("--workspace", help=WORKSPACE_HELP)
    service_list.set_defaults(func=cmd_services_list)

    workspaces = commands.add_parser("workspaces", help="workspaces (tenants)").add_subparsers(
        dest="workspaces_command", required=True
    )
    workspace_create = workspaces.add_parser(
        "create", help="create a workspace; prints its admin key alone on stdout"
    )
    workspace_create.add_argument("name")
    workspace_create.set_defaults(func=cmd_workspaces_create)
    workspaces.add_parser(
        "list", help="list workspaces: id, name, created (oldest first)"
    ).set_defaults(func=cmd_workspaces_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad OPSGRAPH_* value: say which, no traceback
        print(f"opsgraph: {exc}", file=sys.stderr)
        return 2
    for variable, setting in misspelled():
        print(f"opsgraph: warning: {variable} is not a setting (did you mean {setting}?)",
              file=sys.stderr)  # fmt: skip
    try:
        code: int = args.func(settings, args)
        sys.stdout.flush()  # here, not at exit: a reader gone before the output is met below
    except CommandError as exc:
        print(f"opsgraph: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `opsgraph keys list | head -1`: the reader has what it wanted
        # Python flushes stdout again on exit: point it at nothing, or that fails as well.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
