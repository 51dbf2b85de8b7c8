"""Types shared by every domain: input errors and paging."""

from __future__ import annotations

import strawberry

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
