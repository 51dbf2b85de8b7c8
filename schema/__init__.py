"""The GraphQL schema: root types composed from one mixin per domain, plus extensions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import lru_cache

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
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
from schema.cost import CostLimit
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


RuleSet = tuple[type[ASTValidationRule], ...]


class DocumentLimits(SchemaExtension):
    """Parsing with a token cap and a cache, and the depth and alias rules for validation.

    Strawberry's MaxTokensLimiter and AddValidationRules set these in operation hooks, which
    stay suspended for as long as a subscription lives; these hooks end before execution.
    Its ParserCache parsed in its hook, so a document over the token cap raised out of the
    hook: over WebSocket the operation then ended with a logged traceback and no error for
    the client. Here a document that fails to parse is left to Strawberry's own parse,
    which reports the error as for any other bad document. List it before ValidationCache,
    which reads the rules set here.
    """

    def __init__(
        self,
        *,
        parse: Callable[..., DocumentNode],
        max_tokens: int,
        rules: RuleSet,
        rule_lists: dict[RuleSet, RuleSet],
    ) -> None:
        self.parse = parse
        self.max_tokens = max_tokens
        self.rules = rules
        self._with_rules = rule_lists  # shared by every operation of the schema

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.max_tokens
        if context.graphql_document is None and context.query:
            with suppress(GraphQLError):  # Strawberry's parse reports it
                context.graphql_document = self.parse(context.query, **context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        given = context.validation_rules
        rules = self._with_rules.get(given)
        if rules is None:  # one tuple per set of Strawberry's rules, not one per operation
            rules = self._with_rules[given] = given + self.rules
        context.validation_rules = rules
        yield


class BoundedValidation(ValidationCache):
    """Strawberry's validation cache, refusing first a document of more than `max_fields`
    fields: graphql-core compares a selection's fields pairwise (OverlappingFieldsCanBeMerged),
    so 1,199 repeats of one field, under the token cap, took 1.2 s of CPU to validate."""

    def __init__(self, *, maxsize: int, max_fields: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_fields = max_fields

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        if document is not None and _too_many_fields(document, self.max_fields):
            message = (
                f"The document holds more than {self.max_fields} fields "
                "(OPSGRAPH_GRAPHQL_MAX_FIELDS): send fewer."
            )
            error = GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})
            self.execution_context.pre_execution_errors = [error]
            yield
            return
        yield from super().on_validate()


def _too_many_fields(document: DocumentNode, most: int) -> bool:
    try:
        return _field_count(document) > most
    except RecursionError:  # fragments spread in a chain longer than Python recurses
        return True


def _field_count(document: DocumentNode) -> int:
    """Fields the document's operations select, fragments counted where they are spread
    (a chain of fragments each spreading the next twice doubles at every link): each
    fragment's size is worked out once. Runs before validation, so a fragment spread
    inside itself counts nothing the second time."""
    fragments = {
        definition.name.value: definition.selection_set
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    sizes: dict[str, int] = {}

    def size(selections: SelectionSetNode) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in sizes and name in fragments:
                    sizes[name] = 0  # while it is being counted
                    sizes[name] = size(fragments[name])
                total += sizes.get(name, 0)
                continue
            total += isinstance(selection, FieldNode)
            nested = getattr(selection, "selection_set", None)
            if nested is not None:
                total += size(nested)
        return total

    return sum(
        size(definition.selection_set)
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    )


# graphql-core gives up on a document whose fields it would have to compare pairwise too
# often (its OverlappingFieldsCanBeMerged budget) with "Validation aborted.": say why.
TOO_COMPLEX = (
    "The document is too complex to validate: its selections hold too many fields to "
    "compare with each other (the same field repeated hundreds of times, say). Send fewer."
)


class ExplainedValidation(SchemaExtension):
    """Replace graphql-core's bare "Validation aborted." with what to change. List it after
    ValidationCache, whose hook has validated by the time this one starts (Strawberry
    answers the errors before any hook ends)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        errors = context.pre_execution_errors
        if errors and any(isinstance(error, ValidationAbortedError) for error in errors):
            context.pre_execution_errors = [_explained(error) for error in errors]
        yield


def _explained(error: GraphQLError) -> GraphQLError:
    if isinstance(error, ValidationAbortedError) and error.message == "Validation aborted.":
        return GraphQLError(TOO_COMPLEX, extensions={"code": "QUERY_TOO_COMPLEX"})
    return error


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions only; errors raised as GraphQLError are meant for callers."""
    return unexpected(error)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the limits and caches of these settings."""
    size = settings.graphql_cache_size
    # The limit rules are built once: QueryDepthLimiter and MaxAliasesLimiter build a new
    # rule class per request, which made every request a ValidationCache miss.
    rules: RuleSet = (
        depth_rule(settings.graphql_max_depth, None),
        aliases_rule(settings.graphql_max_aliases),
    )
    cached_parse = lru_cache(maxsize=size)(parse)
    rule_lists: dict[RuleSet, RuleSet] = {}
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: DocumentLimits(
            parse=cached_parse,
            max_tokens=settings.graphql_max_tokens,
            rules=rules,
            rule_lists=rule_lists,
        ),
        lambda: BoundedValidation(maxsize=size, max_fields=settings.graphql_max_fields),
        ExplainedValidation,
        lambda: CostLimit(settings=settings),
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
