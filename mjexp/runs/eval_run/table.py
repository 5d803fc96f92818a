"""The evaluation's console table and its paired comparisons, readable in a terminal or a log."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from evaluation.metrics import paired_lines

TABLE_METRICS = 6  # metric columns per console table


def print_table(records: list[dict[str, Any]]) -> None:
    names = sorted({k for r in records for k in r["metrics"] if not k.startswith("cost/") and k.count("/") <= 2
                    and not k.endswith(("/se", "/std", "/ci_low", "/ci_high"))})
    unreliable = any(r.get("unreliable_metrics") for r in records)
    # A few metrics per table, so that no column is cut short: rows must stay tell-apart-able.
    for start in range(0, len(names), TABLE_METRICS):
        part = names[start : start + TABLE_METRICS]
        table = Table(title="Evaluation" + (f" ({start // TABLE_METRICS + 1})" if len(names) > TABLE_METRICS else ""))
        table.add_column("setting", no_wrap=True)
        table.add_column("nfe", justify="right")
        for name in part:
            table.add_column(name, justify="right", no_wrap=True)
        for r in records:
            cells = [f"{r['metrics'][n]:.4g}" + (" †" if n in r.get("unreliable_metrics", ()) else "")
                     if n in r["metrics"] else "" for n in part]
            table.add_row(r["label"], str(r["nfe"]), *cells)
        console = Console(width=10_000)  # never truncate; the table is as wide as its content
        console.print(table, width=console.measure(table).maximum)
    if unreliable:
        print("  † the judge failed a validity check (on real images, or against the rule reader on generated "
              "ones): these judge metrics are not to be trusted")
    for r in records:
        for warning in r.get("warnings", ()):
            print(f"  warning: {r['label']}: {warning}")
    for r in records:
        for line in paired_lines(r):
            print(line)
