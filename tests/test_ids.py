"""Identifiers: a type prefix, then random characters of one alphabet, all used evenly."""

from __future__ import annotations

from collections import Counter

import pytest

from models.ids import _ALPHABET, new_id


@pytest.mark.parametrize("length", [1, 7, 8, 13, 20, 33])
def test_ids_have_their_prefix_length_and_alphabet(length: int) -> None:
    made = [new_id("chg", length) for _ in range(200)]
    for value in made:
        prefix, _, rest = value.partition("_")
        assert prefix == "chg" and len(rest) == length
        assert set(rest) <= set(_ALPHABET)
    if length >= 7:
        assert len(set(made)) == len(made)


def test_every_position_uses_the_whole_alphabet_evenly() -> None:
    """No position is stuck or biased (the last one included): 6,400 ids give each of the
    32 characters about 200 times per position; 120 and 280 lie beyond 5 deviations."""
    ids = [new_id("x")[2:] for _ in range(6400)]
    for position in range(20):
        counts = Counter(value[position] for value in ids)
        assert set(counts) == set(_ALPHABET), position
        assert 120 < min(counts.values()) and max(counts.values()) < 280, (position, counts)
