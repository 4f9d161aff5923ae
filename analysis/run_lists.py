"""Tables that list runs one by one: failed runs, every warning a run recorded, and the
record files that could not be read."""
from __future__ import annotations

import json

import pandas as pd

from selbench.analysis.budget_rules import budget_text, budget_use
from selbench.analysis.tables import NA, Table


def _run_budget(r: pd.Series) -> str:
    """A run's budget cell, as the comparison table shows its group ("—" if the method ignores it)."""
    use = r.get("budget_use")
    b = r.get("budget_group", r.get("budget")) if budget_use(use) != "none" else None
    return budget_text(b, use)


def failures(df: pd.DataFrame) -> Table:
    """One row per failed run (the budget "—" for a method that ignores it, as in the comparison)."""
    f = df[df["status"] != "ok"] if len(df) else df
    cols = ["setting", "method", "budget", "seed", "reason", "failed_step", "run_dir"]
    data = f[[c for c in cols if c in f.columns]].reset_index(drop=True) if len(f) else pd.DataFrame(columns=cols)
    text = data.astype(object).where(data.notna(), NA).astype(str)
    if len(f) and "budget" in data.columns:
        data["budget"] = [b if budget_use(u) != "none" else float("nan")
                          for b, u in zip(f["budget"], f.get("budget_use", pd.Series(None, index=f.index)))]
        text["budget"] = [_run_budget(r) for _, r in f.iterrows()]
    return Table("failures", "Failed runs", data, text)


def corrupt(errors: list[tuple[str, str]]) -> Table:
    data = pd.DataFrame(errors, columns=["record", "problem"])
    return Table("unreadable", "Unreadable or malformed record files", data, data.astype(str))


def warnings(df: pd.DataFrame) -> Table:
    """One row per warning a run recorded (``record["warnings"]``), failed runs included."""
    cols = ["setting", "method", "budget", "seed", "status", "warning", "run_dir"]
    rows, budgets = [], []
    if len(df) and "warnings" in df.columns:
        for _, r in df.iterrows():
            for w in _warning_list(r.get("warnings")):
                rows.append({"setting": r.get("setting"), "method": r.get("method_label", r.get("method")),
                             "budget": r.get("budget") if budget_use(r.get("budget_use")) != "none" else None,
                             "seed": r.get("seed"), "status": r.get("status"), "warning": w,
                             "run_dir": r.get("run_dir")})
                budgets.append(_run_budget(r))
    data = pd.DataFrame(rows, columns=cols)
    text = data.astype(object).where(data.notna(), NA).astype(str)
    text["budget"] = budgets
    return Table("warnings", "Runs with warnings", data, text)


def _warning_list(v) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(w) for w in v]
    if isinstance(v, str) and v:
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            return [v]
        return [str(w) for w in parsed] if isinstance(parsed, list) else [str(parsed)]
    return []
