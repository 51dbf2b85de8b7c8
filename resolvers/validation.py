"""Field-by-field validation of raw JSON-like input, collecting every error at once.

The REST layer and the GraphQL mutations run the same checks, so a bad field gets the
same message on both paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsgraph.settings import Settings
from resolvers.errors import FieldError, InvalidInput

# RFC 3339 / ISO 8601 with a mandatory zone: a timestamp without one is never guessed.
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})$"
)


def parse_timestamp(value: object) -> datetime:
    """Parse an ISO-8601 timestamp with a zone (`Z` or `±hh:mm`) into UTC.

    Raises ValueError with a user-facing message otherwise.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-03-04T14:25:00Z")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string such as 2026-03-04T14:25:00Z")
    match = _TIMESTAMP.match(value.strip())
    if match is None:
        raise ValueError(
            "must be an ISO-8601 timestamp with a time zone, such as 2026-03-04T14:25:00Z"
        )
    text = value.strip()
    fraction = match.group(1)
    if fraction and len(fraction) > 7:  # Python keeps microseconds: trim nanoseconds.
        text = text.replace(fraction, fraction[:7], 1)
    text = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise ValueError("is not a valid date and time") from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise ValueError("is out of range") from None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far before and after now an event's own timestamp may lie."""

    max_age_days: int
    max_ahead_seconds: int

    @classmethod
    def of(cls, settings: Settings) -> TimeWindow:
        """The window these settings accept (`timestamp_max_age_days`, `..._ahead_seconds`)."""
        return cls(settings.timestamp_max_age_days, settings.timestamp_max_ahead_seconds)

    def check(self, value: datetime, *, now: datetime | None = None) -> None:
        """Raise ValueError (a user-facing message) for a timestamp outside the window."""
        now = now or datetime.now(UTC)
        if value < now - timedelta(days=self.max_age_days):
            raise ValueError(f"must be at most {self.max_age_days} days in the past")
        if value > now + timedelta(seconds=self.max_ahead_seconds):
            raise ValueError(f"must be at most {self.max_ahead_seconds} seconds in the future")


def is_unicode(value: str) -> bool:
    """False for text with a lone surrogate, which no database (or UTF-8) can store."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What a JSON object's size is measured as (made once; parsed JSON holds no cycle).
_SIZED = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False)
# A NUL as JSON writes it (`\u0000`), not a string's own backslash before `u0000`.
_ENCODED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _has_nul(encoded: str) -> bool:
    """Whether JSON text written by `_SIZED` holds a NUL. The regex, tried at every
    position, costs about 100 µs on 2 KB (every event's metadata); it runs only on text
    that holds an escaped NUL's six characters at all, which a substring search finds in
    about 1 µs."""
    return "\x00" in encoded or ("\\u0000" in encoded and bool(_ENCODED_NUL.search(encoded)))


# A service's or an environment's name is stored in at most this many characters.
NAME_MAX_LENGTH = 200


def name_of(value: object) -> str | None:
    """`value` as a service or environment name is kept: a string without the spaces or
    line breaks around it, at most `NAME_MAX_LENGTH` characters; None where there is none
    (left blank, it is left out: a pipeline's unset `"service": "${SERVICE}"` stored a
    service named "")."""
    if not isinstance(value, str):
        return None
    return value.strip()[:NAME_MAX_LENGTH] or None


def text_problem(value: Any) -> str | None:
    """Why a JSON value cannot be stored as it is (a NUL, which PostgreSQL refuses and
    SQLite would keep, or a lone surrogate, anywhere in its strings or keys), or None."""
    try:
        encoded = _SIZED.encode(value)
    except (TypeError, ValueError, RecursionError):
        return "must be valid JSON"
    if _has_nul(encoded):
        return "must not contain NUL characters"
    if not is_unicode(encoded):
        return "must be valid Unicode text (no lone surrogates)"
    return None


class Checker:
    """Reads fields from one raw object, recording a FieldError for each bad one."""

    def __init__(self, raw: Mapping[str, Any], *, prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def error(self, name: str, message: str) -> None:
        self.errors.append(FieldError(self.prefix + name, message))

    def nested(self, name: str, *, required: bool) -> Checker | None:
        """A checker for a nested object; its errors land in this one's list."""
        value = self.raw.get(name)
        if value is None:
            if required:
                self.error(name, "is required")
            return None
        if not isinstance(value, Mapping):
            self.error(name, "must be an object")
            return None
        child = Checker(value, prefix=f"{self.prefix}{name}.")
        child.errors = self.errors
        return child

    def text(self, name: str, *, required: bool = False, max_length: int = 200) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.error(name, "is required")
            return None
        if not isinstance(value, str):
            self.error(name, "must be a string")
            return None
        if "\x00" in value:
            self.error(name, "must not contain NUL characters")
            return None
        if not is_unicode(value):
            self.error(name, "must be valid Unicode text (no lone surrogates)")
            return None
        if required and not value.strip():
            self.error(name, "must not be empty")
            return None
        if len(value) > max_length:
            self.error(name, f"must be at most {max_length} characters")
            return None
        return value

    def timestamp(
        self, name: str, *, required: bool = False, window: TimeWindow | None = None
    ) -> datetime | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.error(name, "is required")
            return None
        try:
            parsed = parse_timestamp(value)
            if window is not None:
                window.check(parsed)
            return parsed
        except ValueError as exc:
            self.error(name, str(exc))
            return None

    def choice(self, name: str, choices: Iterable[str], *, required: bool = False) -> str | None:
        valid = list(choices)
        value = self.raw.get(name)
        if value is None:
            if required:
                self.error(name, f"is required; one of {', '.join(valid)}")
            return None
        if not isinstance(value, str) or value not in valid:
            self.error(name, f"must be one of {', '.join(valid)}; got {_show(value)}")
            return None
        return value

    def string_list(self, name: str, *, max_items: int, max_length: int) -> list[str]:
        """Names (labels): each kept without the spaces around it, and once."""
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.error(name, "must be a list of strings")
            return []
        if len(value) > max_items:
            self.error(name, f"must have at most {max_items} items")
            return []
        for item in value:
            if "\x00" in item:
                self.error(name, "each item must not contain NUL characters")
                return []
            if not is_unicode(item):
                self.error(name, "each item must be valid Unicode text (no lone surrogates)")
                return []
        names = [item.strip() for item in value]
        if not all(0 < len(item) <= max_length for item in names):
            self.error(name, f"each item must be 1 to {max_length} characters")
            return []
        return list(dict.fromkeys(names))  # each once, in the order first given

    def json_object(self, name: str, *, max_bytes: int | None) -> dict[str, Any]:
        """A JSON object (absent: empty) that a store can keep: encodable, no NUL, and at
        most `max_bytes` as JSON. `max_bytes=None` checks the type alone, for a part of an
        object checked whole already (nothing inside it could fail the rest)."""
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(name, "must be a JSON object")
            return {}
        if max_bytes is None:
            return dict(value)
        try:
            encoded = _SIZED.encode(value)
            size = len(encoded.encode("utf-8"))
        except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
            self.error(name, "must be valid JSON")
            return {}
        if _has_nul(encoded):
            self.error(name, "must not contain NUL characters")
            return {}
        if size > max_bytes:
            self.error(name, f"must be at most {max_bytes} bytes as JSON")
            return {}
        return dict(value)

    def links(self, name: str, *, max_items: int) -> list[dict[str, Any]]:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            self.error(name, f"must be a list of at most {max_items} links")
            return []
        links: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            link = (
                Checker(item, prefix=f"{self.prefix}{name}[{index}].")
                if isinstance(item, Mapping)
                else None
            )
            if link is None:
                self.error(f"{name}[{index}]", "must be an object with href and text")
                continue
            link.errors = self.errors
            href = link.text("href", required=True, max_length=2048)
            text = link.text("text", max_length=1024)
            if href is not None:
                links.append({"href": href, "text": text} if text else {"href": href})
        return links

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidInput(list(self.errors))


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
