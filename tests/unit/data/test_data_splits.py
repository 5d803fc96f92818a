"""Deterministic split assignment by permutation and by file-name hash."""

from __future__ import annotations

import numpy as np
import pytest

from mjexp.data.splits import SPLITS, hash_split, permutation_split, split_fractions


def test_permutation_split_partitions_with_exact_sizes() -> None:
    fractions = split_fractions(0.2, 0.1, 0.1)
    parts = {s: permutation_split(1000, fractions, seed=1, split=s) for s in SPLITS}
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(1000))
    assert {s: len(p) for s, p in parts.items()} == {"train": 600, "judge": 200, "val": 100, "test": 100}
    assert not np.array_equal(parts["test"], permutation_split(1000, fractions, seed=2, split="test"))


def test_hash_split_is_stable_when_files_are_added() -> None:
    fractions = split_fractions(0.25, 0.25, 0.25)
    names = [f"img_{i}.png" for i in range(400)]
    parts = {s: set(np.array(names)[hash_split(names, fractions, s)]) for s in SPLITS}
    assert set().union(*parts.values()) == set(names) and sum(map(len, parts.values())) == 400
    assert all(60 < len(p) < 140 for p in parts.values())
    more = names + [f"new_{i}.png" for i in range(100)]
    for s in SPLITS:
        assert parts[s] <= set(np.array(more)[hash_split(more, fractions, s)])


@pytest.mark.parametrize("fractions", [(0.5, 0.3, 0.2), (-0.1, 0.1, 0.1), (1.0, 0.0, 0.0)])
def test_fractions_that_leave_no_train_or_are_negative_are_errors(fractions) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_fractions(*fractions)
