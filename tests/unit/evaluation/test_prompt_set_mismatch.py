"""Evaluating a model on prompts of another caption form warns, naming both forms."""

from __future__ import annotations

import warnings

import pytest
from omegaconf import OmegaConf

from mjexp.data.shapes import ShapesSpec
from mjexp.evaluate import load_prompts


class _Data:
    def __init__(self, two_objects: bool) -> None:
        self.schema = ShapesSpec(two_objects=two_objects).schema()


def _cfg(prompt_set: str):
    return OmegaConf.create({"eval": {"prompt_set": prompt_set, "max_prompts": 0, "reference_split": "test"}})


def test_single_object_prompts_for_a_two_object_model_warn() -> None:
    with pytest.warns(UserWarning, match="shapes_single_v1 has captions like .* the model never saw"):
        load_prompts(_cfg("shapes_single_v1"), _Data(two_objects=True))


@pytest.mark.parametrize(("prompt_set", "two_objects"), [("shapes_two_object_v1", True), ("shapes_single_v1", False),
                                                         ("shapes_heldout_v1", False)])
def test_matching_caption_forms_are_quiet(prompt_set: str, two_objects: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_prompts(_cfg(prompt_set), _Data(two_objects)).prompts) > 0
