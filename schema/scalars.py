"""Scalars: a strict DateTime (a zone is required, never guessed) and JSON.

Annotate fields with plain `datetime`; `SCALAR_MAP` (passed to the schema config)
replaces Strawberry's lenient built-in DateTime with this one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from resolvers.validation import parse_timestamp


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: object) -> datetime:
    return parse_timestamp(value)


DATETIME: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description="An ISO-8601 date and time with a zone, e.g. 2026-03-04T14:25:00Z.",
    serialize=_serialize,
    parse_value=_parse,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {datetime: DATETIME}

__all__ = ["JSON", "SCALAR_MAP"]
