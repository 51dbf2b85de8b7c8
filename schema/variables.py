"""A request's variable values coerced by plans made once per input type.

graphql-core coerces variables by walking each value beside its type and asking, at every
level, which kind of type it is, after a first walk that checks the value is not nested
too deeply: about 20 µs for one change event of a `recordChanges` call, about as much as
the rest of its GraphQL execution. Here each variable definition gets a coercer made once
(a closure per input type, list and non-null wrapper) that coerces in one walk, calling
the same scalar and enum coercions.

Whatever it cannot settle (a value the type refuses, a missing variable with a default, a
list given as one value, a oneOf input, an input type that contains itself) goes to
graphql-core's own `get_variable_values` for the whole request, which coerces it and
reports the errors exactly as before. Where both settle a value, they give equal ones:
`tests/test_variables.py` holds the two side by side. `install()` makes graphql-core's
executor call this module's `get_variable_values`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    VariableDefinitionNode,
    is_required_input_field,
)
from graphql.execution import executor as graphql_executor
from graphql.execution import values as graphql_values
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import VariableValues, VariableValuesOrErrors, VariableValueSource
from graphql.pyutils import Undefined
from graphql.utilities.coerce_input_value import coerce_default_value

from schema.errors import coded

# The coerced value, or Undefined: not settled here (graphql-core's path decides).
Coerce = Callable[[Any], Any]

_GRAPHQL_GET_VARIABLE_VALUES = graphql_values.get_variable_values

# Per input object type and per variable definition (parsed documents are cached and
# reused, types live as long as their schema); None: graphql-core's path, always.
_OBJECTS: weakref.WeakKeyDictionary[GraphQLInputObjectType, Coerce | None] = (
    weakref.WeakKeyDictionary()
)
_Variable = tuple[GraphQLSchema, GraphQLVariableSignature | None, Coerce | None]
_VARIABLES: weakref.WeakKeyDictionary[VariableDefinitionNode, _Variable] = (
    weakref.WeakKeyDictionary()
)


def get_variable_values(
    schema: GraphQLSchema,
    var_def_nodes: Collection[VariableDefinitionNode],
    inputs: dict[str, Any],
    max_errors: int | None = None,
    hide_suggestions: bool = False,
) -> VariableValuesOrErrors:
    """graphql-core's `get_variable_values`, the values it would give, on a short path."""
    sources: dict[str, VariableValueSource] = {}
    coerced: dict[str, Any] = {}
    for node in var_def_nodes:
        _, signature, coerce = _variable(schema, node)
        if signature is None or coerce is None:
            break
        name = signature.name
        value = inputs.get(name, Undefined)
        if value is Undefined:
            if node.default_value is not None or isinstance(signature.type, GraphQLNonNull):
                break  # its default, or its error
            sources[name] = VariableValueSource(signature)  # null, as never given
            continue
        settled = coerce(value)
        if settled is Undefined:
            break
        sources[name] = VariableValueSource(signature, value)
        coerced[name] = settled
    else:
        return VariableValues(sources, coerced)
    result = _GRAPHQL_GET_VARIABLE_VALUES(
        schema, var_def_nodes, inputs, max_errors=max_errors, hide_suggestions=hide_suggestions
    )
    if isinstance(result, list):  # a variable's value cannot be used: the caller's input
        for error in result:
            coded(error, "BAD_USER_INPUT")
    return result


def install() -> None:
    """Make graphql-core's executor coerce variables here: `Executor.build` calls the
    `get_variable_values` of its module, imported there from `graphql.execution.values`.
    Raises if that module no longer has it (a graphql-core whose executor changed)."""
    names = vars(graphql_executor)
    if names.get("get_variable_values") not in (_GRAPHQL_GET_VARIABLE_VALUES, get_variable_values):
        raise RuntimeError("graphql-core's executor no longer calls get_variable_values")
    names["get_variable_values"] = get_variable_values


def _variable(schema: GraphQLSchema, node: VariableDefinitionNode) -> _Variable:
    found = _VARIABLES.get(node)
    if found is not None and found[0] is schema:
        return found
    signature = get_variable_signature(schema, node)
    if isinstance(signature, GraphQLError):  # reported by graphql-core's path
        found = (schema, None, None)
    else:
        found = (schema, signature, coercer(signature.type))
    _VARIABLES[node] = found
    return found


def coercer(type_: GraphQLInputType) -> Coerce | None:
    """A coercer for values of `type_`, or None where only graphql-core's path will do."""
    if isinstance(type_, GraphQLNonNull):
        inner = coercer(type_.of_type)
        if inner is None:
            return None

        def non_null(value: Any) -> Any:
            return Undefined if value is None else inner(value)

        return non_null
    nullable = _nullable(type_)
    if nullable is None:
        return None

    def maybe_null(value: Any) -> Any:
        return None if value is None else nullable(value)

    return maybe_null


def _nullable(type_: GraphQLInputType) -> Coerce | None:
    """A coercer for the non-null values of a type that is not a non-null wrapper."""
    if isinstance(type_, GraphQLList):
        return _list(type_)
    if isinstance(type_, GraphQLInputObjectType):
        if type_ not in _OBJECTS:
            _OBJECTS[type_] = None  # while it is made: a type that contains itself stays None
            _OBJECTS[type_] = _object(type_)
        return _OBJECTS[type_]
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return _leaf(type_)
    return None


def _list(type_: GraphQLList[Any]) -> Coerce | None:
    item = coercer(type_.of_type)
    if item is None:
        return None
    strings = _is_string(type_.of_type)

    def list_of(value: Any) -> Any:
        if type(value) is not list:  # one value as a list of one, a tuple: not here
            return Undefined
        items = []
        for given in value:
            if strings and type(given) is str:
                items.append(given)
                continue
            settled = item(given)
            if settled is Undefined:
                return Undefined
            items.append(settled)
        return items

    return list_of


def _object(type_: GraphQLInputObjectType) -> Coerce | None:
    if type_.is_one_of:
        return None
    plan: list[tuple[str, str, Coerce, bool, bool, GraphQLInputField]] = []
    for name, field in type_.fields.items():
        coerce = coercer(field.type)
        if coerce is None:
            return None
        required = is_required_input_field(field)
        plan.append((name, field.out_name or name, coerce, required, _is_string(field.type), field))
    names = frozenset(type_.fields)
    out_type = type_.out_type

    def input_object(value: Any) -> Any:
        if type(value) is not dict:
            return Undefined
        for key in value:
            if key not in names:
                return Undefined
        coerced: dict[str, Any] = {}
        for name, out_name, coerce, required, string, field in plan:
            given = value.get(name, Undefined)
            if given is Undefined:
                if required:
                    return Undefined
                default = coerce_default_value(field)
                if default is not Undefined:
                    coerced[out_name] = default
                continue
            if string and type(given) is str:  # the most common field, settled in place
                coerced[out_name] = given
                continue
            settled = coerce(given)
            if settled is Undefined:
                return Undefined
            coerced[out_name] = settled
        return out_type(coerced)

    return input_object


def _is_string(type_: GraphQLInputType) -> bool:
    """Whether `type_` is String or String!: a `str` value is then its own coercion."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return type_ is GraphQLString


def _leaf(type_: GraphQLScalarType | GraphQLEnumType) -> Coerce:
    coerce = type_.coerce_input_value

    def leaf(value: Any) -> Any:
        try:
            return coerce(value)
        except Exception:  # refused: graphql-core's path reports it
            return Undefined

    return leaf
