"""Attribute accuracy split into held-out and seen combinations (compositional generalisation)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.attributes import holdout_accuracy, matches_any

HOLDOUT = [{"color": "red", "shape": "circle"}, {"color": "blue", "shape": "square"}]
ATTRS = [
    {"color": "red", "shape": "circle", "position": "top left"},      # held out
    {"color": "red", "shape": "square", "position": "top left"},      # seen
    {"color": "blue", "shape": "square", "position": "bottom right"},  # held out
    {"color": "green", "shape": "circle", "position": "top right"},   # seen
]


def test_a_row_matches_when_every_key_of_one_entry_agrees() -> None:
    assert [matches_any(row, HOLDOUT) for row in ATTRS] == [True, False, True, False]
    assert matches_any({"color": "red"}, [{"color": "red", "shape": "circle"}]) is False
    assert matches_any(ATTRS[0], []) is False


def test_heldout_and_seen_accuracies_are_means_over_their_rows() -> None:
    correct = {"color": np.array([1, 1, 0, 1], bool), "shape": np.array([0, 1, 0, 1], bool)}
    out = holdout_accuracy(correct, ATTRS, HOLDOUT, "attr_acc/judge")
    assert out["attr_acc/judge/heldout/color"] == pytest.approx(0.5)
    assert out["attr_acc/judge/heldout/shape"] == pytest.approx(0.0)
    assert out["attr_acc/judge/heldout/mean"] == pytest.approx(0.25)
    assert out["attr_acc/judge/seen/mean"] == pytest.approx(1.0)
    assert out["attr_acc/judge/heldout/n_images"] == 2 and out["attr_acc/judge/seen/n_images"] == 2


def test_an_empty_subset_is_left_out() -> None:
    correct = {"color": np.array([1, 0, 1, 1], bool)}
    out = holdout_accuracy(correct, ATTRS, [{"color": "purple"}], "attr_acc/judge")
    assert not any("heldout" in k for k in out) and out["attr_acc/judge/seen/color"] == pytest.approx(0.75)
