"""New rows of one model stored in one statement, for the group commits' batches.

On PostgreSQL the statement is written once per model, `INSERT … SELECT … FROM
jsonb_array_elements($1)`: the rows go in as one JSON document, an array per row, each
value converted as Tortoise would store it (an enum as its value, a time as ISO text, JSON
as itself, `auto_now_add` filled in). One document rather than an array per column:
asyncpg encodes an array element by element (two ABC checks each), which cost more than
encoding the whole document, JSON columns included, in one call (`json_text`). Tortoise's
`bulk_create` converts and checks every field of every row in Python, which cost a tool
call more than deciding it. What the checks guarded (lengths, NOT NULL, unique keys) the
database refuses, and the batch is then stored item by item
(`resolvers.batching.each_alone_if_refused`). Elsewhere (SQLite) it is `bulk_create`.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from operator import attrgetter
from typing import Any, TypeVar

import orjson
from tortoise import connections, fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.data import CharEnumFieldInstance
from tortoise.models import Model

from models.columns import STORED_JSON_DUMPS

Convert = Callable[[Any, datetime], Any]
M = TypeVar("M", bound=Model)


# Made once (`json.dumps` makes one per call); what it encodes is built here or parsed from
# JSON, a tree: no cycle to look for (one would end in a RecursionError).
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
# What orjson would write but the standard library refuses: left to the standard library.
_REFUSED_BY_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value: Any) -> str:
    """A value as compact JSON text, for a jsonb parameter of a hand-written statement.

    orjson writes a batch's document in about a tenth of the standard library's time (14
    against 143 µs for a 24 KB document of 32 rows, measured here). What it refuses, the
    standard library writes as before: an integer past 64 bits, a lone surrogate (which
    PostgreSQL then refuses, as it always did), a key that is not a string, and (told to
    pass them through) a datetime or a dataclass, which the standard library refuses too.
    Non-ASCII text goes as UTF-8 rather than `\\u` escapes, and exponents in orjson's
    spelling (`1.5e-7`): the same values to jsonb. Unlike the standard library, orjson
    writes NaN and infinities as null, a UUID as its text and an Enum as its value; none
    reaches a document (bodies refuse NaN when parsed, JSON values are size-checked with
    `allow_nan=False`, and the rows' own values are converted first).
    """
    try:
        return orjson.dumps(value, option=_REFUSED_BY_JSON).decode()
    except TypeError:  # orjson.JSONEncodeError included
        return _ENCODER.encode(value)


def _enum(value: Any, now: datetime) -> Any:
    return value.value if isinstance(value, Enum) else value


def _iso(value: Any, now: datetime) -> Any:
    return None if value is None else value.isoformat()


def _created(value: Any, now: datetime) -> Any:
    return (now if value is None else value).isoformat()


# How a column's value is read from its row, a JSON array `r` (position {0}): text as it
# is; numbers and times from their text; JSON as the value itself, or for a string as the
# JSON text it holds (Tortoise takes a string for a JSON field as JSON text), NULL for null.
_READS = {
    "text": "r->>{0}",
    "jsonb": "CASE jsonb_typeof(r->{0}) WHEN 'string' THEN (r->>{0})::jsonb "
    "WHEN 'null' THEN NULL ELSE r->{0} END",
}


@dataclass(frozen=True, slots=True)
class _Column:
    attribute: str
    type: str  # its SQL type
    convert: Convert | None  # into its JSON value; None: as it is
    auto_now_add: bool = False

    def read(self, position: int) -> str:
        """The SQL expression reading it from the row's JSON array."""
        found = _READS.get(self.type)
        return (found or f"(r->>{{0}})::{self.type}").format(position)


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    columns: tuple[_Column, ...]
    serial: str | None = None  # the attribute of a key the database numbers, left out


_STATEMENTS: dict[type[Model], _Statement | None] = {}


def _column(name: str, field: fields.Field[Any]) -> _Column | None:
    """How one field goes in, or None for a kind this module does not convert (exact
    classes only: a subclass may store its values its own way)."""
    kind = type(field)
    if field.has_db_default():
        return None
    if isinstance(field, fields.JSONField) and kind is fields.JSONField:
        if field.encoder is not STORED_JSON_DUMPS:  # what a column written as `json_text` holds
            return None
        return _Column(name, "jsonb", None)
    if kind is CharEnumFieldInstance:
        return _Column(name, "text", _enum)
    if isinstance(field, fields.DatetimeField) and kind is fields.DatetimeField:
        if field.auto_now:
            return None
        if field.auto_now_add:
            return _Column(name, "timestamptz", _created, auto_now_add=True)
        return _Column(name, "timestamptz", _iso)
    if kind is fields.CharField or kind is fields.TextField:
        return _Column(name, "text", None)
    if kind in _INTEGERS:
        return _Column(name, _INTEGERS[kind], None)
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
    selected = ", ".join(column.read(n) for n, column in enumerate(columns))
    sql = (
        f'INSERT INTO "{meta.db_table}" ({", ".join(names)}) '
        f"SELECT {selected} FROM jsonb_array_elements($1::jsonb) AS d(r)"
    )
    found = _Statement(sql, tuple(columns), serial)
    _STATEMENTS[model] = found
    return found


def _document(rows: Sequence[Model], columns: Sequence[_Column], now: datetime) -> str:
    """The rows' values of `columns` as one JSON array, an array per row."""
    converts = [(n, c.convert) for n, c in enumerate(columns) if c.convert is not None]
    read = attrgetter(*(column.attribute for column in columns))
    single = len(columns) == 1  # `read` gives the value itself, not a tuple
    document = []
    for row in rows:
        values = [read(row)] if single else list(read(row))
        for n, convert in converts:
            values[n] = convert(values[n], now)
        document.append(values)
    return json_text(document)


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
    parameters: list[Any]
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
    for column in statement.columns:
        if column.auto_now_add:  # as Tortoise does: the row says when it was stored
            for row in rows:
                if getattr(row, column.attribute) is None:
                    setattr(row, column.attribute, now)
    return Part(statement.sql, [_document(rows, statement.columns, now)], rows)


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
    await connection.execute_query(part.sql, part.parameters)
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
    key_column = _column(meta.pk_attr, meta.pk)
    columns = [_column(name, meta.fields_map[name]) for name in attributes]
    found = None
    if key_column is not None and all(column is not None for column in columns):
        known = [key_column, *(column for column in columns if column is not None)]
        assignments = ", ".join(
            f'"{meta.fields_db_projection[column.attribute]}" = {column.read(n)}'
            for n, column in enumerate(known)
            if n > 0
        )
        sql = (
            f'UPDATE "{meta.db_table}" AS t SET {assignments} '
            f"FROM jsonb_array_elements($1::jsonb) AS d(r) "
            f'WHERE t."{meta.db_pk_column}" = {key_column.read(0)}'
        )
        found = (sql, tuple(known))
    _UPDATES[key] = found
    return found


def update_part(rows: Sequence[Model], attributes: tuple[str, ...], now: datetime) -> Part | None:
    """The UPDATE of `attributes` of stored rows of one model on PostgreSQL, or None for a
    field of a kind not converted here."""
    found = _update_statement(type(rows[0]), attributes)
    if found is None:
        return None
    sql, columns = found
    return Part(sql, [_document(rows, columns, now)], rows)


async def update_rows(
    connection: BaseDBAsyncClient, rows: Sequence[Model], attributes: Sequence[str]
) -> None:
    """Write `attributes` of stored rows of one model, as they stand on the instances.

    On PostgreSQL it is one `UPDATE … FROM jsonb_array_elements(…)` statement, the rows'
    values converted as `insert_rows` converts them; it takes the rows' locks in no set
    order, so a caller that needs one locks them first. Elsewhere, or for a field of a kind
    not converted here, one prepared statement runs once per row, each value converted by
    its field.
    """
    if not rows:
        return
    names = tuple(attributes)
    postgres = connection.capabilities.dialect == "postgres"
    part = update_part(rows, names, datetime.now(UTC)) if postgres else None
    if part is None:
        await _update_each(connection, type(rows[0]), rows, names)
        return
    await connection.execute_query(part.sql, part.parameters)


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
