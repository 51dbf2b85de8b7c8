"""Types shared by every domain: input errors, list mutations and paging."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import strawberry
from strawberry.utils.str_converters import to_camel_case

from opsgraph.settings import Settings
from resolvers.errors import InvalidInput
from schema.context import public_error


@strawberry.type(description="One bad input field, named by its dotted path.")
class FieldError:
    field: str
    message: str


@strawberry.type(description="The input failed validation; `fields` names each bad field.")
class InvalidEvent:
    code: str
    message: str
    fields: list[FieldError]

    @classmethod
    def from_error(cls, error: InvalidInput) -> InvalidEvent:
        return cls(
            code="INVALID_EVENT",
            message=error.message,
            fields=[FieldError(field=e.field, message=e.message) for e in error.errors],
        )


Input = TypeVar("Input")
Data = TypeVar("Data")
Outcome = TypeVar("Outcome")


async def record_each(
    inputs: Sequence[Input],
    *,
    limit: int,
    noun: str,
    validate: Callable[[Input], Data],
    record: Callable[[list[Data]], Awaitable[Sequence[Outcome]]],
    render: Callable[[Outcome], Any],
    validated: Sequence[Any] | None = None,
) -> list[Any]:
    """A list mutation's results, one per input in order: at most `limit` inputs (else the
    whole call is refused); an input `validate` refuses is its InvalidEvent; the others go
    to `record` together and each outcome is rendered. An exception left as an outcome is
    reported by graphql-core as that item's error (a null item).

    `validated` (`Context.validated`) holds the data `validate` gave for each input when
    the REST layer ran it on the same body before the call: used as it is, not redone
    (an input it holds None for is validated here)."""
    if len(inputs) > limit:
        raise public_error("BAD_USER_INPUT", f"inputs: at most {limit} {noun} per call.")
    results: list[Any] = [None] * len(inputs)
    valid: list[tuple[int, Data]] = []
    given = validated if validated is not None and len(validated) == len(inputs) else None
    for index, item in enumerate(inputs):
        data = given[index] if given is not None else None
        if data is not None:
            valid.append((index, data))
            continue
        try:
            valid.append((index, validate(item)))
        except InvalidInput as exc:
            results[index] = InvalidEvent.from_error(exc)
    outcomes = await record([data for _, data in valid])
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        results[index] = render(outcome)
    return results


@strawberry.type(description="Relay-style paging facts.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def page_size(requested: int | None, *, default: int, maximum: int) -> int:
    """The page size to use; a request outside 1..maximum is an error, not a guess."""
    if requested is None:
        return default
    if not 1 <= requested <= maximum:
        raise public_error("BAD_USER_INPUT", f"first must be between 1 and {maximum}.")
    return requested


Filter = TypeVar("Filter")

# The names a filter's lists match (services, environments, labels, agent ids) are stored
# in at most this many characters: a longer value could match nothing, and PostgreSQL
# refused to bind it where SQLite answered an empty page.
FILTER_VALUE_MAX_LENGTH = 200


def bounded(settings: Settings, flt: Filter) -> Filter:
    """A query's or subscription's filter, refused (BAD_USER_INPUT, naming the field) when
    a list holds more than `filter_max_values` values or one longer than any stored name
    (`FILTER_VALUE_MAX_LENGTH`), or a text more than
    `filter_max_text_length` characters: what no dashboard asks, and what makes a statement
    the database plans for minutes (hundreds of labels to match ALL) or cannot bind at all.
    The names in its lists are read without the spaces around them."""
    for field in dataclasses.fields(flt):  # type: ignore[arg-type]
        value = getattr(flt, field.name)
        name = to_camel_case(field.name)  # as the schema names it
        if isinstance(value, list) and len(value) > settings.filter_max_values:
            limit = settings.filter_max_values
            raise public_error("BAD_USER_INPUT", f"filter.{name}: at most {limit} values.")
        if isinstance(value, list) and any(
            isinstance(item, str) and len(item) > FILTER_VALUE_MAX_LENGTH for item in value
        ):
            limit = FILTER_VALUE_MAX_LENGTH
            raise public_error(
                "BAD_USER_INPUT", f"filter.{name}: each value at most {limit} characters."
            )
        if isinstance(value, str) and len(value) > settings.filter_max_text_length:
            limit = settings.filter_max_text_length
            raise public_error("BAD_USER_INPUT", f"filter.{name}: at most {limit} characters.")
    return _trimmed(flt)


def _trimmed(flt: Filter) -> Filter:
    """The filter with the names in its lists (services, labels, ...) without the spaces
    around them, as every name is stored: `" web "` matched nothing."""
    changes = {
        field.name: [item.strip() if isinstance(item, str) else item for item in value]
        for field in dataclasses.fields(flt)  # type: ignore[arg-type]
        if isinstance(value := getattr(flt, field.name), list)
        and any(isinstance(item, str) and item != item.strip() for item in value)
    }
    return dataclasses.replace(flt, **changes) if changes else flt  # type: ignore[type-var]
