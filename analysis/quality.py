"""The selection-quality table: how a method's weights score against the scenario's ground
truth (clean vs corrupted, minority vs majority, per-domain shares), where it has one."""
from __future__ import annotations

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import GROUP, group_use, budget_text, with_budget_group
from selbench.analysis.metrics import seed_std
from selbench.analysis.tables import Table, pm


_QUALITY = [  # column, header, higher is better (None: neither)
    ("q.auc_clean_vs_corrupted", "weight AUC clean vs corrupted", True),
    ("q.clean_weight_share", "clean weight share", True),
    ("q.clean_weight_mean", "mean w (clean)", None),
    ("q.corrupted_weight_mean", "mean w (corrupted)", None),
    ("q.minority_weight_share", "minority weight share", True),
    ("q.minority_pool_fraction", "minority pool fraction", None),
    ("q.auc_minority_vs_majority", "weight AUC minority vs majority", True),
    ("q.effective_fraction", "effective fraction", None),
]


DOMAIN_PREFIX = "q.domain_share."


def domain_sort_key(name: str):
    """Domains keyed by index ("0".."4", older text records) sort numerically, by name ("chatterbot") alphabetically."""
    name = str(name)
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def quality(df: pd.DataFrame) -> Table:
    """Selection quality per setting × budget × method, where the scenario has ground truth."""
    df = with_budget_group(df) if len(df) else df
    ok = df[df["status"] == "ok"] if len(df) else df
    cols = [(c, h, hib) for c, h, hib in _QUALITY if c in ok.columns and ok[c].notna().any()]
    dom = sorted((c for c in ok.columns if c.startswith(DOMAIN_PREFIX)), key=lambda c: domain_sort_key(c[len(DOMAIN_PREFIX):]))
    truth_cols = [c for c, _, _ in cols if c != "q.effective_fraction"] + dom
    if ok.empty or not truth_cols:
        empty = pd.DataFrame(columns=["setting", "budget", "method"])
        return Table("quality", "Selection quality", empty, empty)
    ok = ok[ok[truth_cols].notna().any(axis=1)]
    rows, trows = [], []
    for (setting, budget, label), g in ok.groupby(GROUP, dropna=False, sort=True):
        row = {"setting": setting, "budget": budget, "method": label, "seeds": len(g)}
        trow = {"setting": setting, "budget": budget_text(budget, group_use(g)), "method": label,
                "seeds": str(len(g))}
        for c, h, _ in cols + [(d, f"domain {d[len(DOMAIN_PREFIX):]} share", None) for d in dom]:
            x = pd.to_numeric(g[c], errors="coerce")
            row[f"{c[2:]}_mean"], row[f"{c[2:]}seed_std"] = float(x.mean()), seed_std(x)
            trow[h] = pm(row[f"{c[2:]}_mean"], row[f"{c[2:]}seed_std"], 3)
        rows.append(row)
        trows.append(trow)
    data, text = pd.DataFrame(rows), pd.DataFrame(trows)
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    for c, h, hib in cols:
        if hib is None:
            continue
        m = data[f"{c[2:]}_mean"]
        grp = m.groupby([data["setting"], data["budget"]], dropna=False)
        bold[h] = (np.isclose(m, grp.transform("max")) & m.notna() & (grp.transform("count") > 1)).values
    notes = ["Weights are the method's final per-pool-example weights (a selection is a 0/1 weight), scored "
             "against ground truth the method never saw. AUC 0.5 = no signal; minority pool fraction is the "
             "share a uniform weighting would give."]
    return Table("quality", "Selection quality", data, text, bold, notes)
