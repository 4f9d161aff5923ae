"""The verdict rows of a ``lds.<key>`` claim (``analysis.claims``): the linear datamodeling score of
the preset's ``lds_subset`` sweeps, per seed (``analysis.lds``), judged against the claim's bound."""
from __future__ import annotations

import fnmatch

import pandas as pd

from selbench.analysis.claims_registry import Claim
from selbench.analysis.lds import lds_groups
from selbench.analysis.paired import MIN_CI_SEEDS, paired
from selbench.analysis.verdicts import FAILS, FEW_SEEDS, HOLDS, UNMEASURED, mean_std


def lds_rows(c: Claim, base: dict, records: list[dict]) -> list[dict]:
    """A ``lds.<key>`` claim: per-seed LDS of the preset's ``lds_subset`` groups (``analysis.lds``)."""
    mine = [r for r in records if isinstance(r.get("experiment"), str) and fnmatch.fnmatch(r["experiment"], c.preset)]
    groups = pd.DataFrame(lds_groups(mine))
    key = c.metric.removeprefix("lds.")
    if groups.empty:
        return [{**base, "verdict": UNMEASURED, "why": f"no {c.method} sweep (≥ 3 subsets) in preset {c.preset}"}]
    out = []
    for (setting, budget), g in groups.groupby(["setting", "budget"], dropna=False, sort=True):
        vals = {s: v for s, v in zip(g["seed"], pd.to_numeric(g[key], errors="coerce")) if not pd.isna(v)}
        m, sd, n = mean_std(vals)
        p = paired(vals)
        row = {**base, "setting": setting, "budget": budget, "scale": ", ".join(sorted(
            {str(r.get("scale")) for r in mine})), "method_mean": m, "method_std": sd, "method_n": n,
            "estimate": p.mean, "ci_lo": p.lo, "ci_hi": p.hi, "paired_seeds": p.n}
        if p.n < MIN_CI_SEEDS:
            row.update(verdict=FEW_SEEDS, why=f"{p.seeds_text()}: a verdict needs ≥ {MIN_CI_SEEDS} (run seed=0,1,2); "
                                              "no interval, never 'holds'")
        elif p.excludes(c.bound, c.direction):
            row.update(verdict=HOLDS, why=f"95% CI of the value [{p.lo:.3g}, {p.hi:.3g}] {c.direction} {c.bound:g}")
        else:
            row.update(verdict=FAILS, why=f"95% CI of the value [{p.lo:.3g}, {p.hi:.3g}] includes {c.bound:g}")
        out.append(row)
    return out
