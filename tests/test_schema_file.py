"""The checked-in `schema.graphql` is what the code prints (clients and the UI read it)."""

from __future__ import annotations

from pathlib import Path

from opsgraph.settings import Settings
from schema import build_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_checked_in_schema_matches_the_code() -> None:
    printed = build_schema(Settings()).as_str() + "\n"
    assert SCHEMA_FILE.read_text() == printed, "schema.graphql is stale: run `make schema`"


def test_the_designed_root_fields_exist() -> None:
    text = SCHEMA_FILE.read_text()
    for name in ("timeline(", "viewer:", "recordChange(", "createApiKey(", "createService("):
        assert name in text
