"""Keyset paging for runs and approvals: newest first by (time, id), opaque cursors."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q

from models.ids import could_be_stored

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class KeyCursor:
    """A position in the newest-first order of one table: (time, id)."""

    at: datetime
    row_id: str

    def encode(self) -> str:
        micros = (self.at - EPOCH) // timedelta(microseconds=1)
        return base64.urlsafe_b64encode(f"k1:{micros}:{self.row_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> KeyCursor:
        """Parse an opaque cursor; raises ValueError on anything malformed."""
        at, row_id = decode_position(value, "k1")
        return cls(at=at, row_id=row_id)


def decode_position(value: str, version: str) -> tuple[datetime, str]:
    """The (time, row id) of a `version:micros:id` cursor; ValueError("Invalid cursor.") for
    anything else."""
    try:
        padded = value + "=" * (-len(value) % 4)
        found, micros, row_id = base64.urlsafe_b64decode(padded).decode().split(":", 2)
        if found != version or not row_id:
            raise ValueError(found)
        # Row ids are short ASCII (`models.ids.new_id`): a cursor naming anything else is
        # malformed, not a value for the database to refuse.
        if not (could_be_stored(row_id) and row_id.isascii() and row_id.isprintable()):
            raise ValueError(row_id)
        return EPOCH + timedelta(microseconds=int(micros)), row_id
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise ValueError("Invalid cursor.") from None


@dataclass(slots=True)
class KeyPage(Generic[Row]):
    """One page of rows with the cursor of each and whether more follow."""

    rows: list[Row]
    cursors: list[str]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


async def page(query: Any, *, time_field: str, first: int, after: KeyCursor | None) -> KeyPage[Any]:
    """The next `first` rows of `query`, newest first, strictly after `after`."""
    if after is not None:
        older: dict[str, Any] = {f"{time_field}__lt": after.at}
        same_time: dict[str, Any] = {time_field: after.at, "id__lt": after.row_id}
        query = query.filter(Q(**older) | Q(**same_time))
    rows = list(await query.order_by(f"-{time_field}", "-id").limit(first + 1))
    kept = rows[:first]
    cursors = [KeyCursor(at=getattr(row, time_field), row_id=row.id).encode() for row in kept]
    return KeyPage(rows=kept, cursors=cursors, has_next_page=len(rows) > first)
