"""A compact terminal summary of a set of run records (printed at the end of a sweep)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def load_records(paths) -> list[dict]:
    out = []
    for p in paths:
        p = Path(p)
        files = [p] if p.name == "record.json" else sorted(p.rglob("record.json"))
        for f in files:
            out.append(json.loads(f.read_text()))
    return out


def summary_table(records: list[dict]) -> pd.DataFrame:
    """method × scenario × budget: mean ± std of test accuracy / balanced accuracy over seeds."""
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        rows.append({
            "scenario": f"{r.get('dataset')}-{r.get('scenario')}", "method": r.get("method"),
            "budget": r.get("budget"), "seed": r.get("seed"), "status": r.get("status"),
            "acc": m.get("test_accuracy"), "bal_acc": m.get("test_balanced_accuracy"),
            "auc_clean": ((r.get("selection") or {}).get("quality") or {}).get("auc_clean_vs_corrupted"),
            "wall_s": (r.get("cost") or {}).get("total_wall_s"),
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    ok = df[df.status == "ok"]
    g = ok.groupby(["scenario", "method", "budget"], dropna=False)
    table = pd.DataFrame({
        "seeds": g.size(),
        "test_acc": g.acc.mean().map("{:.4f}".format) + " ± " + g.acc.std(ddof=0).map("{:.4f}".format),
        "balanced_acc": g.bal_acc.mean().map("{:.4f}".format) + " ± " + g.bal_acc.std(ddof=0).map("{:.4f}".format),
        "wall_s": g.wall_s.mean().round(1),
    })
    failed = df[df.status != "ok"].groupby(["scenario", "method", "budget"], dropna=False).size()
    table["failed"] = failed.reindex(table.index).fillna(0).astype(int)
    return table.reset_index()
