"""The long comparison table from the runs DataFrame (``analysis.records``).

:func:`comparison` — one row per setting × budget × method: seeds, mean ± std of
the metric over distinct seeds (sample std, ddof=1), rank, the difference to
``random``, the effective budget, the training examples per step and in total as a
ratio to ``erm``, and the method's own cost (selection + training wall time, peak
memory) as a ratio to ``erm`` in the same setting.  Budget semantics (grouping, ranking,
Δ vs random): ``analysis.budget_rules``.

Beside mean ± std, the *paired* difference to a baseline (``erm`` unless ``baseline=`` says
otherwise): per seed, the row's metric minus the baseline's on the same seed in the same
setting (a seed fixes pool, noise and init for every method), its mean and a percentile
bootstrap 95% CI over the paired seeds (``analysis.paired``).  A baseline that uses the budget
is paired at the row's budget; one that ignores it (``erm``) with every row of the setting.

Beside the final metric, the test metric at the eval step with the best validation objective
(``best_val.<metric>``, chosen on validation only), labelled; "—" for runs without it.  Costs are
the *charged* seconds (``analysis.records``: a cached artifact's compute time is charged to every
run that reads it).  The display text and notes are ``analysis.comparison_text``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from selbench.analysis import paper as paper_mod
from selbench.analysis.budget_rules import GROUP, budget_use, group_use, interpolate_random, with_budget_group
from selbench.analysis.comparison_text import render
from selbench.analysis.metrics import higher_is_better, scale, seed_std
from selbench.analysis.paired import Paired, paired, per_seed
from selbench.analysis.tables import Table

COMPARISON_COLUMNS = [
    "setting", "budget", "budget_use", "method", "seeds", "failed", "{m}_mean", "{m}_std", "{m}_best_val_mean",
    "{m}_best_val_std", "best_val_seeds", "test_balanced_accuracy_mean", "test_balanced_accuracy_std", "rank",
    "rank_in_setting", "delta_vs_random", "random_at", "random_mean", "effective_budget", "train_examples_per_step",
    "examples_per_step_x_erm", "train_examples", "examples_x_erm", "method_wall_s", "time_x_erm", "peak_mb",
    "mem_x_erm", "memory_kind", "warnings", "paper", "paired_baseline", "paired_delta", "paired_lo", "paired_hi",
    "paired_seeds", "unpaired_seeds"]

#: the per-run columns a comparison row averages (over distinct seeds)
AVERAGED = {"_m": "_m", "_bal": "_bal", "_bv": "_bv", "effective_budget": "sel.effective_budget",
            "train_examples_per_step": "compute.train_examples_per_step", "train_examples": "compute.train_examples",
            "method_wall_s": "cost.method_wall_s", "peak_mb": "cost.method_peak_mb"}
#: the row's ratios to erm in the same setting: ratio column → (averaged column, its per-run source)
X_ERM = {"examples_per_step_x_erm": ("train_examples_per_step", "compute.train_examples_per_step"),
         "examples_x_erm": ("train_examples", "compute.train_examples"),
         "time_x_erm": ("method_wall_s", "cost.method_wall_s"), "mem_x_erm": ("peak_mb", "cost.method_peak_mb")}


def comparison(df: pd.DataFrame, metric: str = "test_accuracy", baseline: str = "erm") -> Table:
    """Long table: one row per setting × budget × method (see module docstring and the notes)."""
    cols = [c.format(m=metric) for c in COMPARISON_COLUMNS]
    if df.empty:
        empty = pd.DataFrame(columns=cols)
        return Table("comparison", "Comparison", empty, empty)
    df, ok = runs_with_values(df, metric)
    erm = erm_means(ok)
    data = pd.DataFrame([group_row(key, g, ok, erm, metric, baseline)
                         for key, g in df.groupby(GROUP, dropna=False, sort=True)])
    add_random_reference(data, metric)
    add_ranks(data, metric)
    return render(data, cols, metric, baseline)


def runs_with_values(df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(every run with its budget group, the ok runs with the row values in display units)``:
    ``_m`` the final metric, ``_bv`` the metric at best validation, ``_bal`` balanced accuracy."""
    df = with_budget_group(df)
    ok = df[df["status"] == "ok"].copy()
    sc = scale(metric)
    ok["_m"] = numeric(ok, metric) * sc
    ok["_bv"] = numeric(ok, f"best_val.{metric}") * sc
    ok["_bal"] = numeric(ok, "test_balanced_accuracy") * 100
    return df, ok


def erm_means(ok: pd.DataFrame) -> dict[str, dict]:
    """``{per-run column: {setting: erm's mean}}`` for the ×erm ratios."""
    erm = ok[ok["method"] == "erm"]
    return {c: {s: mean(numeric(g, c)) for s, g in erm.groupby("setting")} for _, c in X_ERM.values()}


def group_row(key: tuple, g: pd.DataFrame, ok: pd.DataFrame, erm: dict, metric: str, baseline: str) -> dict:
    """One row of the table: the runs ``g`` of one setting × budget × method (failed ones counted)."""
    setting, budget, label = key
    good = ok.loc[ok.index.intersection(g.index)]
    per = per_distinct_seed(good, list(AVERAGED.values()))
    v = {k: mean(per[c]) if c in per.columns else float("nan") for k, c in AVERAGED.items()}
    pair = paired_vs(ok, good, setting, budget, label, baseline, metric)
    ratios = {}
    for name, (k, c) in X_ERM.items():
        e = erm[c].get(setting, float("nan"))
        ratios[name] = v[k] / e if e and not math.isnan(e) else float("nan")
    kinds = good["cost.memory_kind"].dropna() if "cost.memory_kind" in good else pd.Series(dtype=object)
    return {
        "setting": setting, "budget": budget, "budget_use": group_use(g), "method": label,
        "seeds": int(len(per)), "failed": int(len(g) - len(good)),
        f"{metric}_mean": v["_m"], f"{metric}_std": seed_std(per["_m"]),
        f"{metric}_best_val_mean": v["_bv"], f"{metric}_best_val_std": seed_std(per["_bv"]),
        "best_val_seeds": int(per["_bv"].notna().sum()),
        "test_balanced_accuracy_mean": v["_bal"], "test_balanced_accuracy_std": seed_std(per["_bal"]),
        "effective_budget": v["effective_budget"], "train_examples_per_step": v["train_examples_per_step"],
        "train_examples": v["train_examples"], "method_wall_s": v["method_wall_s"], "peak_mb": v["peak_mb"],
        **ratios, "memory_kind": kinds.iloc[0] if len(kinds) else None,
        "warnings": int(pd.to_numeric(g["n_warnings"], errors="coerce").fillna(0).sum()) if "n_warnings" in g else 0,
        "paper": "; ".join(r.text for r in paper_mod.refs_for(g.iloc[0]) if r.kind in ("value", "min")),
        "paired_baseline": baseline, "_paired": pair, "paired_delta": pair.mean if pair else float("nan"),
        "paired_lo": pair.lo if pair else float("nan"), "paired_hi": pair.hi if pair else float("nan"),
        "paired_seeds": pair.n if pair else 0, "unpaired_seeds": pair.unpaired if pair else 0}


def numeric(frame: pd.DataFrame, col: str) -> pd.Series:
    if col in frame.columns:
        return pd.to_numeric(frame[col], errors="coerce")
    return pd.Series(np.nan, index=frame.index, dtype=float)


def per_distinct_seed(good: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """One row per distinct seed (runs repeating a seed — e.g. ``erm`` swept over budgets it
    ignores — are the same experiment: they are averaged, not counted as extra seeds)."""
    if good.empty:
        return pd.DataFrame(columns=cols, dtype=float)
    num = pd.DataFrame({c: numeric(good, c) for c in cols})
    if "seed" not in good.columns or not good["seed"].duplicated().any():
        return num.reset_index(drop=True)
    return num.groupby(good["seed"].astype(object).fillna("?").values, sort=True).mean().reset_index(drop=True)


def mean(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.mean()) if len(x) else float("nan")


def paired_vs(ok: pd.DataFrame, good: pd.DataFrame, setting, budget, label, baseline: str,
              metric: str) -> Paired | None:
    """The row's per-seed metric minus ``baseline``'s on the same seeds (None: the baseline row itself,
    or no baseline run in the setting).  A budget-free baseline pairs with every row of the setting;
    one that uses the budget, with rows at its budget (and with budget-free rows when it ran at one
    budget only); a baseline swept over its own options pairs only by its plain name."""
    if label == baseline:
        return None
    base = ok[(ok["setting"] == setting) & (ok["method"] == baseline)]
    if base.empty:
        return None
    if base["budget_group"].notna().any():  # a budget-free row pairs with a baseline run at one budget only
        one = base["budget_group"].nunique() == 1
        base = base[base["budget_group"] == budget] if not pd.isna(budget) else (base if one else base.iloc[0:0])
    if base["method_label"].nunique() > 1:
        base = base[base["method_label"] == baseline]
    if base.empty:
        return None
    sc = scale(metric)
    return paired(per_seed(good, metric, sc), per_seed(base, metric, sc))


def add_random_reference(data: pd.DataFrame, metric: str) -> None:
    """``random_at``, ``random_mean`` and ``delta_vs_random`` (in place); see the notes."""
    mean = f"{metric}_mean"
    rand = data[(data["method"] == "random") & data["budget"].notna()]
    # random swept over its own options (method_label variants) at one budget: their mean
    by = rand.groupby(["setting", "budget"])[mean].mean()
    points: dict = {}
    for (setting, budget), m in by.items():
        points.setdefault(setting, []).append((float(budget), float(m)))
    at, ref = [], []
    for setting, budget, use, eff in zip(data["setting"], data["budget"], data["budget_use"], data["effective_budget"]):
        u = budget_use(use)
        pts = points.get(setting, [])
        if u == "none" or budget is None or (isinstance(budget, float) and math.isnan(budget)):
            at.append(float("nan"))
            ref.append(float("nan"))
        elif u == "soft":
            at.append(eff)
            ref.append(interpolate_random(pts, eff))
        else:
            at.append(float(budget))
            same = [m for b, m in pts if math.isclose(b, float(budget))]
            ref.append(same[0] if same else float("nan"))
    data["random_at"], data["random_mean"] = at, ref
    data["delta_vs_random"] = data[mean] - data["random_mean"]


def add_ranks(data: pd.DataFrame, metric: str) -> None:
    """``rank`` (hard methods within setting × budget) and ``rank_in_setting`` (every row), in place."""
    key = data[f"{metric}_mean"] * (-1 if higher_is_better(metric) else 1)
    hard = (data["budget_use"].map(budget_use) == "hard") & data["budget"].notna()
    rank = pd.Series(pd.NA, index=data.index, dtype="Int64")
    if hard.any():
        r = key[hard].groupby([data.loc[hard, "setting"], data.loc[hard, "budget"]]).rank(method="min")
        rank.loc[hard] = r.astype("Int64")
    data["rank"] = rank
    data["rank_in_setting"] = key.groupby(data["setting"]).rank(method="min").astype("Int64")
