"""The paper-style comparison matrix: methods × (setting, budget), best per column in bold,
average rank — built from the long table's numbers (``analysis.comparison``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import budget_use
from selbench.analysis.metrics import higher_is_better, metric_label
from selbench.analysis.paired import MIN_CI_SEEDS
from selbench.analysis.tables import NA, Table, fmt, pm


def comparison_wide(long: Table, metric: str = "test_accuracy") -> Table:
    """Methods × (setting, budget) from :func:`comparison`'s numbers.

    Same ranking rule as the long table: only hard-budget methods are bolded and ranked in a
    column; a soft or budget-free method's cell carries † (it is shown, not ranked).  A method
    that ignores the budget sits in the setting's ``@ —`` column when the setting was run at
    several budgets (in the setting's only column otherwise).  Each cell also carries the long
    table's paired Δ to the baseline with its bootstrap 95% CI (``Δ +1.20 [+0.40, +2.00]``)."""
    d = long.data
    if d.empty:
        return Table("comparison_wide", "Comparison", d, d)
    multi_budget = d.groupby("setting")["budget"].nunique().max() > 1

    def col_name(setting, budget) -> str:
        if not multi_budget:
            return str(setting)
        return f"{setting} @ {NA if pd.isna(budget) else format(budget, 'g')}"

    col_of = [col_name(s, b) for s, b in zip(d["setting"], d["budget"])]
    ranked_row = (d["budget_use"].map(budget_use) == "hard") & d["rank"].notna()
    d = d.assign(_col=col_of, _ranked_mean=d[f"{metric}_mean"].where(ranked_row), _rank=d["rank"].astype(float),
                 _unranked=(~ranked_row & d[f"{metric}_mean"].notna()).astype(float))
    columns = list(dict.fromkeys(col_of))
    methods = list(dict.fromkeys(sorted(d["method"], key=str)))

    def pivot(values):
        return d.pivot_table(index="method", columns="_col", values=values, aggfunc="first", dropna=False) \
            .reindex(index=methods, columns=columns)

    mean, std, seeds, rank = pivot(f"{metric}_mean"), pivot(f"{metric}_std"), pivot("seeds"), pivot("_rank")
    bv_col = f"{metric}_best_val_mean"
    best_val = pivot(bv_col) if bv_col in d.columns else mean * np.nan
    has_pair = "paired_delta" in d.columns
    if has_pair:
        d = d.assign(_pair=[_delta_cell(r) for _, r in d.iterrows()])
        pair_text = pivot("_pair")
    baseline = str(d["paired_baseline"].dropna().iloc[0]) if has_pair and d["paired_baseline"].notna().any() else None
    ranked_mean, unranked = pivot("_ranked_mean"), pivot("_unranked").fillna(0).astype(bool)
    contested = [c for c in columns if ranked_mean[c].notna().sum() > 1]  # a method alone in a column is not ranked
    avg_rank = rank[contested].astype(float).mean(axis=1) if contested else rank.astype(float).mean(axis=1) * np.nan
    uniform = seeds.stack().dropna().nunique() == 1
    text = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for m in methods:
        for c in columns:
            s = pm(mean.at[m, c], std.at[m, c])
            if s != NA and not pd.isna(best_val.at[m, c]):
                s += f" (best val {best_val.at[m, c]:.2f})"
            n = seeds.at[m, c]
            if not uniform and s != NA:
                s += f" (n={int(n)})"
            if has_pair and s != NA and isinstance(pair_text.at[m, c], str) and pair_text.at[m, c]:
                s += f" · {pair_text.at[m, c]}"
            if s != NA and unranked.at[m, c]:
                s += " †"
            text.at[m, c] = s
    best = ranked_mean.max() if higher_is_better(metric) else ranked_mean.min()
    bold = pd.DataFrame({c: np.isclose(ranked_mean[c].astype(float), best[c]) & ranked_mean[c].notna()
                         & (ranked_mean[c].notna().sum() > 1) for c in columns}, index=methods)
    text.insert(0, "method", methods)
    bold.insert(0, "method", False)
    text["avg rank"] = [fmt(x, 1) for x in avg_rank]
    bold["avg rank"] = False
    data = mean.copy()
    data.columns = [f"{c} mean" for c in columns]
    for c in columns:
        data[f"{c} std"] = std[c]
        data[f"{c} seeds"] = seeds[c]
        data[f"{c} rank"] = rank[c]
    data["avg_rank"] = avg_rank
    data = data.reset_index().rename(columns={"index": "method"})
    notes = [f"{metric_label(metric)} at the end of training, mean ± sample std over seeds (in brackets: the mean "
             "test metric at each run's best validation step, where recorded)"
             + (f" ({_n_seeds(int(seeds.stack().dropna().iloc[0]))} per cell)" if uniform and seeds.notna().any().any() else "")
             + "; best per column in bold and avg rank (1 = best) over the columns where ≥ 2 hard-budget methods ran: "
               "only methods that keep exactly the column's budget of the pool are ranked."]
    if baseline is not None and d["_pair"].astype(bool).any():
        notes.append(f"Δ: paired difference to {baseline} on the same seeds (mean of per-seed differences) with its "
                     "percentile-bootstrap 95% CI over seeds; see the comparison table.")
    if unranked.to_numpy().any():
        notes.append("† not ranked: the method ignores the budget (its column is '@ —' when the setting has several "
                     "budgets) or β only shapes the fraction it ends at (soft; see its effective budget and Δ vs "
                     "random at that fraction in the comparison table).")
    return Table("comparison_wide", f"Methods × settings ({metric_label(metric)})", data,
                 text.reset_index(drop=True), bold.reset_index(drop=True), notes)


def _delta_cell(r) -> str:
    """``Δ +1.20 [+0.40, +2.00]`` from a long-table row's paired columns ('' without a pairing)."""
    n, m, lo, hi = r.get("paired_seeds"), r.get("paired_delta"), r.get("paired_lo"), r.get("paired_hi")
    if pd.isna(n) or int(n) == 0 or pd.isna(m):
        return ""
    if int(n) < MIN_CI_SEEDS or pd.isna(lo):
        return f"Δ {m:+.2f} ({int(n)} seed{'s' * (int(n) > 1)}, no CI)"
    return f"Δ {m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _n_seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")
