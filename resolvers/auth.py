"""Workspaces, API keys and scopes: issuing keys, checking them, bootstrapping."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.ids import new_id
from models.workspace import ApiKey, Service, Workspace
from resolvers.batching import Batcher
from resolvers.errors import AuthError, forbidden, unauthenticated

if TYPE_CHECKING:
    from opsgraph.live import Hub

log = logging.getLogger(__name__)

KEY_PREFIX = "og_"
ROUTING_KEY_PREFIX = "R"
VISIBLE_PREFIX_LENGTH = 10


class Scope(StrEnum):
    EVENTS_WRITE = "events:write"
    READ = "read"
    APPROVALS_DECIDE = "approvals:decide"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its workspace, its name (the actor) and its scopes."""

    key_id: str
    workspace_id: str
    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        """`admin` implies every other scope."""
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> Principal:
        """Return self, or raise FORBIDDEN when the key lacks `scope`."""
        if not self.allows(scope):
            raise forbidden(scope.value)
        return self


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key: the secret is shown exactly once."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class IssuedService:
    """A newly created service with its routing key, shown exactly once."""

    service: Service
    routing_key: str


def hash_secret(secret: str) -> str:
    """The stored form of a key: hex SHA-256 (keys are 256-bit random, so no salt needed)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(values: list[str]) -> frozenset[Scope]:
    """Turn scope names into Scopes, raising ValueError naming any unknown one."""
    valid = {scope.value for scope in Scope}
    unknown = [value for value in values if value not in valid]
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return frozenset(Scope(value) for value in values)


async def authenticate(*, secret: str | None) -> Principal:
    """Resolve a presented key to its principal, or raise UNAUTHENTICATED."""
    if not secret:
        raise unauthenticated()
    digest = hash_secret(secret)
    key = await KEY_LOOKUP.submit(digest)
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise unauthenticated("The API key is unknown or revoked.")
    return Principal(
        key_id=key.id,
        workspace_id=key.workspace_id,
        name=key.name,
        scopes=_scopes(key.scopes),
    )


@functools.lru_cache(maxsize=64)
def _scopes(names: tuple[str, ...]) -> frozenset[Scope]:
    """The scopes a key's names grant (unknown names are ignored), one set per combination:
    every live connection keeps its principal."""
    return frozenset(Scope(value) for value in names if value in Scope._value2member_map_)


@dataclass(frozen=True, slots=True)
class LiveKey:
    """What checking a presented key reads of its row."""

    id: str
    workspace_id: str
    name: str
    key_hash: str
    scopes: tuple[str, ...]


_LIVE_KEYS = "SELECT id, workspace_id, name, key_hash, scopes FROM api_key WHERE revoked_at IS NULL"


async def _live_keys(digests: Sequence[str]) -> list[LiveKey | None]:
    """The live (unrevoked) key for each hash, with one query for the whole batch: a fixed
    statement reading only what a principal needs (every request runs it, so no query
    building and no model per row)."""
    wanted = sorted(set(digests))
    connection = connections.get("default")
    values: list[Any]
    if connection.capabilities.dialect == "postgres":
        query, values = f"{_LIVE_KEYS} AND key_hash = ANY($1::text[])", [wanted]
    else:
        query, values = f"{_LIVE_KEYS} AND key_hash IN ({', '.join('?' * len(wanted))})", wanted
    by_hash: dict[str, LiveKey] = {}
    for row in await connection.execute_query_dict(query, values):
        scopes = row["scopes"]
        names = json.loads(scopes) if isinstance(scopes, str | bytes) else scopes
        by_hash[row["key_hash"]] = LiveKey(
            id=row["id"],
            workspace_id=row["workspace_id"],
            name=row["name"],
            key_hash=row["key_hash"],
            scopes=tuple(names),
        )
    return [by_hash.get(digest) for digest in digests]


# Key checks that arrive together share one query; nothing is cached between batches, so a
# revoked key is refused by the very next request (at most `Settings.batch_max` per query).
KEY_LOOKUP: Batcher[str, LiveKey | None] = Batcher(_live_keys, max_items=256)


NAME_LENGTH = 200  # a key's or a service's name (the columns' size)


def clean_name(value: str) -> str:
    """A key's or a service's name as it is stored: trimmed, 1 to NAME_LENGTH characters,
    no control character (a key's name is the actor recorded on what it does, and a line
    of `keys list`: a newline in it would print as another row); ValueError otherwise."""
    name = value.strip()
    if not name or len(name) > NAME_LENGTH:
        raise ValueError(f"name must be 1 to {NAME_LENGTH} characters.")
    problem = unreadable(name)
    if problem:
        raise ValueError(f"name {problem}.")
    return name


def unreadable(name: str) -> str | None:
    """What makes a name shown to people (an actor, a policy in a reason) not read as it
    is, or None: a control character (a newline starts another line of a listing) or an
    invisible formatting one (a right-to-left override shows "admin" for "nimda")."""
    categories = {unicodedata.category(char) for char in name}
    if "Cc" in categories:
        return "must not contain control characters (a newline, a tab, NUL)"
    if "Cf" in categories:
        return (
            "must not contain invisible formatting characters (a right-to-left override, "
            "a zero-width space)"
        )
    return None


# What a routing key's events are recorded as sent by ("service:" and the service's name).
SERVICE_ACTOR_PREFIX = "service:"


def clean_key_name(value: str) -> str:
    """A key's name as `clean_name` makes it, and not one that poses as a service's routing
    key on the timeline (a key named "service:api" was recorded as the routing key of api)."""
    name = clean_name(value)
    if name.casefold().startswith(SERVICE_ACTOR_PREFIX):
        raise ValueError(
            f"name must not start with {SERVICE_ACTOR_PREFIX!r}, which names a service's "
            "routing key on the timeline."
        )
    return name


async def create_workspace(*, name: str) -> Workspace:
    """Create an empty workspace."""
    return await Workspace.create(id=new_id("ws"), name=name)


async def create_api_key(*, workspace_id: str, name: str, scopes: frozenset[Scope]) -> IssuedKey:
    """Issue a new key for the workspace; only its hash is stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = await ApiKey.create(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=clean_key_name(name),
        prefix=secret[:VISIBLE_PREFIX_LENGTH],
        key_hash=hash_secret(secret),
        scopes=sorted(scope.value for scope in scopes),
    )
    return IssuedKey(key=key, secret=secret)


async def revoke_api_key(*, workspace_id: str, key_id: str) -> bool:
    """Revoke a key of the workspace at once; False when there is no such live key."""
    updated = await ApiKey.filter(id=key_id, workspace_id=workspace_id, revoked_at=None).update(
        revoked_at=datetime.now(UTC)
    )
    return updated > 0


async def revoked_keys(key_ids: Sequence[str]) -> list[str]:
    """Those of `key_ids` that are revoked, or gone."""
    wanted = sorted(set(key_ids))
    live = ApiKey.filter(id__in=wanted, revoked_at=None)
    found = {str(key_id) for key_id in await live.values_list("id", flat=True)}
    return [key_id for key_id in wanted if key_id not in found]


async def recheck_live_keys_forever(hub: Hub, *, interval_seconds: float) -> None:
    """End the live subscriptions of keys revoked where no note of it reached this process
    (`opsgraph keys revoke` with a `memory://` bus, a note lost with the bus): every
    `interval_seconds`, one query for the keys the open subscriptions were opened with.
    Until cancelled (the app's lifespan)."""
    while True:
        await asyncio.sleep(interval_seconds)
        key_ids = hub.live_key_ids()
        if not key_ids:
            continue
        try:
            revoked = await revoked_keys(list(key_ids))
        except Exception as exc:  # a database hiccup must not end the loop (nor fill the log)
            log.warning("checking the keys of live subscriptions failed: %s", type(exc).__name__)
            continue
        for key_id in revoked:
            hub.revoke(key_id)


async def list_api_keys(*, workspace_id: str) -> list[ApiKey]:
    """Every key of the workspace, newest first (hashes stay inside)."""
    return await ApiKey.filter(workspace_id=workspace_id).order_by("-created_at")


class DuplicateName(Exception):
    """A service of that name already exists in the workspace, or a workspace of that
    name."""


def _new_routing_key() -> str:
    return ROUTING_KEY_PREFIX + secrets.token_hex(16)[1:]  # 32 characters, as PagerDuty's


async def rotate_routing_key(
    *, workspace_id: str, service_id: str | None = None, name: str | None = None
) -> IssuedService | None:
    """Give the workspace's service of that id (or name) a new routing key, the old one
    refused from now on (a leaked key was valid for good); None when there is none."""
    routing_key = _new_routing_key()
    found = Service.filter(workspace_id=workspace_id)
    if service_id is not None:
        found = found.filter(id=service_id)
    if name is not None:
        found = found.filter(name=name.strip())
    service = await found.first()
    if service is None:
        return None
    service.routing_key_hash = hash_secret(routing_key)
    service.routing_key_prefix = routing_key[:VISIBLE_PREFIX_LENGTH]
    await service.save(update_fields=["routing_key_hash", "routing_key_prefix"])
    return IssuedService(service=service, routing_key=routing_key)


async def create_service(*, workspace_id: str, name: str) -> IssuedService:
    """Create a service and its routing key (32 characters, as PagerDuty's)."""
    routing_key = _new_routing_key()
    try:
        async with in_transaction():
            service = await Service.create(
                id=new_id("svc"),
                workspace_id=workspace_id,
                name=clean_name(name),
                routing_key_hash=hash_secret(routing_key),
                routing_key_prefix=routing_key[:VISIBLE_PREFIX_LENGTH],
            )
    except IntegrityError:
        raise DuplicateName(f"A service named {name.strip()!r} already exists.") from None
    return IssuedService(service=service, routing_key=routing_key)


async def get_workspace(*, workspace_id: str) -> Workspace:
    """The workspace itself."""
    return await Workspace.get(id=workspace_id)


async def find_workspace(*, workspace_id: str) -> Workspace | None:
    """The workspace, if there is one with that id."""
    return await Workspace.get_or_none(id=workspace_id)


async def list_services(*, workspace_id: str) -> list[Service]:
    """The workspace's services by name."""
    return await Service.filter(workspace_id=workspace_id).order_by("name")


async def _services(digests: Sequence[str]) -> list[Service | None]:
    """The service of each routing key hash, with one query for the whole batch."""
    rows = await Service.filter(routing_key_hash__in=sorted(set(digests)))
    by_hash = {row.routing_key_hash: row for row in rows}
    return [by_hash.get(digest) for digest in digests]


# Routing key look-ups that arrive together share one query; like key checks, nothing is
# cached between batches, so a service that is gone is not found by the very next event.
ROUTING_KEY_LOOKUP: Batcher[str, Service | None] = Batcher(_services, max_items=256)


async def service_for_routing_key(*, routing_key: str) -> Service | None:
    """The service a routing key belongs to, if any."""
    return await ROUTING_KEY_LOOKUP.submit(hash_secret(routing_key))


async def bootstrap(*, workspace_name: str = "default") -> IssuedKey | None:
    """On an empty database create a workspace and an admin key; otherwise do nothing
    (also when another process, starting at the same time, created it first)."""
    async with in_transaction() as connection:
        await _lock_workspace_names(connection)
        if await Workspace.exists():
            return None
        return await open_workspace(name=workspace_name)


# The PostgreSQL advisory lock that creating a workspace holds while it checks its name.
NAME_LOCK = 0x6F70_7367_7261_7068  # "opsgraph"


async def _lock_workspace_names(connection: BaseDBAsyncClient) -> None:
    """Hold NAME_LOCK until the transaction ends: two creations that would each find a
    name free (or the database empty) follow each other. SQLite runs one transaction at
    a time already. Taken again in a nested transaction, it is simply held."""
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [NAME_LOCK])


async def open_workspace(*, name: str) -> IssuedKey:
    """A new workspace (a tenant: nothing of another is ever seen from it) with a key
    named admin holding every scope, in one transaction. DuplicateName if a workspace of
    that name exists (each is named by its id in commands; a second of one name would
    only be a mistake, most often the same command run twice)."""
    name = clean_name(name)
    async with in_transaction() as connection:
        await _lock_workspace_names(connection)
        same = await Workspace.filter(name=name).first()
        if same is not None:
            raise DuplicateName(f"A workspace named {name!r} already exists ({same.id}).")
        workspace = await create_workspace(name=name)
        return await create_api_key(
            workspace_id=workspace.id, name="admin", scopes=frozenset(Scope)
        )


async def list_workspaces() -> list[Workspace]:
    """Every workspace, oldest first (the first is the one commands act on by default)."""
    return await Workspace.all().order_by("created_at", "id")


async def default_workspace_id() -> str:
    """The oldest workspace, which the CLI acts on."""
    workspace = await Workspace.all().order_by("created_at", "id").first()  # as listed
    if workspace is None:
        raise AuthError("NOT_FOUND", "No workspace yet: run `opsgraph migrate` or `serve` first.")
    return workspace.id
