"""Which runs form one table row, and how a method's budget use decides where it is grouped,
ranked and compared with ``random``.

Budget semantics (``record["budget_use"]``, see ``selbench.methods.base.Method``):

* ``hard`` methods (keep exactly β of the pool: random, blo) are grouped, ranked and
  compared with random at their budget β;
* ``soft`` methods (β shapes them, they end at their own fraction: bads) are grouped at
  their β (a different β is a different experiment) but **not ranked** there; their Δ
  vs random is taken at their *effective* fraction, random's mean linearly interpolated
  between the two nearest random budgets run in the setting ("—" outside them);
* ``none`` methods (ignore β: erm, pool_only, target_only, duplicate_target, l2rw,
  mwnet) are grouped under budget "—" (``budget_group`` empty), never ranked at a
  budget, and have no Δ vs random;
* every row also has ``rank (setting)``: its rank among all rows of its setting,
  whatever their budget.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from selbench.analysis.labels import add_budget_group
from selbench.analysis.tables import NA

#: a table row's runs: the budget is ``budget_group`` (empty for methods that ignore the budget)
GROUP = ["setting", "budget_group", "method_label"]


def with_budget_group(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``budget_group`` column (added to a copy when a caller built ``df`` itself)."""
    if "budget_group" in df.columns:
        return df
    return add_budget_group(df.copy())


def budget_use(x) -> str:
    """A record's ``budget_use`` for the ranking rule: unknown (an older record of a method the
    registry does not know) counts as ``hard``, as every method did before the field existed."""
    return x if x in ("soft", "none") else "hard"


def group_use(g: pd.DataFrame):
    """The budget use of one table row's runs (the most common stated value; None if none is stated)."""
    if "budget_use" not in g.columns:
        return None
    vals = g["budget_use"].dropna()
    return vals.mode().iloc[0] if len(vals) else None


def interpolate_random(points: list[tuple[float, float]], fraction: float) -> float:
    """Random's mean at ``fraction`` of the pool, linearly interpolated between the two nearest
    random budgets run (``points`` = ``(budget, mean)``); NaN outside the budgets run."""
    pts = sorted((b, m) for b, m in points if not (math.isnan(b) or math.isnan(m)))
    if not pts or fraction is None or math.isnan(fraction):
        return float("nan")
    bs = np.array([b for b, _ in pts])
    ms = np.array([m for _, m in pts])
    tol = 1e-9
    if fraction < bs[0] - tol or fraction > bs[-1] + tol:
        return float("nan")
    return float(np.interp(min(max(fraction, bs[0]), bs[-1]), bs, ms))


def budget_text(budget, use) -> str:
    if budget_use(use) == "none" or budget is None or (isinstance(budget, float) and math.isnan(budget)):
        return NA
    return f"{budget:g} (soft)" if use == "soft" else f"{budget:g}"


def delta_text(delta, use, at) -> str:
    if delta is None or math.isnan(delta):
        return NA
    return f"{delta:+.2f} (@ {at:.3f})" if use == "soft" else f"{delta:+.2f}"
