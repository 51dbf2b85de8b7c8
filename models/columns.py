"""Column kinds shared by the models."""

from __future__ import annotations

import functools
import json
from typing import Any

from tortoise import fields

# What a JSON column is written and read with: the standard library's `json`, always.
# Tortoise's own default switches to orjson whenever orjson is importable, and orjson
# refuses to write an integer past 64 bits ("Integer exceeds 64-bit range") and reads one
# as a float (`2**64` came back as 1.8446744073709552e19): a stored `metadata` number would
# be refused or come back changed. These are the functions the migrations were written with.
STORED_JSON_DUMPS = functools.partial(json.dumps, separators=(",", ":"))
STORED_JSON_LOADS = json.loads


def json_field(**kwargs: Any) -> Any:
    """A JSON column (jsonb on PostgreSQL) written and read by the standard library."""
    return fields.JSONField(encoder=STORED_JSON_DUMPS, decoder=STORED_JSON_LOADS, **kwargs)
