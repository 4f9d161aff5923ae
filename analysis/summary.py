"""A compact terminal summary of a set of run records (printed at the end of a sweep).

Same grouping and numbers as ``selbench-report``'s comparison table, fewer columns: the final
metric and the metric at the best validation step side by side, labelled."""
from __future__ import annotations

import sys

import pandas as pd

from selbench.analysis.comparison import comparison
from selbench.analysis.labels import add_labels
from selbench.analysis.metrics import best_val_label, final_label
from selbench.analysis.records import read_records, record_row


def load_records(paths) -> list[dict]:
    """Every readable, well-formed record under ``paths``; an unreadable or malformed one is named on
    stderr (with what is wrong), not skipped silently."""
    good, errors = read_records(paths)
    for f, why in errors:
        print(f"selbench: warning: skipped record {f}: {why}", file=sys.stderr)
    out = []
    for f, rec in good:
        rec.setdefault("_record_path", str(f))
        out.append(rec)
    return out


#: the comparison table's columns the terminal summary keeps (same text, same numbers)
SUMMARY_COLUMNS = ("setting", "method", "budget", "seeds", "{final}", "{best_val}", "balanced acc. (%)",
                   "Δ vs erm (paired, 95% CI)", "rank", "Δ vs random", "eff. budget", "examples/step ×erm",
                   "examples ×erm", "time ×erm")


def summary_table(records: list[dict], metric: str = "test_accuracy") -> pd.DataFrame:
    """setting × method × budget: seeds (+ failed), mean ± std over seeds at the end of training and at
    the best validation step, paired Δ vs erm (95% CI), rank, Δ vs random, effective budget, training
    examples per step and in total ×erm, charged time ×erm — the comparison table's own cells
    (``selbench.analysis.comparison.comparison``: budget "—" and no Δ for methods that ignore the budget,
    Δ at the effective fraction for soft ones)."""
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame([record_row(r, r.get("_record_path")) for r in records])
    add_labels(df)
    text = comparison(df, metric).text
    cols = [c.format(final=final_label(metric), best_val=best_val_label(metric)) for c in SUMMARY_COLUMNS]
    return text[[c for c in cols if c in text.columns]]
