"""The GraphQL schema: root types composed from one mixin per domain, plus extensions."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig

from opsgraph.settings import Settings
from schema.agent import RunQuery
from schema.agent_events import AgentMutation
from schema.approval import ApprovalMutation, ApprovalQuery
from schema.change import ChangeMutation
from schema.errors import OpsgraphSchema, RefusedValues, unexpected
from schema.execution import ExecutionContext
from schema.incident import IncidentQuery
from schema.incident_events import IncidentMutation
from schema.policy import PolicyMutation, PolicyQuery
from schema.scalars import SCALAR_MAP
from schema.subscription import Subscription
from schema.timeline import TimelineQuery
from schema.workspace import WorkspaceMutation, WorkspaceQuery


@strawberry.type
class Query(TimelineQuery, IncidentQuery, RunQuery, ApprovalQuery, PolicyQuery, WorkspaceQuery):
    pass


@strawberry.type
class Mutation(
    ChangeMutation,
    IncidentMutation,
    AgentMutation,
    ApprovalMutation,
    PolicyMutation,
    WorkspaceMutation,
):
    pass


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions only; errors raised as GraphQLError are meant for callers."""
    return unexpected(error)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the limits and caches of these settings."""
    size = settings.graphql_cache_size
    # The limit rules are built once: QueryDepthLimiter and MaxAliasesLimiter build a new
    # rule class per request, which made every request a ValidationCache miss.
    rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.graphql_max_depth, None),
        aliases_rule(settings.graphql_max_aliases),
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: ParserCache(maxsize=size),
        lambda: ValidationCache(maxsize=size),
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        RefusedValues,
    ]
    if settings.mask_errors:
        extensions.append(lambda: MaskErrors(should_mask_error=_should_mask))
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return OpsgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=ExecutionContext,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
