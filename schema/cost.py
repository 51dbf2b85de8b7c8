"""What a document asks for, counted before it runs: the objects it could return and the
events its list mutations would store.

Depth, tokens and aliases bound a document's size, not its work: lists nest, and each
level multiplies the one above (`incidents(first: 1) { timeline(first: 200) { subject {
... on Incident { timeline(first: 200) { ... } } } } }` is 40,000 entries at the third
level, 8,000,000 at the fourth, from a document of a few hundred bytes). The count here is
of objects, each list field counting as its `first` (the default page when not given),
`inputs` as its length, a connection's `edges` and `nodes` as the page already counted,
and any other list of objects as `OTHER_LIST` each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from opsgraph.settings import Settings

OTHER_LIST = 10  # objects assumed in a list with no `first` (a run's tool calls, links, ...)


@dataclass(frozen=True, slots=True)
class Cost:
    objects: int  # at most, in the result
    inputs: Counter[str]  # events per list mutation (`recordChanges`: changes), aliases summed
    calls: Counter[str]  # how many times each list mutation is selected (aliases)


def cost_of(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    default_page: int,
    max_page: int,
) -> Cost:
    """Count what the operation asks for (the document is valid). A `first` above
    `max_page` counts as `max_page`: the field refuses it itself, saying so."""
    operation = get_operation_ast(document, operation_name)
    inputs: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    if operation is None:
        return Cost(0, inputs, calls)
    root = schema.get_root_type(operation.operation)
    fragments = {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    values = variables or {}
    defaults = {
        definition.variable.name.value: definition.default_value
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }

    def literal(value: ValueNode | None) -> Any:
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, ListValueNode):
            return value.values
        return None

    def argument(node: FieldNode, name: str) -> Any:
        for given in node.arguments or ():
            if given.name.value == name:
                value = given.value
                if not isinstance(value, VariableNode):
                    return literal(value)
                variable = value.name.value
                found = values[variable] if variable in values else literal(defaults.get(variable))
                if isinstance(found, float) and found.is_integer():  # an Int sent as 200.0
                    return int(found)
                return found
        return None

    def factor(node: FieldNode, field: GraphQLField, parent: GraphQLNamedType) -> int:
        if "inputs" in field.args:
            given = argument(node, "inputs")
            count = len(given) if isinstance(given, list | tuple) else 1
            inputs[node.name.value] += count
            calls[node.name.value] += 1
            return count
        if "first" in field.args:
            first = argument(node, "first")
            return min(first, max_page) if isinstance(first, int) and first > 0 else default_page
        if not is_list_type(get_nullable_type(field.type)):
            return 1
        return 1 if parent.name.endswith("Connection") else OTHER_LIST

    counted: dict[tuple[int, str], int] = {}

    def count(selections: SelectionSetNode, parent: GraphQLNamedType) -> int:
        """Objects below one object of `parent`. Each selection set is counted once per
        type, fragments included: a fragment spread in many places (or twice in each of
        a chain of fragments, which doubles at every link) costs one count, not one per
        place."""
        key = (id(selections), parent.name)
        if key in counted:
            return counted[key]
        counted[key] = 0  # a cycle (refused by validation anyway) counts nothing
        total = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                field = getattr(parent, "fields", {}).get(node.name.value)
                if field is None or node.selection_set is None:  # __typename, scalars
                    continue
                many = factor(node, field, parent)
                total += many * (1 + count(node.selection_set, get_named_type(field.type)))
                continue
            if isinstance(node, InlineFragmentNode):
                condition, nested = node.type_condition, node.selection_set
            elif isinstance(node, FragmentSpreadNode) and node.name.value in fragments:
                fragment = fragments[node.name.value]
                condition, nested = fragment.type_condition, fragment.selection_set
            else:
                continue
            typed = schema.get_type(condition.name.value) if condition else parent
            if typed is not None:
                total += count(nested, typed)
        counted[key] = total
        return total

    objects = count(operation.selection_set, root) if root is not None else 0
    return Cost(objects, inputs, calls)


class CostLimit(SchemaExtension):
    """Refuse, before it runs, an operation that could return more than
    `graphql_max_cost` objects, or whose list mutations carry more events than one call
    may (`max_changes_per_call`, ...: aliases multiplied them). List it after
    ValidationCache: it counts valid documents only, with their variables."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.per_call = {
            "recordChanges": settings.max_changes_per_call,
            "sendIncidentEvents": settings.max_incident_events_per_call,
            "recordAgentEvents": settings.max_agent_events_per_call,
        }

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            try:
                cost: Cost | None = cost_of(
                    context.schema._schema,
                    document,
                    context.operation_name,
                    context.variables,
                    default_page=self.settings.page_size_default,
                    max_page=self.settings.page_size_max,
                )
            except RecursionError:  # fragments spread in a chain longer than Python recurses
                cost = None
            error = self._refusal(cost)
            if error is not None:
                context.pre_execution_errors = [error]  # a new list: the cache keeps its own
        yield

    def _refusal(self, cost: Cost | None) -> GraphQLError | None:
        limit = self.settings.graphql_max_cost
        if cost is None:
            return GraphQLError(
                "The operation nests fragments too deeply to count what it asks for.",
                extensions={"code": "QUERY_TOO_COMPLEX"},
            )
        if cost.objects > limit:
            return GraphQLError(
                f"The operation could return {cost.objects:,} objects, more than the "
                f"{limit:,} allowed (OPSGRAPH_GRAPHQL_MAX_COST): ask for smaller pages, "
                "fewer nested lists or fewer aliases.",
                extensions={"code": "QUERY_TOO_COMPLEX"},
            )
        for name, count in cost.inputs.items():
            most = self.per_call.get(name)
            # One selection past it is refused by the field itself, as documented.
            if most is not None and count > most and cost.calls[name] > 1:
                return GraphQLError(
                    f"{name}: at most {most} inputs in one operation, aliases included "
                    f"(this one carries {count}).",
                    extensions={"code": "BAD_USER_INPUT"},
                )
        return None
