"""The paper-style comparison matrix: methods × (setting, budget), best per column in bold,
average rank — built from the long table's numbers (``analysis.comparison``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import budget_use
from selbench.analysis.metrics import _label, higher_is_better
from selbench.analysis.tables import NA, Table, _fmt, _pm


def comparison_wide(long: Table, metric: str = "test_accuracy") -> Table:
    """Methods × (setting, budget) from :func:`comparison`'s numbers.

    Same ranking rule as the long table: only hard-budget methods are bolded and ranked in a
    column; a soft or budget-free method's cell carries † (it is shown, not ranked).  A method
    that ignores the budget sits in the setting's ``@ —`` column when the setting was run at
    several budgets (in the setting's only column otherwise)."""
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
    ranked_mean, unranked = pivot("_ranked_mean"), pivot("_unranked").fillna(0).astype(bool)
    contested = [c for c in columns if ranked_mean[c].notna().sum() > 1]  # a method alone in a column is not ranked
    avg_rank = rank[contested].astype(float).mean(axis=1) if contested else rank.astype(float).mean(axis=1) * np.nan
    uniform = seeds.stack().dropna().nunique() == 1
    text = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for m in methods:
        for c in columns:
            s = _pm(mean.at[m, c], std.at[m, c])
            n = seeds.at[m, c]
            if not uniform and s != NA:
                s += f" (n={int(n)})"
            if s != NA and unranked.at[m, c]:
                s += " †"
            text.at[m, c] = s
    best = ranked_mean.max() if higher_is_better(metric) else ranked_mean.min()
    bold = pd.DataFrame({c: np.isclose(ranked_mean[c].astype(float), best[c]) & ranked_mean[c].notna()
                         & (ranked_mean[c].notna().sum() > 1) for c in columns}, index=methods)
    text.insert(0, "method", methods)
    bold.insert(0, "method", False)
    text["avg rank"] = [_fmt(x, 1) for x in avg_rank]
    bold["avg rank"] = False
    data = mean.copy()
    data.columns = [f"{c} mean" for c in columns]
    for c in columns:
        data[f"{c} std"] = std[c]
        data[f"{c} seeds"] = seeds[c]
        data[f"{c} rank"] = rank[c]
    data["avg_rank"] = avg_rank
    data = data.reset_index().rename(columns={"index": "method"})
    notes = [f"{_label(metric)}, mean ± sample std over seeds"
             + (f" ({_n_seeds(int(seeds.stack().dropna().iloc[0]))} per cell)" if uniform and seeds.notna().any().any() else "")
             + "; best per column in bold and avg rank (1 = best) over the columns where ≥ 2 hard-budget methods ran: "
               "only methods that keep exactly the column's budget of the pool are ranked."]
    if unranked.to_numpy().any():
        notes.append("† not ranked: the method ignores the budget (its column is '@ —' when the setting has several "
                     "budgets) or β only shapes the fraction it ends at (soft; see its effective budget and Δ vs "
                     "random at that fraction in the comparison table).")
    return Table("comparison_wide", f"Methods × settings ({_label(metric)})", data,
                 text.reset_index(drop=True), bold.reset_index(drop=True), notes)


def _n_seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")
