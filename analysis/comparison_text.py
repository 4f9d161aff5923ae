"""The long comparison table's display: its cells, the bold best cells and the notes that say how
every number was made (the numbers are ``analysis.comparison``'s)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import budget_text, budget_use, delta_text
from selbench.analysis.metrics import best_val_label, final_label, higher_is_better, is_percent
from selbench.analysis.tables import NA, Table, fmt, pm


def render(data: pd.DataFrame, cols: list[str], metric: str, baseline: str) -> Table:
    """The :class:`Table` of the comparison rows ``data`` (its ``_paired`` objects give the Δ cells)."""
    paired_text = [NA if p is None else p.text() for p in data["_paired"]]
    data = data[cols]
    text = cells(data, metric)
    text.insert(6, paired_label(baseline), paired_text)
    if metric != "test_balanced_accuracy":
        text.insert(6, "balanced acc. (%)", [pm(a, b) for a, b in zip(data["test_balanced_accuracy_mean"],
                                                                      data["test_balanced_accuracy_std"])])
    if data["paper"].astype(bool).any():
        text["paper"] = data["paper"].replace("", NA)
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    bold[final_label(metric)] = best_in_budget(data, metric).values
    return Table("comparison", f"Comparison ({final_label(metric)}, and at best validation)", data,
                 text.reset_index(drop=True), bold.reset_index(drop=True), notes(data, metric, baseline))


def cells(data: pd.DataFrame, metric: str) -> pd.DataFrame:
    return pd.DataFrame({
        "setting": data["setting"],
        "budget": [budget_text(b, u) for b, u in zip(data["budget"], data["budget_use"])],
        "method": data["method"],
        "seeds": data["seeds"].astype(str) + data["failed"].map(lambda f: f" (+{f} failed)" if f else ""),
        final_label(metric): [pm(a, b) for a, b in zip(data[f"{metric}_mean"], data[f"{metric}_std"])],
        best_val_label(metric): [best_val_cell(a, b, n, s) for a, b, n, s in zip(
            data[f"{metric}_best_val_mean"], data[f"{metric}_best_val_std"], data["best_val_seeds"], data["seeds"])],
        "rank": data["rank"].map(lambda r: NA if pd.isna(r) else str(int(r))),
        "rank (setting)": data["rank_in_setting"].map(lambda r: NA if pd.isna(r) else str(int(r))),
        "Δ vs random": [delta_text(d, u, a) for d, u, a in zip(data["delta_vs_random"], data["budget_use"],
                                                                data["random_at"])],
        "eff. budget": data["effective_budget"].map(lambda x: ratio_text(x, 3)),
        "examples/step ×erm": data["examples_per_step_x_erm"].map(ratio_text),
        "examples ×erm": data["examples_x_erm"].map(ratio_text),
        "time ×erm": data["time_x_erm"].map(ratio_text),
        "mem ×erm": data["mem_x_erm"].map(ratio_text),
        "wall s": data["method_wall_s"].map(lambda x: fmt(x, 1)),
    })


def best_val_cell(mean, std, n, seeds) -> str:
    """Mean ± std at best validation; the seeds behind it when only some runs recorded it."""
    s = pm(mean, std)
    return s if s == NA or n == seeds else f"{s} ({int(n)} of {int(seeds)} seeds)"


def best_in_budget(data: pd.DataFrame, metric: str) -> pd.Series:
    """Bold: the best final mean among the hard-budget rows of a setting × budget (with ≥ 2 of them)."""
    hard = data["budget_use"].map(budget_use) == "hard"
    m = data[f"{metric}_mean"].where(hard)
    grp = m.groupby([data["setting"], data["budget"]], dropna=False)
    best = grp.transform("max" if higher_is_better(metric) else "min")
    return pd.Series(np.isclose(m, best) & m.notna() & (grp.transform("count") > 1), index=data.index)


def ratio_text(x, digits=2) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.{digits}f}"


def paired_label(baseline: str) -> str:
    return f"Δ vs {baseline} (paired, 95% CI)"


def notes(data: pd.DataFrame, metric: str, baseline: str) -> list[str]:
    unit = "points" if is_percent(metric) else metric
    out = ["mean ± sample std over distinct seeds (runs repeating a seed, e.g. a budget-free method swept "
           "over budgets, are averaged per seed first).",
           f"{final_label(metric)}: at the end of training; {best_val_label(metric)}: the test metric at the eval "
           "step with the best validation objective (chosen on validation only; the test set never chooses). "
           f"{NA}: the runs recorded no best-validation metrics (no validation split, or a record older than "
           "the field). Everything else in the row (rank, Δ) is on the final metric.",
           "budget: β = budget.fraction for methods that keep exactly β of the pool (hard); "
           "'(soft)' for methods β only shapes (they end at their own fraction, 'eff. budget'); "
           f"{NA} for methods that ignore β (none) — those are grouped apart, never at a budget.",
           "rank: 1 = best among the hard-budget methods at the same setting and budget; soft and none methods "
           f"are not ranked there ({NA}). rank (setting): every row of the setting ranked together, "
           "whatever its budget (a leaderboard that ignores how much of the pool each row used).",
           f"{paired_label(baseline)}: mean over seeds of (this row − {baseline}) on the same seed in the same "
           f"setting ({unit}), with a percentile-bootstrap 95% CI over those seeds when ≥ 3 are paired (exact "
           f"for ≤ 6 seeds); only seeds both ran count (others are named as unpaired); fewer than 3 paired "
           f"seeds: the mean alone, no interval; {NA}: {baseline} itself, or no {baseline} run to pair with.",
           f"Δ vs random: difference of means ({unit}) to random in the same setting — hard methods at the same "
           "budget; soft methods at their effective fraction (@), random's mean linearly interpolated between "
           f"the two nearest random budgets run ({NA} outside them); {NA} for methods that ignore the budget.",
           "eff. budget: the fraction of the pool the method effectively used (selectors: selected/pool; "
           "soft reweighters: mean weight; per-batch selection: kept fraction per batch).",
           "examples/step ×erm, examples ×erm: examples whose loss entered a parameter update, per step and "
           "in total, over erm's in the same setting; time ×erm, wall s: the method's charged selection + "
           "training seconds (a cached artifact it read — proxy model, gradient features — is charged at what "
           "it cost to compute, whichever run computed it), over erm's; mem ×erm: peak memory over erm's."]
    if "rss" in set(data["memory_kind"].dropna()):
        out.append("Memory on CPU is the process's peak RSS (interpreter and libraries included), "
                   "so ratios near 1 are expected there; on GPU it is peak CUDA memory.")
    return out
