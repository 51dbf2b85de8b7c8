"""The nesting limit of request bodies (`OPSGRAPH_MAX_JSON_DEPTH`) reads the depth from the
text; it must agree with the parsed value's depth for every JSON text whose keys are unique
(of a key given twice the text's deeper value counts, though the parse keeps the last)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rest_compat.common import BadJson, json_depth, strict_json

# Strings full of what could be mistaken for structure: brackets, quotes, backslashes.
TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\\\ab\u00e9\u2028\U0001f600'), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TRICKY, children, max_size=4),
    max_leaves=40,
)


def walked_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(walked_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(walked_depth, value), default=0)
    return 0


@given(VALUES, st.booleans(), st.sampled_from([None, 1]))
def test_the_depth_read_from_the_text_is_the_values(value: Any, ascii: bool, indent: Any) -> None:
    text = json.dumps(value, ensure_ascii=ascii, indent=indent)
    assert json_depth(text) == walked_depth(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('"[[[["', 0),
        ('{"a\\"[": ["]", {"\\\\": [1]}]}', 4),
        ("[" + ",".join(["{}"] * 10_000) + "]", 2),
    ],
)
def test_brackets_in_strings_do_not_count(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_a_body_one_level_too_deep_is_refused_and_one_at_the_limit_is_not() -> None:
    at_limit = "[" * 8 + "]" * 8
    assert strict_json(at_limit, max_depth=8) == json.loads(at_limit)
    with pytest.raises(BadJson, match="nested deeper than 8 levels"):
        strict_json('{"a": ' + at_limit + ', "b": "]]]]"}', max_depth=8)
