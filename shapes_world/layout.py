"""Where the built-in shapes data puts its objects: quadrants, sizes, jitter, brightness and
background. The data renders scenes from these (mjexp.data.shapes) and the rule reader reads
generated images with them (evaluation.rule_reader), so both agree by construction."""

from __future__ import annotations

import numpy as np

POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
POSITION_CENTERS = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])  # (x, y), y down
SIZES: dict[str, float] = {"small": 0.11, "large": 0.18}  # object radius, fraction of the image side
DEFAULT_RADIUS = 0.18  # when size is not an attribute: ~6 px objects at 16 px
RADIUS_JITTER = 0.08  # relative, uniform in [-, +]
CENTER_JITTER = 0.03  # fraction of the image side, per axis
BRIGHTNESS = (0.8, 1.0)  # object colour scale
BACKGROUND = (10.0, 40.0)  # grey level of the dark background
