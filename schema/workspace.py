"""The caller (`viewer`), services and API keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import strawberry

from models.workspace import ApiKey as ApiKeyRow
from models.workspace import Service as ServiceRow
from resolvers import auth
from resolvers.audit import audit
from resolvers.auth import Scope as ScopeModel
from schema.context import Info, public_error

Scope = strawberry.enum(ScopeModel, name="Scope")


@strawberry.type
class Workspace:
    id: strawberry.ID
    name: str


@strawberry.type(description="Limits of this server a client keeps to (its settings).")
class Limits:
    page_size_max: int = strawberry.field(
        description="The largest `first` a list takes (`OPSGRAPH_PAGE_SIZE_MAX`)."
    )
    page_size_default: int = strawberry.field(
        description="The page a list gives without `first` (`OPSGRAPH_PAGE_SIZE_DEFAULT`)."
    )


@strawberry.type(description="The API key making the request.")
class Viewer:
    key_id: strawberry.ID
    name: str
    scopes: list[Scope]  # type: ignore[valid-type]
    workspace: Workspace
    limits: Limits = strawberry.field(description="What this server takes of a request.")


@strawberry.type(
    description="A service; its routing key is shown once, when it is created or rotated."
)
class Service:
    id: strawberry.ID
    name: str
    routing_key_prefix: str
    routing_key: str | None = None

    @classmethod
    def from_row(cls, row: ServiceRow, routing_key: str | None = None) -> Service:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            routing_key_prefix=row.routing_key_prefix,
            routing_key=routing_key,
        )


@strawberry.type(description="An API key as listed: never the secret itself.")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str
    scopes: list[Scope]  # type: ignore[valid-type]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            prefix=row.prefix,
            scopes=[ScopeModel(value) for value in row.scopes],
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


@strawberry.type(description="A new API key; `key` is shown this once and never again.")
class CreatedApiKey:
    api_key: ApiKey
    key: str


def _name(value: str, clean: Callable[[str], str] = auth.clean_name) -> str:
    try:
        return clean(value)
    except ValueError as exc:
        raise public_error("BAD_USER_INPUT", str(exc)) from None


@strawberry.type
class WorkspaceQuery:
    @strawberry.field(description="The calling key's workspace, name and scopes.")
    async def viewer(self, info: Info) -> Viewer:
        principal = await info.context.require(ScopeModel.READ)
        workspace = await auth.get_workspace(workspace_id=principal.workspace_id)
        return Viewer(
            key_id=strawberry.ID(principal.key_id),
            name=principal.name,
            scopes=sorted(principal.scopes),
            workspace=Workspace(id=strawberry.ID(workspace.id), name=workspace.name),
            limits=Limits(
                page_size_max=info.context.settings.page_size_max,
                page_size_default=info.context.settings.page_size_default,
            ),
        )

    @strawberry.field
    async def services(self, info: Info) -> list[Service]:
        principal = await info.context.require(ScopeModel.READ)
        rows = await auth.list_services(workspace_id=principal.workspace_id)
        return [Service.from_row(row) for row in rows]

    @strawberry.field(description="The workspace's API keys (admin only).")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        principal = await info.context.require(ScopeModel.ADMIN)
        rows = await auth.list_api_keys(workspace_id=principal.workspace_id)
        return [ApiKey.from_row(row) for row in rows]


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(description="Create a service; its routing key is returned once.")
    async def create_service(self, info: Info, name: str) -> Service:
        principal = await info.context.require(ScopeModel.ADMIN)
        try:
            issued = await auth.create_service(
                workspace_id=principal.workspace_id, name=_name(name)
            )
        except auth.DuplicateName as exc:
            raise public_error("CONFLICT", str(exc)) from None
        audit(principal, f"created service {issued.service.name!r} ({issued.service.id})")
        return Service.from_row(issued.service, routing_key=issued.routing_key)

    @strawberry.mutation(
        description="Give a service a new routing key, returned once; the old one is refused "
        "from then on. Null when the workspace has no such service."
    )
    async def rotate_routing_key(self, info: Info, id: strawberry.ID) -> Service | None:
        principal = await info.context.require(ScopeModel.ADMIN)
        issued = await auth.rotate_routing_key(
            workspace_id=principal.workspace_id, service_id=str(id)
        )
        if issued is None:
            return None
        audit(principal, f"rotated the routing key of service {issued.service.name!r}")
        return Service.from_row(issued.service, routing_key=issued.routing_key)

    @strawberry.mutation(description="Create an API key; the key is returned once.")
    async def create_api_key(
        self,
        info: Info,
        name: str,
        scopes: list[Scope],  # type: ignore[valid-type]
    ) -> CreatedApiKey:
        principal = await info.context.require(ScopeModel.ADMIN)
        if not scopes:
            raise public_error("BAD_USER_INPUT", "scopes must name at least one scope.")
        issued = await auth.create_api_key(
            workspace_id=principal.workspace_id,
            name=_name(name, clean=auth.clean_key_name),
            scopes=frozenset(scopes),
        )
        scoped = ", ".join(issued.key.scopes)
        audit(principal, f"created key {issued.key.name!r} ({issued.key.id}) with {scoped}")
        return CreatedApiKey(api_key=ApiKey.from_row(issued.key), key=issued.secret)

    @strawberry.mutation(description="Revoke a key at once; false if there is no such live key.")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> bool:
        principal = await info.context.require(ScopeModel.ADMIN)
        revoked = await auth.revoke_api_key(workspace_id=principal.workspace_id, key_id=str(id))
        if revoked:
            audit(principal, f"revoked key {str(id)!r}")
        if revoked and info.context.revocations is not None:
            await info.context.revocations.key_revoked(key_id=str(id))
        return revoked
