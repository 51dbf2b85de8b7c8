"""Input types built by a `from_input` hook (for speed) must equal what Strawberry's own
generic conversion builds from the same coerced value."""

from __future__ import annotations

from typing import Any

from graphql.utilities import coerce_input_value
from strawberry.types.arguments import convert_argument
from strawberry.types.base import get_object_definition

from opsgraph.settings import Settings
from schema import build_schema


def built_both_ways(input_type: type[Any], raw: dict[str, Any]) -> tuple[Any, Any]:
    """(what the hook builds, what Strawberry builds without it) from one raw input."""
    schema = build_schema(Settings())
    definition = get_object_definition(input_type, strict=True)
    value = coerce_input_value(raw, schema._schema.type_map[definition.name])
    registry, config = schema.schema_converter.scalar_registry, schema.config
    built = convert_argument(value, input_type, registry, config)
    hook, definition.from_input = definition.from_input, None
    try:
        generic = convert_argument(value, input_type, registry, config)
    finally:
        definition.from_input = hook
    assert hook is not None, f"{definition.name} has no from_input hook"
    return built, generic
