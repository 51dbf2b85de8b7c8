"""New rows of one model stored in one statement, for the group commits' batches.

On PostgreSQL the statement is written once per model, `INSERT … SELECT … FROM unnest(…)`
with one array per column, and each value is converted as Tortoise would store it (JSON as
text, an enum as its value, `auto_now_add` filled in): Tortoise's `bulk_create` converts
and checks every field of every row in Python, which cost a tool call more than deciding
it. What the checks guarded (lengths, NOT NULL, unique keys) the database refuses, and the
batch is then stored item by item (`resolvers.batching.each_alone_if_refused`). Elsewhere
(SQLite) it is `bulk_create`.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from tortoise import connections, fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.data import CharEnumFieldInstance
from tortoise.models import Model

Convert = Callable[[Any, datetime], Any]
M = TypeVar("M", bound=Model)


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # `json.dumps` makes one per call


def json_text(value: Any) -> str:
    """A value as compact JSON text, for a jsonb parameter of a hand-written statement."""
    return _ENCODER.encode(value)


def _same(value: Any, now: datetime) -> Any:
    return value


def _json(value: Any, now: datetime) -> Any:
    # A string is JSON text already, as Tortoise takes it (the ::jsonb cast checks it).
    return value if value is None or isinstance(value, str) else json_text(value)


def _enum(value: Any, now: datetime) -> Any:
    return value.value if isinstance(value, Enum) else value


def _created(value: Any, now: datetime) -> Any:
    return now if value is None else value


@dataclass(frozen=True, slots=True)
class _Column:
    attribute: str
    cast: str  # the SQL type of its array
    convert: Convert
    auto_now_add: bool = False


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    columns: tuple[_Column, ...]
    serial: str | None = None  # the attribute of a key the database numbers, left out


_STATEMENTS: dict[type[Model], _Statement | None] = {}
_DEFAULT_JSON_ENCODER = fields.JSONField().encoder  # what `json_text` writes, too


def _column(name: str, field: fields.Field[Any]) -> _Column | None:
    """How one field goes in, or None for a kind this module does not convert (exact
    classes only: a subclass may store its values its own way)."""
    kind = type(field)
    if field.has_db_default():
        return None
    if isinstance(field, fields.JSONField) and kind is fields.JSONField:
        if field.encoder is not _DEFAULT_JSON_ENCODER:
            return None
        return _Column(name, "jsonb", _json)
    if kind is CharEnumFieldInstance:
        return _Column(name, "text", _enum)
    if isinstance(field, fields.DatetimeField) and kind is fields.DatetimeField:
        if field.auto_now:
            return None
        if field.auto_now_add:
            return _Column(name, "timestamptz", _created, auto_now_add=True)
        return _Column(name, "timestamptz", _same)
    if kind is fields.CharField or kind is fields.TextField:
        return _Column(name, "text", _same)
    if kind in _INTEGERS:
        return _Column(name, _INTEGERS[kind], _same)
    return None


_INTEGERS: dict[type[fields.Field[Any]], str] = {
    fields.SmallIntField: "int2",
    fields.IntField: "int4",
    fields.BigIntField: "int8",
}


def _statement(model: type[Model]) -> _Statement | None:
    """The model's statement, made on first use; None if a field is of another kind."""
    if model in _STATEMENTS:
        return _STATEMENTS[model]
    meta = model._meta
    if not meta._inited:  # relations not resolved yet: their columns are not known
        return None
    columns: list[_Column] = []
    names: list[str] = []
    serial = None
    for attribute, column_name in meta.fields_db_projection.items():
        if column_name in meta.generated_db_fields:
            if column_name != meta.db_pk_column:
                _STATEMENTS[model] = None
                return None
            serial = attribute  # the database numbers the rows
            continue
        column = _column(attribute, meta.fields_map[attribute])
        if column is None:
            _STATEMENTS[model] = None
            return None
        columns.append(column)
        names.append(f'"{column_name}"')
    # jsonb goes in as text and is cast in the SELECT (asyncpg sends text arrays as is).
    arrays = ", ".join(
        f"${n}::{'text' if c.cast == 'jsonb' else c.cast}[]" for n, c in enumerate(columns, 1)
    )
    aliases = [f"c{n}" for n in range(len(columns))]
    selected = ", ".join(
        f"{alias}::jsonb" if c.cast == "jsonb" else alias
        for alias, c in zip(aliases, columns, strict=True)
    )
    sql = (
        f'INSERT INTO "{meta.db_table}" ({", ".join(names)}) '
        f"SELECT {selected} FROM unnest({arrays}) AS u({', '.join(aliases)})"
    )
    found = _Statement(sql, tuple(columns), serial)
    _STATEMENTS[model] = found
    return found


def new_row(model: type[M], **values: Any) -> M:
    """A new row for a hand-written statement (`insert_rows`, `resolvers.change_store`):
    where the statement stores it (PostgreSQL) it only carries values (`construct`,
    without Tortoise's checks and conversions, which cost as much again), elsewhere it is a
    full instance for the ORM to store."""
    if connections.get("default").capabilities.dialect == "postgres" and _statement(model):
        return construct(model, values)
    return model(**values)


# What `construct` sets besides the values, by model and the names of the values given
# (a few call sites, each with its own names; past this many the memo starts again).
_Defaults = tuple[tuple[str, Any, bool], ...]  # (attribute, default, call it for each row)
_DEFAULTS: dict[tuple[type[Model], tuple[str, ...]], _Defaults | None] = {}
DEFAULTS_REMEMBERED = 256


def construct(model: type[M], values: dict[str, Any], *, saved: bool = False) -> M:
    """`Model.construct(_saved_in_db=saved, **values)`, the same instance for a tenth of
    the work: which defaults the other fields take is worked out once per model and set of
    names, not per row. Values for relations (which `Model.construct` wraps) go to it."""
    key = (model, tuple(values))
    try:
        defaults = _DEFAULTS[key]
    except KeyError:
        if len(_DEFAULTS) >= DEFAULTS_REMEMBERED:
            _DEFAULTS.clear()
        defaults = _DEFAULTS[key] = _defaults(model, key[1])
    if defaults is None:
        return model.construct(_saved_in_db=saved, **values)
    row = model.__new__(model)
    state = row.__dict__
    state["_partial"] = False
    state["_saved_in_db"] = saved
    state["_custom_generated_pk"] = False
    state["_await_when_save"] = {}
    for attribute, default, call in defaults:
        state[attribute] = default() if call else default
    state.update(values)
    return row


def _defaults(model: type[Model], names: tuple[str, ...]) -> _Defaults | None:
    """What `Model.construct` sets on the fields `names` leave out, or None if a name is
    not a plain attribute (a relation, or anything the class defines itself)."""
    meta = model._meta
    relations = (
        meta.fk_fields | meta.o2o_fields | meta.backward_fk_fields
        | meta.backward_o2o_fields | meta.m2m_fields
    )  # fmt: skip
    if any(name in relations or hasattr(model, name) for name in names):
        return None
    defaults: list[tuple[str, Any, bool]] = []
    for attribute in meta.fields.difference(names):
        if attribute in meta.fetch_fields:
            continue
        field = meta.fields_map[attribute]
        default = field.default
        if inspect.iscoroutinefunction(default):
            defaults.append((attribute, None, False))  # as `Model.construct` does
        elif callable(default):
            defaults.append((attribute, default, True))
        elif default is not None:
            defaults.append((attribute, default, False))
        elif field.has_db_default():
            defaults.append((attribute, field.get_db_default_value(), False))
        else:
            defaults.append((attribute, None, False))
    return tuple(defaults)


@dataclass(frozen=True, slots=True)
class Part:
    """One statement of `insert_rows` or `update_rows` (parameters `$1`…) with its values:
    run alone, or as a CTE of a bigger statement (`resolvers.timeline.record_entries`)."""

    sql: str
    arrays: list[list[Any]]
    rows: Sequence[Model]

    def stored(self) -> None:
        """Mark the rows saved, once the statement holding this part ran."""
        mark_saved(self.rows)


def insert_part(rows: Sequence[Model], now: datetime) -> Part | None:
    """The INSERT of new rows of one model on PostgreSQL, or None where the ORM stores them
    (a field of a kind not converted here, serial numbers chosen by the caller)."""
    statement = _statement(type(rows[0]))
    if statement is None:
        return None
    if statement.serial is not None:
        if any(getattr(row, statement.serial) is not None for row in rows):
            return None  # the ORM inserts them as given
    arrays: list[list[Any]] = []
    for column in statement.columns:
        name, convert = column.attribute, column.convert
        values = [convert(getattr(row, name), now) for row in rows]
        if column.auto_now_add:  # as Tortoise does: the row says when it was stored
            for row, value in zip(rows, values, strict=True):
                setattr(row, name, value)
        arrays.append(values)
    return Part(statement.sql, arrays, rows)


async def insert_rows(connection: BaseDBAsyncClient, rows: Sequence[Model]) -> None:
    """Insert new rows of one model through `connection`: with their ids set, or for a
    serial key without (the database numbers them and, as with Tortoise's `bulk_create`,
    the instances are not told their numbers)."""
    if not rows:
        return
    postgres = connection.capabilities.dialect == "postgres"
    part = insert_part(rows, datetime.now(UTC)) if postgres else None
    if part is None:
        await type(rows[0]).bulk_create(list(rows), using_db=connection)
        mark_saved(rows)
        return
    await connection.execute_query(part.sql, part.arrays)
    part.stored()


def mark_saved(rows: Sequence[Model]) -> None:
    """Mark rows a hand-written statement stored as saved, as the ORM's own save does."""
    for row in rows:  # as an attribute of the instance (`Model.__setattr__` costs 1 µs)
        row.__dict__["_saved_in_db"] = True


# UPDATE statements by model and the attributes they write (a few call sites).
_Update = tuple[str, tuple[_Column, ...]]
_UPDATES: dict[tuple[type[Model], tuple[str, ...]], _Update | None] = {}


def _update_statement(model: type[Model], attributes: tuple[str, ...]) -> _Update | None:
    key = (model, attributes)
    if key in _UPDATES:
        return _UPDATES[key]
    meta = model._meta
    columns = [_column(name, meta.fields_map[name]) for name in attributes]
    key_column = _column(meta.pk_attr, meta.pk)
    found = None
    if key_column is not None and all(column is not None for column in columns):
        known = [column for column in columns if column is not None]
        arrays = ", ".join(
            f"${n}::{'text' if c.cast == 'jsonb' else c.cast}[]"
            for n, c in enumerate([key_column, *known], 1)
        )
        aliases = [f"c{n}" for n in range(len(known))]
        assignments = ", ".join(
            f'"{meta.fields_db_projection[c.attribute]}" = '
            + (f"u.{alias}::jsonb" if c.cast == "jsonb" else f"u.{alias}")
            for alias, c in zip(aliases, known, strict=True)
        )
        pk = meta.db_pk_column
        found = (
            f'UPDATE "{meta.db_table}" AS t SET {assignments} '
            f'FROM unnest({arrays}) AS u(k, {", ".join(aliases)}) WHERE t."{pk}" = u.k',
            tuple(known),
        )
    _UPDATES[key] = found
    return found


def update_part(rows: Sequence[Model], attributes: tuple[str, ...], now: datetime) -> Part | None:
    """The UPDATE of `attributes` of stored rows of one model on PostgreSQL, or None for a
    field of a kind not converted here."""
    model = type(rows[0])
    found = _update_statement(model, attributes)
    if found is None:
        return None
    sql, columns = found
    arrays: list[list[Any]] = [[getattr(row, model._meta.pk_attr) for row in rows]]
    for column in columns:
        name, convert = column.attribute, column.convert
        arrays.append([convert(getattr(row, name), now) for row in rows])
    return Part(sql, arrays, rows)


async def update_rows(
    connection: BaseDBAsyncClient, rows: Sequence[Model], attributes: Sequence[str]
) -> None:
    """Write `attributes` of stored rows of one model, as they stand on the instances.

    On PostgreSQL it is one `UPDATE … FROM unnest(…)` statement, the rows' values converted
    as `insert_rows` converts them; it takes the rows' locks in no set order, so a caller
    that needs one locks them first. Elsewhere, or for a field of a kind not converted
    here, one prepared statement runs once per row, each value converted by its field.
    """
    if not rows:
        return
    names = tuple(attributes)
    postgres = connection.capabilities.dialect == "postgres"
    part = update_part(rows, names, datetime.now(UTC)) if postgres else None
    if part is None:
        await _update_each(connection, type(rows[0]), rows, names)
        return
    await connection.execute_query(part.sql, part.arrays)


async def _update_each(
    connection: BaseDBAsyncClient, model: type[Model], rows: Sequence[Model], names: tuple[str, ...]
) -> None:
    meta = model._meta
    postgres = connection.capabilities.dialect == "postgres"
    placeholders = (f"${n}" for n in itertools.count(1)) if postgres else itertools.repeat("?")
    assignments = ", ".join(
        f'"{meta.fields_db_projection[name]}" = {next(placeholders)}' for name in names
    )
    where = f'"{meta.db_pk_column}" = {next(placeholders)}'
    sql = f'UPDATE "{meta.db_table}" SET {assignments} WHERE {where}'
    fields_map = meta.fields_map
    values = [
        [fields_map[name].to_db_value(getattr(row, name), row) for name in names]
        + [getattr(row, meta.pk_attr)]
        for row in rows
    ]
    await connection.execute_many(sql, values)
