"""Identifiers: a short type prefix and a random part, as in `chg_3kq9…`."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str, length: int = 20) -> str:
    """Return a new random identifier such as `inc_5f2k…` (100 bits by default)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
