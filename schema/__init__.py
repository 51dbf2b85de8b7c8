"""The GraphQL schema: root types composed from one mixin per domain, plus extensions."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from opsgraph.settings import Settings
from schema.change import ChangeMutation
from schema.scalars import SCALAR_MAP
from schema.timeline import TimelineQuery
from schema.workspace import WorkspaceMutation, WorkspaceQuery


@strawberry.type
class Query(TimelineQuery, WorkspaceQuery):
    pass


@strawberry.type
class Mutation(ChangeMutation, WorkspaceMutation):
    pass


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions only; errors raised as GraphQLError are meant for callers."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the limits and caches of these settings."""
    size = settings.graphql_cache_size
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: ParserCache(maxsize=size),
        lambda: ValidationCache(maxsize=size),
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
    ]
    if settings.mask_errors:
        extensions.append(lambda: MaskErrors(should_mask_error=_should_mask))
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
