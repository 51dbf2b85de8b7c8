"""The GraphQL schema: root types composed from one mixin per domain, plus extensions."""

from __future__ import annotations

import sys
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
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
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
from strawberry.types import ExecutionContext as StrawberryExecutionContext

from opsgraph.settings import Settings
from schema.agent import RunQuery
from schema.agent_events import AgentMutation
from schema.approval import ApprovalMutation, ApprovalQuery
from schema.change import ChangeMutation
from schema.cost import CostLimit
from schema.errors import (
    PARSE_FAILED,
    VALIDATION_FAILED,
    OpsgraphSchema,
    RefusedValues,
    coded,
    unexpected,
)
from schema.execution import ExecutionContext
from schema.incident import IncidentQuery
from schema.incident_events import IncidentMutation
from schema.policy import PolicyMutation, PolicyQuery
from schema.scalars import SCALAR_MAP
from schema.scopes import ReadScopedAnswers
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
        for error in context.pre_execution_errors or ():  # the document did not parse
            coded(error, PARSE_FAILED)

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
    so 1,199 repeats of one field, under the token cap, took 1.2 s of CPU to validate. A
    document whose selections nest more than `max_nesting` deep, counted through its
    fragments, is refused too: the depth rule follows them one Python call inside the
    other, and a chain of 300 fragments, or a few fragments each nesting 150 inline
    fragments and spreading the next, ended it in a RecursionError whose message reached
    the caller (the parser bounds the nesting of each fragment alone, not of the chain).
    So are a fragment spread within itself and an unknown one (see `_field_count`)."""

    def __init__(self, *, maxsize: int, max_fields: int, max_nesting: int) -> None:
        super().__init__(maxsize=maxsize)
        self.max_fields = max_fields
        self.max_nesting = max_nesting

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        problem = None if document is None else self._problem(document)
        if problem is None and document is not None and _unnamed_choice(self.execution_context):
            problem = coded(GraphQLError(MULTIPLE_OPERATIONS), VALIDATION_FAILED)
        if problem is not None:
            self.execution_context.pre_execution_errors = [problem]
            yield
            return
        yield from super().on_validate()

    def _problem(self, document: DocumentNode) -> GraphQLError | None:
        try:
            fields = _field_count(document, max_nesting=self.max_nesting)
        except _Refused as refused:
            return refused.error
        except RecursionError:  # a limit set in the hundreds
            return _too_complex("The document's selections nest too deeply to follow.")
        if fields > self.max_fields:
            return _too_complex(
                f"The document holds more than {self.max_fields} fields "
                "(OPSGRAPH_GRAPHQL_MAX_FIELDS): send fewer."
            )
        return None


MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."


def _unnamed_choice(context: StrawberryExecutionContext) -> bool:
    """Whether the document holds several operations and the request names none of them.
    graphql-core refuses that, but Strawberry names the first operation for it when the
    request gives no name, so the first one would run. (`_provided_operation_name` is the
    name as the request gave it; Strawberry keeps it there, behind `operation_name`. Should
    a later Strawberry keep it elsewhere, the check is skipped rather than refusing every
    document of several operations.)"""
    document = context.graphql_document
    assert document is not None
    provided = getattr(context, "_provided_operation_name", _UNKNOWN)
    if provided is not None:
        return False
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1


_UNKNOWN = object()


def _coded_rule(rule: type[ASTValidationRule], code: str) -> type[ASTValidationRule]:
    """`rule`, with `code` on the errors it reports (Strawberry's depth and alias rules
    report from their constructor, through the context's `on_error`)."""

    class Coded(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            on_error = context.on_error
            context.on_error = lambda error: on_error(coded(error, code))  # type: ignore[method-assign]
            try:
                super().__init__(context)
            finally:
                context.on_error = on_error  # type: ignore[method-assign]

    Coded.__name__ = Coded.__qualname__ = rule.__name__
    return Coded


def _too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})


class _Refused(Exception):
    """What `_field_count` found wrong with the document, as its error."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(error.message)
        self.error = error


def _field_count(document: DocumentNode, *, max_nesting: int) -> int:
    """Fields the document's operations select, fragments counted where they are spread
    (a chain of fragments each spreading the next twice doubles at every link): each
    fragment's size, and how deeply its selections nest, is worked out once. Runs before
    validation (whose rules, and Strawberry's depth and alias rules before them, follow
    every spread afresh, one Python call inside the other), so it refuses, as `_Refused`:
    selection sets (an operation's, a field's, an inline fragment's, a spread fragment's)
    nested more than `max_nesting` deep, the walk itself going no deeper; a fragment
    spread within itself (through a cycle the rules followed every path, doubling with
    every link that spreads the next twice); a fragment the document does not define."""
    fragments = {
        definition.name.value: definition.selection_set
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    # fragment: (its fields, how deeply it nests); None while it is being counted
    known: dict[str, tuple[int, int] | None] = {}

    def too_deep() -> _Refused:
        return _Refused(
            _too_complex(
                f"The document's selections nest more than {max_nesting} deep, counted "
                "through its fragments (OPSGRAPH_GRAPHQL_MAX_NESTING): nest fewer."
            )
        )

    def walk(selections: SelectionSetNode, level: int) -> tuple[int, int]:
        """(fields, selection sets nested from this one down, itself included)."""
        if level > max_nesting:
            raise too_deep()
        total = deepest = 0
        for selection in selections.selections:
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in fragments:
                    raise _Refused(GraphQLError(f"Unknown fragment '{name}'.", selection))
                if name not in known:
                    known[name] = None  # while it is being counted
                    known[name] = walk(fragments[name], level + 1)
                found = known[name]
                if found is None:
                    message = f"Cannot spread fragment '{name}' within itself."
                    raise _Refused(GraphQLError(message, selection))
                if level + found[1] > max_nesting:
                    raise too_deep()
                total += found[0]
                deepest = max(deepest, found[1])
                continue
            total += isinstance(selection, FieldNode)
            nested = getattr(selection, "selection_set", None)
            if nested is not None:
                fields, depth = walk(nested, level + 1)
                total += fields
                deepest = max(deepest, depth)
        return total, deepest + 1

    return sum(
        walk(definition.selection_set, 1)[0]
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
    """Replace graphql-core's bare "Validation aborted." with what to change, and Python's
    refusal of an Int literal of too many digits with one line saying so; an error without
    a code gets GRAPHQL_VALIDATION_FAILED. List it after ValidationCache, whose hook has
    validated by the time this one starts (Strawberry answers the errors before any hook
    ends)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        errors = context.pre_execution_errors
        if errors:
            context.pre_execution_errors = [
                coded(_explained(error), VALIDATION_FAILED) for error in errors
            ]
        yield


def _explained(error: GraphQLError) -> GraphQLError:
    if isinstance(error, ValidationAbortedError) and error.message == "Validation aborted.":
        return GraphQLError(TOO_COMPLEX, extensions={"code": "QUERY_TOO_COMPLEX"})
    if isinstance(error.original_error, ValueError) and _too_many_digits(error):
        # Python's refusal to convert it, naming `sys.set_int_max_str_digits`, with the
        # literal's digits echoed after it.
        digits = sys.get_int_max_str_digits()
        return GraphQLError(f"A number in the document has more than {digits} digits.", error.nodes)
    return error


def _too_many_digits(error: GraphQLError) -> bool:
    most = sys.get_int_max_str_digits()
    return most > 0 and any(
        isinstance(node, IntValueNode) and len(node.value.lstrip("-")) > most
        for node in error.nodes or ()
    )


class CodedMaskErrors(MaskErrors):
    """Strawberry's masking of unexpected errors, the masked error coded `INTERNAL` (the
    REST endpoints' code for a 500)."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return coded(super().anonymise_error(error), "INTERNAL")


def _should_mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions only; errors raised as GraphQLError are meant for callers."""
    return unexpected(error)


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the limits and caches of these settings."""
    size = settings.graphql_cache_size
    # The limit rules are built once: QueryDepthLimiter and MaxAliasesLimiter build a new
    # rule class per request, which made every request a ValidationCache miss.
    rules: RuleSet = (
        _coded_rule(depth_rule(settings.graphql_max_depth, None), "QUERY_TOO_COMPLEX"),
        _coded_rule(aliases_rule(settings.graphql_max_aliases), "QUERY_TOO_COMPLEX"),
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
        lambda: BoundedValidation(
            maxsize=size,
            max_fields=settings.graphql_max_fields,
            max_nesting=settings.graphql_max_nesting,
        ),
        ExplainedValidation,
        lambda: CostLimit(settings=settings),
        ReadScopedAnswers,
        RefusedValues,
    ]
    if settings.mask_errors:
        extensions.append(lambda: CodedMaskErrors(should_mask_error=_should_mask))
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    schema = OpsgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=ExecutionContext,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
    schema.parse_document = cached_parse  # what `DocumentLimits` parses with
    return schema
