"""A compact terminal summary of a set of run records (printed at the end of a sweep).

Same grouping and numbers as ``selbench-report``'s comparison table, fewer columns."""
from __future__ import annotations

import math
import sys

import pandas as pd

from selbench.analysis.records import add_labels, find_record_files, read_record_file, record_row


def load_records(paths) -> list[dict]:
    """Every readable record under ``paths``; an unreadable one is named on stderr, not skipped silently."""
    out = []
    for f in find_record_files(paths):
        try:
            rec = read_record_file(f)
        except ValueError as e:
            print(f"selbench: warning: unreadable record {f}: {e}", file=sys.stderr)
            continue
        rec.setdefault("_record_path", str(f))
        out.append(rec)
    return out


def summary_table(records: list[dict], metric: str = "test_accuracy") -> pd.DataFrame:
    """setting × method × budget: seeds, failed, mean ± std (%, over seeds), Δ vs random, time ×erm."""
    from selbench.analysis.tables import comparison

    if not records:
        return pd.DataFrame()
    df = pd.DataFrame([record_row(r, r.get("_record_path")) for r in records])
    add_labels(df)
    d = comparison(df, metric).data

    def pm(m, s):
        if m is None or math.isnan(m):
            return "–"
        return f"{m:.2f}" if math.isnan(s) else f"{m:.2f} ± {s:.2f}"

    out = pd.DataFrame({
        "setting": d["setting"], "method": d["method"], "budget": d["budget"], "seeds": d["seeds"],
        "failed": d["failed"],
        "acc %": [pm(m, s) for m, s in zip(d[f"{metric}_mean"], d[f"{metric}_std"])],
        "bal acc %": [pm(m, s) for m, s in zip(d["test_balanced_accuracy_mean"], d["test_balanced_accuracy_std"])],
        "Δ random": d["delta_vs_random"].map(lambda x: "–" if math.isnan(x) else f"{x:+.2f}"),
        "time ×erm": d["time_x_erm"].map(lambda x: "–" if math.isnan(x) else f"{x:.2f}"),
    })
    return out
