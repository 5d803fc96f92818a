"""The quality-per-cost claim check of ``benchmarks.quality``: paired attribute accuracy and FID."""

from __future__ import annotations

import numpy as np
import torch

import pytest

from benchmarks.quality import paired_check, parse_challengers
from evaluation.fid import fid_from_features


def _setting(sampler: str, steps: int, features: torch.Tensor, reference: torch.Tensor) -> dict:
    return {"sampler": sampler, "steps": steps, "label": f"{sampler} {steps}",
            "metrics": {"fid/judge": fid_from_features(features, reference)}}


def _case(challenger_shift: float) -> dict:
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(3000, 4, generator=g, dtype=torch.float64)
    items = torch.randn(1000, 4, generator=g, dtype=torch.float64)
    features = [items + challenger_shift, items + 0.5, items]  # dpmpp_2m 20, ddim 250, ddpm 250 (best FID)
    records = [_setting(s, n, f, reference) for (s, n), f in zip([("dpmpp_2m", 20), ("ddim", 250), ("ddpm", 250)], features)]
    flags = [np.ones(1000), np.ones(1000), np.ones(1000)]
    return paired_check(records, flags, features, reference, replicates=100)


def test_fid_is_compared_with_the_lowest_fid_250_step_setting() -> None:
    result = _case(challenger_shift=0.0)  # image for image the same as ddpm 250
    fid = next(c for c in result["checks"] if c["metric"] == "FID/judge")
    assert fid["best_reference"] == "ddpm 250"
    assert fid["difference"] == 0.0 and fid["passed"] and result["passed"]


def test_a_clearly_worse_challenger_fails_on_fid_though_attributes_tie() -> None:
    result = _case(challenger_shift=0.3)  # FID +0.36; paired SE 2|delta|sqrt(1/n+1/m) = 0.044
    attr, fid = result["checks"]
    assert attr["passed"] and not fid["passed"] and not result["passed"]
    assert fid["difference"] > 5 * fid["standard_error"]
    assert "FAIL" in result["verdict"]


def test_another_challenger_is_checked_the_same_way() -> None:
    g = torch.Generator().manual_seed(1)
    reference = torch.randn(2000, 4, generator=g, dtype=torch.float64)
    items = torch.randn(500, 4, generator=g, dtype=torch.float64)
    settings = [("dpmpp_2m", 20), ("dpmpp_2m_sde", 20), ("ddpm", 250)]
    features = [items + 0.4, items, items]
    records = [_setting(s, n, f, reference) for (s, n), f in zip(settings, features)]
    flags = [np.ones(500)] * 3
    sde = paired_check(records, flags, features, reference, replicates=50, challenger_setting=("dpmpp_2m_sde", 20))
    claim = paired_check(records, flags, features, reference, replicates=50)
    assert sde["passed"] and sde["challenger"] == "dpmpp_2m_sde 20"
    assert not claim["passed"] and claim["challenger"] == "dpmpp_2m 20"
    missing = paired_check(records, flags, challenger_setting=("heun", 20))
    assert missing["verdict"].startswith("not checked: needs heun at 20 steps")


def test_challengers_parse() -> None:
    assert parse_challengers("dpmpp_2m:20,dpmpp_2m_sde:10") == [("dpmpp_2m", 20), ("dpmpp_2m_sde", 10)]
    with pytest.raises(ValueError, match="sampler:steps"):
        parse_challengers("dpmpp_2m")
