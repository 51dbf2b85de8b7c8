"""GraphQL execution with a short path for plain fields.

graphql-core executes every field the same way: a resolve-info object, the resolver behind
Strawberry's wrapper, then `complete_value` walking the type's wrappers. Most fields of a
page are plain attributes of a Strawberry type (no resolver, no arguments) whose type is a
scalar, an enum or a list of them; for those, this executor reads the attribute and coerces
it directly. A page of 50 timeline entries is about 500 such fields. `__typename` is its
type's name, and a plain attribute whose type is an object type or a list of one
(`change { id }` of a `ChangeRecorded`, `matchedPolicies { … }` of an agent event) is read
and its own fields executed as graphql-core's `complete_value` would, without the
resolve-info and resolver call around it.

Anything else (a resolver, arguments, an abstract type, a `@stream`ed list, a schema
extension that wraps resolvers) and any value the short path cannot settle (a null where
the type forbids it, a value the scalar refuses, something that is not a list) goes
through graphql-core's own `execute_field`, which also reports the error exactly as
before. An error inside an object's own fields is handled as graphql-core's
`execute_field` and `complete_list_item_value` handle it. Both paths give the same results
in the same order.

Importing this module also makes graphql-core coerce variables on compiled plans
(`schema.variables`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any, cast

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from schema import variables

variables.install()  # variables coerced by compiled plans (`schema.variables`)

# How to complete each field set, kept per execution (each event of a subscription is an
# execution of its own); past this many field sets the memo starts again, a bound for an
# execution that should ever see that many.
PLAN_CACHE_SIZE = 256


class _Plain:
    """How to complete one plain field: read it, then coerce a leaf or a list of leaves."""

    __slots__ = ("read", "coerce", "non_null", "is_list", "items_non_null")

    def __init__(
        self, read: Callable[[Any], Any], coerce: Callable[[Any], Any], *,
        non_null: bool, is_list: bool, items_non_null: bool,
    ) -> None:  # fmt: skip
        self.read = read
        self.coerce = coerce
        self.non_null = non_null
        self.is_list = is_list
        self.items_non_null = items_non_null

    def complete(self, source: Any) -> Any:
        """The completed value, or Undefined when the usual path must decide."""
        value = self.read(source)
        if value is None:
            return Undefined if self.non_null else None
        if isinstance(value, Exception):  # graphql-core raises it as the field's error
            return Undefined
        coerce = self.coerce
        if not self.is_list:
            coerced = coerce(value)
            return Undefined if coerced is None else coerced
        if type(value) is not list and type(value) is not tuple:
            return Undefined
        completed: list[Any] = []
        for item in value:
            if item is None:
                if self.items_non_null:
                    return Undefined
                completed.append(None)
                continue
            coerced = coerce(item)
            if coerced is None or coerced is Undefined:
                return Undefined
            completed.append(coerced)
        return completed


class _TypeName:
    """`__typename`: the name of the type whose fields these are."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Object:
    """A plain attribute of an object type (no `is_type_of` to check): read it, then
    execute its fields (`complete_object_value` with nothing to check first)."""

    __slots__ = ("read", "return_type", "object_type", "non_null")

    def __init__(self, read: Callable[[Any], Any], return_type: GraphQLOutputType) -> None:
        self.read = read
        self.return_type = return_type
        self.non_null = isinstance(return_type, GraphQLNonNull)
        inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        assert isinstance(inner, GraphQLObjectType)
        self.object_type = inner


class _Objects:
    """A plain attribute that is a list of one object type (no `is_type_of`): each item's
    fields executed as `complete_list_value` would."""

    __slots__ = ("read", "return_type", "item_type", "object_type", "non_null", "items_non_null")

    def __init__(self, read: Callable[[Any], Any], return_type: GraphQLOutputType) -> None:
        self.read = read
        self.return_type = return_type
        self.non_null = isinstance(return_type, GraphQLNonNull)
        inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        assert isinstance(inner, GraphQLList)
        self.item_type: GraphQLOutputType = inner.of_type
        self.items_non_null = isinstance(self.item_type, GraphQLNonNull)
        object_type = _object_type(self.item_type)
        assert object_type is not None
        self.object_type = object_type


_Step = _Plain | _TypeName | _Object | _Objects


def _object_type(return_type: GraphQLOutputType) -> GraphQLObjectType | None:
    inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    if isinstance(inner, GraphQLObjectType) and inner.is_type_of is None:
        return inner
    return None


def _objects_type(return_type: GraphQLOutputType) -> GraphQLObjectType | None:
    """The object type of `[T]`, `[T!]!` and the like (T with no `is_type_of`)."""
    inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    return _object_type(inner.of_type) if isinstance(inner, GraphQLList) else None


def _reader(field: GraphQLField, resolve: Callable[..., Any]) -> Callable[[Any], Any]:
    """How to read a plain field of a source: `attrgetter` of its Python name where the
    field reads the attribute with `getattr` (what Strawberry's resolver does, three calls
    deeper), else that resolver."""
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        isinstance(definition, StrawberryField)
        and definition.base_resolver is None
        and definition.default_resolver is getattr
    ):
        return attrgetter(definition.python_name)
    return partial(resolve, info=None)


def _leaf_shape(return_type: GraphQLOutputType) -> tuple[GraphQLLeafType, bool, bool, bool] | None:
    """(leaf type, non-null, is list, items non-null) for a leaf or a list of leaves."""
    inner: Any = return_type
    non_null = isinstance(inner, GraphQLNonNull)
    if non_null:
        inner = inner.of_type
    if is_leaf_type(inner):
        return inner, non_null, False, False
    if not isinstance(inner, GraphQLList):
        return None
    item: Any = inner.of_type
    items_non_null = isinstance(item, GraphQLNonNull)
    if items_non_null:
        item = item.of_type
    if not is_leaf_type(item):
        return None
    return item, non_null, True, items_non_null


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain fields completed on a short path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple[GroupedFieldSet, list[_Step | None]]] = {}

    def build_per_event_executor(self, payload: Any) -> ExecutionContext:
        """graphql-core's per-event copy, with its own memo of collected fields.

        graphql-core shares that memo between a subscription's events, but every event
        collects its root fields anew, so the shared memo gained an entry per event (about
        1 KB) for as long as the subscription lived.
        """
        executor = cast(ExecutionContext, super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        executor._plans = {}
        return executor

    def _plan(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> list[_Step | None]:
        plans = self._plans
        if len(plans) >= PLAN_CACHE_SIZE:
            plans = self._plans = {}
        cached = plans.get(id(fields))
        if cached is not None and cached[0] is fields:
            return cached[1]
        manager = self.middleware_manager
        wrapped = manager is not None and bool(manager.middlewares)
        plan = [None if wrapped else self._plain(parent_type, group) for group in fields.values()]
        plans[id(fields)] = (fields, plan)  # the field set is kept, so its id stays its own
        return plan

    def _plain(self, parent_type: GraphQLObjectType, group: FieldDetailsList) -> _Step | None:
        node = group[0].node
        if node.name.value == "__typename" and not node.arguments:
            return _TypeName(parent_type.name)
        field = self.schema.get_field(parent_type, node.name.value)
        resolve = field.resolve if field is not None else None
        if (
            field is None
            or resolve is None
            # Strawberry's plain attribute read (`_is_default` is also set on a field with
            # permission classes or extensions, whose resolver must run: not those)
            or getattr(resolve, "__name__", "") != "_get_basic_result"
            or field.args
            or node.arguments
        ):
            return None
        read = _reader(field, resolve)
        if _object_type(field.type) is not None:
            return _Object(read, field.type)
        if _objects_type(field.type) is not None:
            streamed = any(d.name.value == "stream" for f in group for d in f.node.directives or ())
            return None if streamed else _Objects(read, field.type)
        shape = _leaf_shape(field.type)
        if shape is None:
            return None
        leaf, non_null, is_list, items_non_null = shape
        return _Plain(
            read, leaf.coerce_output_value,
            non_null=non_null, is_list=is_list, items_non_null=items_non_null,
        )  # fmt: skip

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plan(parent_type, grouped_field_set)
        if not any(plan):
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        # graphql-core's loop (fields in order, awaitables settled as it settles them), with
        # a short step for each field the plan has one for; any other field, and any value
        # a short step cannot settle, goes through `execute_field`.
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for step, (name, group) in zip(plan, grouped_field_set.items(), strict=True):
                if step is not None:
                    if type(step) is _TypeName:
                        results[name] = step.name
                        continue
                    if type(step) is _Plain:
                        try:
                            value = step.complete(source_value)
                        except Exception:  # the usual path raises it again, located
                            value = Undefined
                    elif type(step) is _Object:
                        value = self._complete_object(
                            step, source_value, path, parent_type, name, group, position_context
                        )
                    else:
                        value = self._complete_objects(
                            cast(_Objects, step), source_value, path, parent_type, name, group,
                            position_context,
                        )  # fmt: skip
                    if value is not Undefined:
                        results[name] = value
                        if type(step) is not _Plain and is_awaitable(value):
                            awaitable_fields.append(name)
                        continue
                field_path = Path(path, name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, group, field_path, position_context
                )
                if result is not Undefined:
                    results[name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:  # settled, as they may fail too
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def settled() -> dict[str, Any]:
            values = await gather_with_cancel(*(results[name] for name in awaitable_fields))
            results.update(zip(awaitable_fields, values, strict=True))
            return results

        return settled()

    def _complete_object(
        self,
        step: _Object,
        source_value: Any,
        path: Path | None,
        parent_type: GraphQLObjectType,
        name: str,
        group: FieldDetailsList,
        position_context: Any,
    ) -> Any:
        """An object field's completed value (maybe awaitable), or Undefined where
        `execute_field` must decide (a null or an exception in place of the object)."""
        try:
            value = step.read(source_value)
        except Exception:
            return Undefined
        if value is None:
            return Undefined if step.non_null else None
        if isinstance(value, Exception) or self.is_awaitable(value):
            return Undefined
        field_path = Path(path, name, parent_type.name)
        # An error handled as `execute_field` handles it (raised again if non-null).
        return self._subfields(
            step.object_type, step.return_type, group, field_path, value, position_context
        )

    def _complete_objects(
        self,
        step: _Objects,
        source_value: Any,
        path: Path | None,
        parent_type: GraphQLObjectType,
        name: str,
        group: FieldDetailsList,
        position_context: Any,
    ) -> Any:
        """A list-of-objects field's completed value (maybe awaitable), or Undefined where
        `execute_field` must decide (a null, an exception or something other than a list
        or tuple in place of the list; a null where an item must be, or an exception)."""
        try:
            value = step.read(source_value)
        except Exception:
            return Undefined
        if value is None:
            return Undefined if step.non_null else None
        if type(value) is not list and type(value) is not tuple:
            return Undefined
        for item in value:
            if (
                (item is None and step.items_non_null)
                or isinstance(item, Exception)
                or self.is_awaitable(item)
            ):
                return Undefined
        field_path = Path(path, name, parent_type.name)
        item_type, object_type = step.item_type, step.object_type
        completed: list[Any] = []
        waiting: list[int] = []
        try:
            for index, item in enumerate(value):
                if item is None:
                    completed.append(None)
                    continue
                # An error handled as `complete_list_item_value` handles it.
                item_path = Path(field_path, index, None)
                done = self._subfields(
                    object_type, item_type, group, item_path, item, position_context
                )
                if self.is_awaitable(done):
                    waiting.append(index)
                completed.append(done)
        except Exception as error:  # an item's error nulls the list: as `execute_field`
            if waiting:
                self.settle_in_background([completed[index] for index in waiting])
            self.handle_field_error(error, step.return_type, group, field_path)
            return None
        if not waiting:
            return completed

        async def settled() -> Any:
            try:
                values = await gather_with_cancel(*(completed[index] for index in waiting))
            except Exception as error:
                self.handle_field_error(error, step.return_type, group, field_path)
                return None
            for index, done in zip(waiting, values, strict=True):
                completed[index] = done
            return completed

        return settled()

    def _subfields(
        self,
        object_type: GraphQLObjectType,
        value_type: GraphQLOutputType,
        group: FieldDetailsList,
        path: Path,
        value: Any,
        position_context: Any,
    ) -> Any:
        """`value`'s own fields executed (maybe awaitable); an error, now or once awaited,
        handled as graphql-core handles one of a value of `value_type` at `path`: recorded
        and None, or raised again where the value may not be null."""
        try:
            done = self.collect_and_execute_subfields(
                object_type, group, path, value, position_context
            )
        except Exception as error:
            self.handle_field_error(error, value_type, group, path)
            return None
        return self._settled(done, value_type, group, path) if self.is_awaitable(done) else done

    async def _settled(
        self, pending: Any, value_type: GraphQLOutputType, group: FieldDetailsList, path: Path
    ) -> Any:
        try:
            return await pending
        except Exception as error:
            self.handle_field_error(error, value_type, group, path)
            return None
