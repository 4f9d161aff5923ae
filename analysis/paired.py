"""Paired per-seed differences with a bootstrap 95% confidence interval over seeds.

A seed fixes the pool, the label noise and the model's initialisation for every method, so
two methods run on the same seed (and otherwise the same config) are a *pair*: the honest
comparison is the per-seed difference ``d_s = x_method(s) − x_baseline(s)``, not the
difference of two means whose seed-to-seed spread is shared.  :func:`paired` returns the
mean of ``d_s`` over the seeds present on both sides (the others are counted, never
silently used) and a percentile-bootstrap CI of that mean over seeds — the interval estimate
the rliable library reports for RL benchmarks (Agarwal et al. 2021), written here with NumPy:

* resample the ``n`` paired seeds with replacement, take the mean, repeat;
* the CI is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles (NumPy's default linear
  interpolation) of those means;
* for ``n ≤ EXACT_MAX`` every one of the ``n^n`` equally likely resamples is enumerated (the
  exact bootstrap distribution, no Monte Carlo error); above it ``n_boot`` resamples are
  drawn from a generator seeded with ``seed`` — deterministic either way;
* ``n < MIN_CI_SEEDS`` (3): no interval (``lo``/``hi`` NaN; the text gives the mean and says how
  many seeds): the percentile bootstrap of 2 values is little more than their range, and calling
  it a 95% CI would claim a confidence it does not have; ``n = 0``: nothing.

With 3 seeds the interval is wide by construction (its lower end is near the smallest
difference): "the CI excludes zero" then means "every seed agrees", which is what a
reviewer asks of a 3-seed claim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

#: up to this many seeds the bootstrap distribution is enumerated exactly (6^6 = 46,656 resamples)
EXACT_MAX = 6
#: the fewest seeds a CI (and so a "holds") is computed from
MIN_CI_SEEDS = 3
#: Monte Carlo resamples above ``EXACT_MAX`` seeds
N_BOOT = 20_000


def _resample_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    n = len(x)
    if n <= EXACT_MAX:
        idx = np.indices((n,) * n).reshape(n, -1).T  # every index tuple, each equally likely
    else:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    return x[idx].mean(axis=1)


def bootstrap_ci(values, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of ``values`` (NaN, NaN for fewer than ``MIN_CI_SEEDS``)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) < MIN_CI_SEEDS:
        return float("nan"), float("nan")
    if np.all(x == x[0]):  # every resample mean is that value: a degenerate interval, exactly
        return float(x[0]), float(x[0])
    means = _resample_means(x, n_boot, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of one method with a baseline (or one sample against a bound)."""

    n: int                       # seeds present on both sides (the ones used)
    n_a: int                     # seeds the method has
    n_b: int                     # seeds the baseline has
    mean: float                  # mean per-seed difference (NaN when n = 0)
    lo: float                    # CI (NaN when n < 2)
    hi: float
    diffs: tuple[float, ...] = ()
    seeds: tuple = ()
    level: float = 0.95

    @property
    def unpaired(self) -> int:
        """Seeds present on one side only (left out)."""
        return self.n_a + self.n_b - 2 * self.n

    def excludes(self, bound: float = 0.0, direction: str = ">") -> bool:
        """Does the CI lie entirely on the claimed side of ``bound`` (strictly)?  False without a CI."""
        if self.n < MIN_CI_SEEDS or math.isnan(self.lo):
            return False
        return self.lo > bound if direction == ">" else self.hi < bound

    def seeds_text(self) -> str:
        s = f"{self.n} seed" + ("" if self.n == 1 else "s")
        return s + (f" paired, {self.unpaired} unpaired left out" if self.unpaired else "")

    def text(self, digits: int = 2, sign: bool = True, with_seeds: bool = False) -> str:
        """``+1.23 [+0.40, +2.10]``; ``+1.23 (2 seeds, no CI)``; ``—`` when no seed is paired."""
        if self.n == 0:
            return "—" + (" (no shared seeds)" if self.n_a and self.n_b else "")
        f = f"{{:{'+' if sign else ''}.{digits}f}}"
        out = f.format(self.mean)
        if self.n < MIN_CI_SEEDS:
            return out + (" (1 seed)" if self.n == 1 else f" ({self.seeds_text()}, no CI)")
        out += f" [{f.format(self.lo)}, {f.format(self.hi)}]"
        return out + (f" ({self.seeds_text()})" if with_seeds or self.unpaired else "")


def paired(a: Mapping, b: Mapping | None = None, op: str = "diff", level: float = 0.95,
           n_boot: int = N_BOOT, seed: int = 0) -> Paired:
    """Per-seed ``a[s] − b[s]`` (``op="diff"``) or ``a[s] / b[s]`` (``op="ratio"``) over the seeds in
    both mappings (NaN values count as absent), with its bootstrap CI.  ``b=None``: one sample,
    the values of ``a`` themselves."""
    a = {s: float(v) for s, v in a.items() if v is not None and not _isnan(v)}
    if b is None:
        seeds = sorted(a, key=_seed_key)
        d = [a[s] for s in seeds]
        n_b = len(a)
    else:
        b = {s: float(v) for s, v in b.items() if v is not None and not _isnan(v)}
        seeds = sorted(set(a) & set(b), key=_seed_key)
        if op == "ratio":
            seeds = [s for s in seeds if b[s] != 0]
            d = [a[s] / b[s] for s in seeds]
        else:
            d = [a[s] - b[s] for s in seeds]
        n_b = len(b)
    mean = float(np.mean(d)) if d else float("nan")
    lo, hi = bootstrap_ci(d, level, n_boot, seed)
    return Paired(len(d), len(a), n_b, mean, lo, hi, tuple(d), tuple(seeds), level)


def per_seed(frame: pd.DataFrame, column: str, scale: float = 1.0) -> dict:
    """``{seed: mean of column}`` over ``frame``'s runs (runs repeating a seed — e.g. ``erm`` swept
    over budgets it ignores — are one experiment: averaged).  Non-numeric or missing: absent."""
    if frame.empty or column not in frame.columns or "seed" not in frame.columns:
        return {}
    v = pd.to_numeric(frame[column], errors="coerce") * scale
    ok = v.notna() & frame["seed"].notna()
    return {s: float(x) for s, x in v[ok].groupby(frame.loc[ok, "seed"]).mean().items()}


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _seed_key(s):
    return (0, s) if isinstance(s, (int, float)) else (1, str(s))
