"""The labels that group runs for the tables, added to the runs DataFrame (``analysis.records``).

* ``setting`` — ``<dataset>-<scenario>``, plus the config keys (outside ``method``,
  ``seed`` and ``budget``) that differ between runs of that dataset-scenario, e.g.
  ``digits-sym_noise [scenario.noise.rate=0.8]``, so runs that are not repeats of
  one experiment are never averaged together;
* ``method_label`` — the method name plus the ``method.*`` keys that differ between
  runs of that method in the same setting (a hyperparameter sweep becomes rows);
* ``budget_group`` — the budget the tables group and rank a run at: ``budget`` for a
  method that uses it (hard or soft), empty (NaN, shown "—") for one that ignores it, so
  ``erm`` swept at β = 0.2 is never shown as "erm at 0.2".
"""
from __future__ import annotations

import math

import pandas as pd

from selbench.core.records import NON_SEMANTIC_KEYS

#: config keys that never distinguish settings (bookkeeping, or the sweep axes themselves)
IGNORED_CFG = ("cfg.seed", *(f"cfg.{k}" for k in NON_SEMANTIC_KEYS))
IGNORED_CFG_PREFIXES = ("cfg.method.", "cfg.budget.", *(f"cfg.{k}." for k in NON_SEMANTIC_KEYS))


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _varying(df: pd.DataFrame, cols: list[str]) -> list[str]:
    out = []
    for c in cols:
        vals = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v))
        if vals.nunique(dropna=False) > 1:
            out.append(c)
    return out


def add_labels(df: pd.DataFrame) -> None:
    """Add ``setting`` and ``method_label`` (in place); see the module docstring."""
    cfg_cols = [c for c in df.columns if c.startswith("cfg.")]
    setting_cols = [c for c in cfg_cols if c not in IGNORED_CFG and not c.startswith(IGNORED_CFG_PREFIXES)]
    method_cols = [c for c in cfg_cols if c.startswith("cfg.method.") and c != "cfg.method.name"]
    base = df["dataset"].astype(str) + "-" + df["scenario"].astype(str)
    df["setting"] = base
    for name, idx in base.groupby(base).groups.items():
        sub = df.loc[idx]
        keys = _varying(sub, setting_cols)
        if keys:
            df.loc[idx, "setting"] = [
                f"{name} [" + ", ".join(f"{k[4:]}={_fmt_value(sub.at[i, k])}" for k in keys) + "]" for i in idx]
    add_budget_group(df)
    df["method_label"] = df["method"].astype(str)
    for (_, m), idx in df.groupby(["setting", "method"]).groups.items():
        sub = df.loc[idx]
        keys = _varying(sub, method_cols)
        if keys:
            df.loc[idx, "method_label"] = [
                f"{m} (" + ", ".join(f"{k[len('cfg.method.'):]}={_fmt_value(sub.at[i, k])}" for k in keys) + ")"
                for i in idx]


def add_budget_group(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``budget_group`` (in place; see the module docstring) and return ``df``."""
    use = df["budget_use"] if "budget_use" in df.columns else pd.Series(None, index=df.index, dtype=object)
    budget = pd.to_numeric(df["budget"], errors="coerce") if "budget" in df.columns else \
        pd.Series(float("nan"), index=df.index)
    df["budget_group"] = budget.where(use.astype(object) != "none", float("nan"))
    return df
