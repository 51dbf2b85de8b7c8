"""Identifiers: a short type prefix and a random part, as in `chg_3kq9…`."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Each random byte becomes the character of its low 5 bits: 256 is a multiple of 32, so a
# uniform byte gives a uniform character, and `bytes.translate` maps them all in one call.
_BY_BYTE = (_ALPHABET * (256 // len(_ALPHABET))).encode()


def new_id(prefix: str, length: int = 20) -> str:
    """Return a new random identifier such as `inc_5f2k…` (100 bits by default)."""
    # One byte per character: the same uniform ids as one `secrets.choice` per character,
    # at a tenth of the cost of even the cheapest loop over them (it is on every write).
    return f"{prefix}_{secrets.token_bytes(length).translate(_BY_BYTE).decode()}"


# The length of every id column (the ids themselves are shorter: a prefix and 20 characters).
ID_COLUMN_LENGTH = 40


def could_be_stored(value: str, max_length: int = ID_COLUMN_LENGTH) -> bool:
    """Whether a column of `max_length` could hold `value`: a look-up of anything else
    finds nothing (without asking the database, which refuses such a value instead)."""
    return len(value) <= max_length and "\x00" not in value
