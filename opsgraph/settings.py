"""Settings, read once from the environment and passed down.

Every limit is a named setting with a default that runs on a laptop. Nothing else in
the code base reads the environment.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

ENV_PREFIX = "OPSGRAPH_"


# Sizes and counts for which 0 means nothing can pass (where 0 switches something off,
# such as the rate limit, it is allowed).
AT_LEAST_ONE = frozenset({
    "max_body_bytes", "max_metadata_bytes", "max_json_depth", "max_name_length",
    "graphql_max_depth", "graphql_max_tokens", "page_size_default", "page_size_max",
    "filter_max_values", "filter_max_text_length", "max_policies", "graphql_max_cost",
    "policy_glob_max_length",
    "graphql_max_fields", "graphql_max_nesting",
    "max_subscriptions_per_connection", "subscriber_queue_size", "batch_max",
    "max_changes_per_call", "max_agent_events_per_call", "max_incident_events_per_call",
    "max_summary_length", "max_dedup_key_length", "workers", "agent_batches_at_once",
    "approval_waits_per_key",
    # A bucket that holds nothing refuses everything once its limit is on; an approval
    # that expires at once can never be approved.
    "rate_limit_burst", "rate_limit_max_keys", "ws_message_burst", "approval_expiry_seconds",
})  # fmt: skip
CONNECT_TIMEOUT_SECONDS = 10.0  # `Settings.connect_timeout_seconds`' default
# Entries the live hub reads at once and hands to each subscriber together (`opsgraph.live`):
# a subscriber's queue must hold that many, or a burst would end a subscriber keeping up.
LIVE_FETCH_ENTRIES = 500

# Waits between the turns of a loop, or before giving up: 0 would spin or never wait.
ABOVE_ZERO = frozenset({
    "bus_heartbeat_seconds", "approval_wait_poll_seconds", "approval_sweep_seconds",
    "connection_init_timeout_seconds", "health_timeout_seconds", "connect_timeout_seconds",
})  # fmt: skip
# Every other number is at least 0: none of them means anything below.
# Spans of time have a ceiling too: far past it, a date computed from one is out of range
# (`OPSGRAPH_TIMESTAMP_MAX_AGE_DAYS=1000000` made every event a 500).
MOST_DAYS = 36_500  # a hundred years
MOST_SECONDS = 10 * 365 * 86_400  # ten years
# What each URL may point at (the schemes the database layer and the bus can open).
URL_SCHEMES = {
    "database_url": ("sqlite", "postgres", "postgresql"),
    "broadcast_url": ("memory", "redis", "rediss", "postgres", "postgresql"),
}
# URLs that may also be left empty (the feature then off, or taken from another setting).
OPTIONAL_URL_SCHEMES = {
    "rate_limit_redis_url": ("redis", "rediss", "memory"),
    "public_url": ("http", "https"),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """All runtime settings; each field maps to `OPSGRAPH_<FIELD>` in upper case."""

    database_url: str = f"sqlite://{Path.cwd() / 'opsgraph.sqlite3'}"
    broadcast_url: str = "memory://"
    # How long opening a connection may take before it counts as unreachable: to PostgreSQL
    # as the database (asyncpg's own default is 60 s), and to the bus (the hub's
    # reconnections, the CLI's check).
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    # Where people reach the server (approval links, openapi's server); empty: the address
    # `opsgraph serve` listens on (`base_url`).
    public_url: str = ""
    # Request and payload limits.
    max_body_bytes: int = 512 * 1024
    # A GraphQL body past this needs a valid key before it is parsed (with none, only
    # `__typename` and introspection answer).
    graphql_keyless_max_body_bytes: int = 16 * 1024
    max_metadata_bytes: int = 64 * 1024
    # How deeply arrays and objects may nest in a JSON body (REST and GraphQL).
    max_json_depth: int = 64
    max_labels: int = 50
    max_label_length: int = 100
    max_name_length: int = 1024
    # The accepted range of an event's own timestamp, around now.
    timestamp_max_age_days: int = 3650
    timestamp_max_ahead_seconds: int = 86400
    # GraphQL limits.
    graphql_max_depth: int = 12
    graphql_max_tokens: int = 5000
    graphql_max_aliases: int = 30
    # Fields one document may select (validation compares them pairwise).
    graphql_max_fields: int = 300
    # How deeply a document's selection sets may nest, counted through its fragments (the
    # depth rule and validation follow them in Python calls, one inside the other).
    graphql_max_nesting: int = 64
    # Objects one operation could return, counted before it runs (`schema.cost`).
    graphql_max_cost: int = 20_000
    graphql_cache_size: int = 256
    graphql_introspection: bool = True
    page_size_default: int = 50
    page_size_max: int = 200
    # Values one list of a query's filter may hold (services, labels, ...), and the length
    # of its text.
    filter_max_values: int = 50
    filter_max_text_length: int = 200
    # WebSocket subscriptions.
    max_subscriptions_per_connection: int = 20
    connection_init_timeout_seconds: float = 5.0
    # Messages a client may send on one WebSocket (token bucket); 0 disables the limit.
    ws_messages_per_second: float = 10.0
    ws_message_burst: int = 50
    # Entries queued for one live subscriber before it is ended as too slow.
    subscriber_queue_size: int = 1000
    # How often each process pings the bus; silence for 3 intervals counts as a lost bus.
    bus_heartbeat_seconds: float = 5.0
    # How often each process checks that the keys its live subscriptions were opened with
    # are still live (a revocation whose bus note never came: the CLI on `memory://`); 0: never.
    key_recheck_seconds: float = 10.0
    # Agents and approvals.
    approval_expiry_seconds: int = 15 * 60
    approval_wait_max_seconds: int = 60
    # `?wait=` long polls one key may hold open at once in one process (429 past it).
    approval_waits_per_key: int = 100
    # A `?wait=` long poll is woken by the bus; it re-reads the approval this often anyway.
    approval_wait_poll_seconds: float = 5.0
    # How often each process expires pending approvals past their expiry.
    approval_sweep_seconds: float = 5.0
    health_timeout_seconds: float = 2.0  # how long /healthz waits for the database
    # Policies one workspace may hold: every tool call is evaluated against them.
    max_policies: int = 500
    # Characters in an `inputMatches` GLOB pattern: each is compiled to a regular expression
    # on the server's loop, about 4 ms per 1,000 characters (60 KB of `*a` took 0.5 s).
    policy_glob_max_length: int = 1000
    # Workspaces whose compiled policies each process keeps (checked against policy_version).
    policy_cache_workspaces: int = 1024
    # Incidents.
    suspect_window_seconds: int = 2 * 60 * 60
    max_summary_length: int = 1024
    max_dedup_key_length: int = 255
    # Rate limit per API key (token bucket); 0 disables it.
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 200
    # Buckets kept per process (least recently used go first); Redis keeps its own.
    rate_limit_max_keys: int = 10_000
    # Redis for buckets shared by every process; empty: the broadcast URL if it is
    # redis://, else buckets per process. `memory://` forces buckets per process.
    rate_limit_redis_url: str = ""
    # Mask unexpected errors in GraphQL responses (production mode).
    mask_errors: bool = True
    # Concurrent requests grouped into one query or transaction (group commit), at most.
    batch_max: int = 256
    # Changes one `recordChanges` call may carry (REST batches of `POST /events` too).
    max_changes_per_call: int = 256
    max_agent_events_per_call: int = 256  # events one `recordAgentEvents` call may carry
    max_incident_events_per_call: int = 256  # events one `sendIncidentEvents` call may carry
    # REST batches of agent events (`POST /v1/events`) run at once per process: while one
    # waits for its store the next one is read and decided (a run's events stay in order).
    agent_batches_at_once: int = 2
    # Server.
    host: str = "127.0.0.1"
    port: int = 8000
    # Worker processes for `opsgraph serve`; above 1 needs a shared broadcast URL.
    workers: int = 1
    # One log line per HTTP request (uvicorn's access log).
    access_log: bool = True
    # A request must arrive in full (headers and body) within this many seconds of the
    # connection opening or of its first byte, else 408 and the connection closed: a client
    # that stalls mid-request would otherwise hold its connection open for ever. 0: no limit.
    request_read_timeout_seconds: float = 30.0
    # graphql-transport-ws served outside ASGI (`opsgraph.wsserver`); false sends every
    # WebSocket through uvicorn's own protocol and the app.
    ws_direct: bool = True
    # WebSocket keepalive: a ping this often (0: none), the connection closed with 1011 if
    # its pong is this late (0: never).
    ws_ping_interval_seconds: float = 20.0
    ws_ping_timeout_seconds: float = 20.0
    # Allocations between young garbage collections (Python's default is 700; each pause
    # grows with it: see `opsgraph.cli.tune_gc`); 0 keeps the default.
    gc_threshold: int = 5_000
    frontend_dir: str = str(Path(__file__).resolve().parent.parent / "frontend" / "dist")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `OPSGRAPH_*` variables, falling back to the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            default = field.default
            try:
                if isinstance(default, bool):
                    values[field.name] = _parse_bool(raw)
                elif isinstance(default, int):
                    values[field.name] = _number(raw, int, "a whole number")
                elif isinstance(default, float):
                    values[field.name] = _number(raw, float, "a number")
                else:
                    values[field.name] = raw
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}: {exc}") from None
            problem = _out_of_range(field.name, values[field.name])
            if problem:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}: {problem}")
        settings = cls(**values)  # type: ignore[arg-type]
        for name, schemes in URL_SCHEMES.items():
            scheme = urlsplit(getattr(settings, name)).scheme
            if scheme not in schemes:
                allowed = ", ".join(f"{known}://" for known in schemes)
                got = f"{scheme}://" if scheme else "no scheme"
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()}: must start with {allowed}; got {got}"
                )
        for name, schemes in OPTIONAL_URL_SCHEMES.items():
            value = getattr(settings, name)
            if value and urlsplit(value).scheme not in schemes:
                allowed = ", ".join(f"{known}://" for known in schemes)
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()}: must be empty or start with {allowed}"
                )
        problem = port_problem(settings.port)
        if problem:
            raise ValueError(f"{ENV_PREFIX}PORT: {problem}")
        if settings.page_size_default > settings.page_size_max:
            if "page_size_default" in values:
                raise ValueError(
                    f"{ENV_PREFIX}PAGE_SIZE_DEFAULT: must not be above "
                    f"{ENV_PREFIX}PAGE_SIZE_MAX ({settings.page_size_max})"
                )  # a lower maximum alone lowers the default with it
            settings = replace(settings, page_size_default=settings.page_size_max)
        return settings

    @property
    def base_url(self) -> str:
        """Where people reach the server: `public_url`, else the address it listens on (on
        all interfaces: this machine's loopback), so that a server on another port hands
        out links to that port (they said 8000 whatever `--port` was)."""
        return self.public_url.rstrip("/") if self.public_url else self.listen_url

    @property
    def listen_url(self) -> str:
        """The URL of the address `opsgraph serve` listens on, as this machine reaches it
        (all interfaces: the loopback of their kind; IPv6 in brackets, its zone escaped)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = "[" + host.replace("%", "%25") + "]"
        return f"http://{host}:{self.port}"

    def approval_url(self, approval_id: str) -> str:
        """The link a human follows to decide one approval."""
        return f"{self.base_url}/approvals?focus={approval_id}"


def misspelled(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(variable, setting) for each `OPSGRAPH_*` variable that names no setting but is spelt
    almost like one (`OPSGRAPH_DATABSE_URL`): the setting falls back to its default, which
    goes unnoticed until the data is found in the wrong place. Variables like no setting
    (a script's own `OPSGRAPH_KEY`) are left alone."""
    env = os.environ if environ is None else environ
    known = [field.name.upper() for field in fields(Settings)]
    found = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable[len(ENV_PREFIX) :] in known:
            continue
        close = difflib.get_close_matches(variable[len(ENV_PREFIX) :], known, n=1, cutoff=0.75)
        if close:
            found.append((variable, ENV_PREFIX + close[0]))
    return found


def port_problem(port: int) -> str | None:
    """What is wrong with a TCP port to listen on (the setting and `serve --port`)."""
    return None if 1 <= port <= 65535 else "must be 1 to 65535"


def _out_of_range(name: str, value: object) -> str | None:
    """What is wrong with a number nothing could work with, if anything."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return "must be a finite number"
    if name in AT_LEAST_ONE and value < 1:
        return "must be at least 1"
    if name == "subscriber_queue_size" and value < LIVE_FETCH_ENTRIES:
        return (
            f"must be at least {LIVE_FETCH_ENTRIES}, the entries the live hub hands a"
            " subscriber at once"
        )
    if name in ABOVE_ZERO and value <= 0:
        return "must be above 0"
    if value < 0:
        return "must be at least 0"
    if name.endswith("_days") and value > MOST_DAYS:
        return f"must be at most {MOST_DAYS} (a hundred years)"
    if name.endswith("_seconds") and value > MOST_SECONDS:
        return f"must be at most {MOST_SECONDS} (ten years)"
    return None


Number = TypeVar("Number", int, float)


def _number(raw: str, kind: type[Number], what: str) -> Number:
    """`raw` as an int or a float, or a ValueError saying what was expected (Python's own
    "invalid literal for int() with base 10" read as a fault of the program)."""
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"must be {what}, not {raw!r}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")
