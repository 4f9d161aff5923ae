"""The claims table's verdicts (defined in ``analysis.claims``) and the per-seed summary every row shows."""
from __future__ import annotations

import numpy as np

HOLDS, FAILS, FEW_SEEDS = "holds", "does not hold", "too few seeds"
UNMEASURABLE, UNMEASURED = "not measurable here", "not measured"
VERDICTS = (HOLDS, FAILS, FEW_SEEDS, UNMEASURABLE, UNMEASURED)


def mean_std(vals: dict) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN below 2 values) and count of ``{seed: value}``."""
    x = np.array(list(vals.values()), dtype=float)
    if not len(x):
        return float("nan"), float("nan"), 0
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan"), len(x)
