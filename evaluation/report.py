"""The evaluation report: ``report.json`` (one record per setting), ``report.html`` (tables, sample
grids, plots; self-contained, images embedded) and ``pareto.png``.

A record holds the setting (sampler, steps, guidance, hires, schedule, nfe), its costs, the
metrics (named with the model that produced them), their definitions, the judge's validity and
the list of judge metrics that are unreliable because the judge failed its validity threshold.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from evaluation.api import ScoreResult
from evaluation.grids import SampleGrid, grid_png
from evaluation.judge import JUDGE
from evaluation.plots import curve_label, headline, metric_curves, pareto

SETTING_KEYS = ("sampler", "steps", "guidance", "hires", "schedule", "nfe")


def make_record(setting: Mapping[str, object], costs: Mapping[str, float], result: ScoreResult) -> dict[str, object]:
    """One report row; ``setting`` must name every key of SETTING_KEYS."""
    missing = [key for key in SETTING_KEYS if key not in setting]
    if missing:
        raise ValueError(f"report setting lacks {missing}; a record needs {list(SETTING_KEYS)}")
    return {
        **setting,
        "costs": dict(costs),
        "metrics": dict(result.metrics),
        "params": result.params,
        "judge_validity": result.validity.as_dict() if result.validity is not None else None,
        "unreliable_metrics": result.unreliable,
        "warnings": list(result.warnings),
    }


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_costs(costs: Mapping[str, object]) -> str:
    """``{"generation_seconds": 12.345678, "nfe": 20}`` -> ``generation 12.3 s, nfe 20``: numbers to
    three significant digits, seconds with their unit."""
    parts = []
    for name, value in costs.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"
        else:
            shown = "n/a" if value is None else str(value)
        label = name.replace("_", " ")
        if label.endswith(" seconds"):
            parts.append(f"{label[: -len(' seconds')]} {shown} s")
        else:
            parts.append(f"{label} {shown}")
    return ", ".join(parts)


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _cell(metrics: Mapping[str, float], name: str, unreliable: bool) -> str:
    value = metrics.get(name)
    if value is None:
        return "<td></td>"
    text = f"{value:.4g}"
    # Undefined companions (NaN, None once in JSON; e.g. an SE over a single prompt) are left out.
    low, high, se = (metrics.get(f"{name}/{part}") for part in ("ci_low", "ci_high", "se"))
    if low is not None and high is not None:
        text += f" [{low:.4g}, {high:.4g}]"
    elif se is not None and math.isfinite(se):
        text += f" ± {se:.2g}"
    mark = ' class="unreliable" title="judge failed its validity check"' if unreliable else ""
    return f"<td{mark}>{html.escape(text)}{' †' if unreliable else ''}</td>"


def _metrics_table(records: Sequence[Mapping]) -> str:
    names = sorted({n for r in records for n in r["metrics"] if not n.endswith(("/ci_low", "/ci_high", "/se"))})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in (*SETTING_KEYS, *names))
    rows = []
    for r in records:
        cells = "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in SETTING_KEYS)
        cells += "".join(_cell(r["metrics"], n, n in r["unreliable_metrics"]) for n in names)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _counts_table(records: Sequence[Mapping]) -> str:
    """Sample counts and bootstrap settings of every FID/KID, next to costs."""
    rows = []
    for r in records:
        for name, p in r["params"].items():
            if name.startswith(("fid/", "kid/")):
                b = p["bootstrap"]
                rows.append(
                    f"<tr><td>{html.escape(curve_label(r))} w={html.escape(str(r['guidance']))}</td><td>{html.escape(name)}</td>"
                    f"<td>{p['n_generated']}</td><td>{p['n_reference']}</td><td>{b['replicates']} (seed {b['seed']}, "
                    f"level {b['level']})</td><td>{html.escape(format_costs(r['costs']))}</td></tr>"
                )
    head = "<tr><th>setting</th><th>metric</th><th>n generated</th><th>n reference</th><th>bootstrap</th><th>costs</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _validity_section(records: Sequence[Mapping]) -> str:
    validity = next((r["judge_validity"] for r in records if r["judge_validity"]), None)
    if validity is None:
        return "<p>No judge validity was measured (no judge, or reference images without captions).</p>"
    parts = []
    if not validity["reliable"]:
        parts.append('<p class="unreliable">The judge fails a validity check below: every judge metric (marked †) '
                     "is unreliable.</p>")
    if validity["accuracy"]:
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{v:.3f}</td><td>{'ok' if v >= validity['threshold'] else 'BELOW'}</td></tr>"
            for a, v in validity["accuracy"].items()
        )
        parts.append(
            f"<p>Zero-shot attribute accuracy of the judge on {validity['n_images']} real images (threshold "
            f"{validity['threshold']}):</p><table><tr><th>attribute</th><th>accuracy</th><th></th></tr>{rows}</table>"
        )
    checked = any(n.startswith("judge_agreement/") for r in records for n in r["metrics"])
    parts.append(
        "<p>Generated images: the judge's verdicts are checked against an exact rule reader "
        "(<code>judge_agreement/*</code> below; an agreement under the threshold marks that judge metric †).</p>"
        if checked else
        "<p>Generated images: no rule reader exists for this data, so the judge's verdicts on generated images "
        "are unchecked; the validity above is measured on real images only.</p>"
    )
    warned = [(r, w) for r in records for w in r.get("warnings", ())]
    if warned:
        items = "".join(f"<li>{html.escape(curve_label(r))} w={html.escape(str(r['guidance']))}: {html.escape(w)}</li>"
                        for r, w in warned)
        parts.append(f'<ul class="unreliable">{items}</ul>')
    retrieval = validity.get("retrieval")
    if retrieval:
        verdict = "ok" if retrieval["reliable"] else "BELOW"
        parts.append(
            f"<p>Caption retrieval of the judge on {retrieval['n_images']} real images: its own caption ranked first "
            f"among {retrieval['candidates']} in {retrieval['top1']:.3f} of them (chance {retrieval['chance']:.3f}, "
            f"threshold {retrieval['threshold']}): {verdict}.</p>"
        )
    return "".join(parts)


STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}.unreliable{color:#b00}img{max-width:100%}"
)


def write_report(
    records: Sequence[Mapping[str, object]],
    out_dir: str | Path,
    grids: Mapping[str, SampleGrid | torch.Tensor] | None = None,
    title: str = "Evaluation report",
) -> dict[str, Path]:
    """Write report.json, report.html and, for records with a guidance scale, pareto.png and
    metrics.png; return their paths."""
    if not records:
        raise ValueError("write_report needs at least one record")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [_jsonable(r) for r in records]
    paths = {"json": out / "report.json", "html": out / "report.html"}
    paths["json"].write_text(json.dumps({"title": title, "records": records}, indent=2))
    names = sorted({n for r in records for n in r["metrics"]})
    fid = headline(records, "fid", prefer=("fid/inception", "fid/judge"))
    clip = headline(records, "clip_score", prefer=[n for n in names if n.startswith("clip_score/") and JUDGE not in n])
    attr = next((n for n in names if n.endswith("/mean")), None)
    # Among faithful images where measured: unfaithful images inflate diversity at low guidance.
    faithful = f"diversity/{JUDGE}/faithful"
    diversity = faithful if faithful in names else headline(records, "diversity", prefer=(f"diversity/{JUDGE}",))
    figures = []
    if any(r.get("guidance") is not None for r in records):  # images made elsewhere have no guidance axis
        if fid and clip:
            unreliable = any(m in r["unreliable_metrics"] for r in records for m in (fid, clip))
            paths["pareto"] = pareto(records, out / "pareto.png", fid, clip, " (judge unreliable)" if unreliable else "")
            figures.append(_img(paths["pareto"].read_bytes(), "pareto"))
        curves = [m for m in (fid, clip, attr, diversity) if m]
        if curves:
            paths["metrics"] = metric_curves(records, out / "metrics.png", curves)
            figures.append(_img(paths["metrics"].read_bytes(), "metrics vs guidance"))
    grid_html = "".join(
        f"<h3>{html.escape(label)}</h3>{_img(grid_png(images), label)}" for label, images in (grids or {}).items()
    )
    paths["html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<h2>Judge validity</h2>{_validity_section(records)}"
        "<h2>Metrics</h2><p>FID/KID: value [bootstrap interval]; CLIP-score: mean ± standard error; "
        f"† marks unreliable judge metrics.</p>{_metrics_table(records)}"
        f"<h2>Sample counts and costs</h2>{_counts_table(records)}"
        f"<h2>Plots</h2>{''.join(figures)}<h2>Samples</h2>{grid_html}</body></html>"
    )
    return paths
