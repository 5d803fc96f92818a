"""Which prompts an evaluation uses: a set in another caption form than the model's warns, naming both
forms; ``auto`` picks the set in the model's form, else the data's own captions."""

from __future__ import annotations

import warnings

import pytest
from omegaconf import OmegaConf

from mjexp.runs.components import build_datamodule
from mjexp.data.shapes import ShapesSpec
from mjexp.runs.eval_run.prompts import auto_prompt_set, load_prompts


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


@pytest.mark.parametrize(("data", "expected"), [
    ({"name": "shapes"}, "shapes_single_v1"),
    ({"name": "shapes", "two_objects": True}, "shapes_two_object_v1"),
    ({"name": "digits"}, "digits_v1"),
    ({"name": "shapes", "colors": ["red", "blue"]}, "data"),  # the sets ask for colours it never saw
])
def test_auto_picks_the_set_in_the_models_caption_form_and_vocabulary(data: dict, expected: str) -> None:
    assert auto_prompt_set(build_datamodule(OmegaConf.create(data)).schema) == expected


def test_auto_without_attributes_uses_the_data_captions_and_a_named_set_is_refused() -> None:
    class Folder:  # an image folder: captions, no attribute schema
        schema = None

        def dataset(self, split: str) -> list[dict]:
            return [{"text": f"photo {i}"} for i in range(5)]

    assert load_prompts(_cfg("auto"), Folder()) == ([f"photo {i}" for i in range(5)], None)
    with pytest.raises(ValueError, match="labels its prompts with attributes .* use eval.prompt_set=data"):
        load_prompts(_cfg("shapes_single_v1"), Folder())


def test_data_prompts_carry_attributes_only_where_the_captions_state_them() -> None:
    """A clean split's captions are its attributes' renderings, so attribute accuracy can be
    measured on them; a split with caption noise (train) says other attributes than the images hold."""
    datamodule = build_datamodule(OmegaConf.create({"name": "shapes", "caption_noise": 0.5, "colors": ["red", "blue"]}))
    prompts = load_prompts(_cfg("data"), datamodule)
    assert prompts.params == {"set": "data", "version": "test split", "n": 1000}
    assert all(datamodule.schema.caption(a) == p for p, a in zip(prompts.prompts, prompts.attrs))
    train = OmegaConf.merge(_cfg("data"), {"eval": {"reference_split": "train", "max_prompts": 200}})
    captions, attrs = load_prompts(train, datamodule)
    assert len(captions) == 200 and attrs is None
