"""Zero-shot attribute accuracy with an oracle encoder whose answers are known, prompt-set files,
and paired differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.attributes import attribute_accuracy, paired_difference
from evaluation.prompt_sets import CaptionTemplate, load_prompt_set

SINGLE = CaptionTemplate("a {color} {shape}", {"color": ("red", "blue", "green"), "shape": ("circle", "square")})
TWO = CaptionTemplate(
    "a {color_1} {shape_1} and a {color_2} {shape_2}",
    {"color_1": ("red", "blue"), "shape_1": ("circle", "square"), "color_2": ("red", "blue"), "shape_2": ("circle", "square")},
)


class Oracle:
    """Embeds a caption as one-hot words; an image "sees" the words of its attributes."""

    def __init__(self, words: list[str]) -> None:
        self.words = words

    def vector(self, words: list[str]) -> torch.Tensor:
        v = torch.zeros(len(self.words) * 2)
        for position, word in enumerate(words):
            v[self.words.index(word) + len(self.words) * (position % 2)] += 1.0
        return torch.nn.functional.normalize(v, dim=0)

    def texts(self, captions) -> torch.Tensor:
        return torch.stack([self.vector([w for w in c.split() if w in self.words]) for c in captions])


def test_single_object_oracle_is_right_and_wrong_where_expected() -> None:
    oracle = Oracle(["red", "blue", "green", "circle", "square"])
    truth = [{"color": "red", "shape": "circle"}, {"color": "green", "shape": "square"}, {"color": "blue", "shape": "square"}]
    seen = [truth[0], {"color": "blue", "shape": "square"}, truth[2]]  # image 1's colour is misrendered
    images = oracle.texts([SINGLE.render(a) for a in seen])
    result = attribute_accuracy(images, truth, SINGLE, oracle.texts)
    assert result.correct["color"].tolist() == [True, False, True]
    assert result.correct["shape"].tolist() == [True, True, True]
    assert result.metrics("attr_acc/judge") == pytest.approx(
        {"attr_acc/judge/color": 2 / 3, "attr_acc/judge/shape": 1.0, "attr_acc/judge/mean": 5 / 6}
    )


def test_two_object_retrieval_against_swapped_captions() -> None:
    oracle = Oracle(["red", "blue", "circle", "square"])
    truth = [{"color_1": "red", "shape_1": "circle", "color_2": "blue", "shape_2": "square"}] * 2
    seen = [truth[0], {**truth[0], "color_2": "red"}]  # second image gets object 2's colour wrong
    result = attribute_accuracy(oracle.texts([TWO.render(a) for a in seen]), truth, TWO, oracle.texts)
    assert TWO.multi_object and set(result.correct) == {"color", "shape"}
    assert result.correct["color"].tolist() == [True, False]
    assert result.correct["shape"].tolist() == [True, True]


def test_ties_count_as_wrong() -> None:
    constant = lambda captions: torch.ones(len(captions), 4) / 2  # noqa: E731 - a judge that sees nothing
    result = attribute_accuracy(torch.ones(3, 4) / 2, [{"color": "red", "shape": "circle"}] * 3, SINGLE, constant)
    assert result.mean == 0.0


def test_paired_difference_matches_manual_formula() -> None:
    a, b = np.array([1, 1, 0, 1, 0, 1.0]), np.array([1, 0, 0, 0, 0, 1.0])
    mean, se = paired_difference(a, b)
    d = a - b
    assert mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(6))
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(a, b[:3])


def test_prompt_set_files_round_trip(tmp_path: Path) -> None:
    rows = [{"prompt": SINGLE.render(a), "attrs": a} for a in ({"color": "red", "shape": "circle"}, {"color": "blue", "shape": "square"})]
    (tmp_path / "toy_v1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"version": "1", "caption_template": SINGLE.template, "attribute_values": {k: list(v) for k, v in SINGLE.values.items()}}
    (tmp_path / "toy_v1.meta.json").write_text(json.dumps(meta))
    prompt_set = load_prompt_set(tmp_path / "toy_v1.jsonl")
    assert prompt_set.prompts == ("a red circle", "a blue square") and prompt_set.version == "1"
    assert prompt_set.params == {"set": "toy_v1", "version": "1", "n": 2}
    (tmp_path / "toy_v1.meta.json").write_text(json.dumps({"version": "1"}))
    with pytest.raises(ValueError, match="lacks"):
        load_prompt_set(tmp_path / "toy_v1.jsonl")
