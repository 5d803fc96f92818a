"""Caption schemas: templates, vocabularies and the errors a typo produces."""

from __future__ import annotations

import pytest

from mjexp.data.captions import CaptionSchema
from mjexp.data.shapes import ShapesSpec


def test_caption_and_combinations() -> None:
    schema = CaptionSchema("a {color} {shape}", {"color": ("red", "blue"), "shape": ("circle",)})
    assert schema.caption({"color": "blue", "shape": "circle"}) == "a blue circle"
    assert list(schema.combinations()) == [{"color": "red", "shape": "circle"}, {"color": "blue", "shape": "circle"}]


@pytest.mark.parametrize(
    "attrs, message",
    [({"color": "green", "shape": "circle"}, "not in the vocabulary"), ({"color": "red"}, "needs attributes")],
)
def test_caption_rejects_unknown_values_and_missing_keys(attrs, message) -> None:
    schema = CaptionSchema("a {color} {shape}", {"color": ("red",), "shape": ("circle",)})
    with pytest.raises(ValueError, match=message):
        schema.caption(attrs)


def test_template_fields_must_match_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="uses fields"):
        CaptionSchema("a {colour}", {"color": ("red",)})
    with pytest.raises(ValueError, match="distinct"):
        CaptionSchema("a {color}", {"color": ("red", "red")})


def test_shapes_templates() -> None:
    assert ShapesSpec().schema().template == "a {color} {shape} in the {position}"
    assert ShapesSpec(with_size=True).schema().caption(
        {"size": "small", "color": "red", "shape": "triangle", "position": "top left"}
    ) == "a small red triangle in the top left"
    two = ShapesSpec(two_objects=True).schema()
    attrs = {"color_1": "red", "shape_1": "circle", "position_1": "top left",
             "color_2": "blue", "shape_2": "square", "position_2": "bottom right"}  # fmt: skip
    assert two.caption(attrs) == "a red circle in the top left and a blue square in the bottom right"
