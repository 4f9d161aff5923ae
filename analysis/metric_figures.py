"""Figures of the primary metric: against the budget, against the method's cost (with the
Pareto front), and over training (learning curves)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import budget_use
from selbench.analysis.metrics import scale
from selbench.analysis.plotting import (MARKERS, budget_groups, budget_tag, method_colors, grid, label_panel, save,
                                        short, ylabel, curves_frame)
from selbench.analysis.records import Runs
from selbench.analysis.tables import NA


def plot_accuracy_vs_budget(runs: Runs, path, metric: str = "test_accuracy") -> str | None:
    """Metric vs the fraction of the pool used: hard methods at β, soft methods at their effective
    fraction (x error bar: its std over seeds), methods that ignore β as a horizontal band."""
    ok = budget_groups(runs.ok)
    if ok.empty or ok.groupby("setting")["budget_group"].nunique().max() < 2:
        return None
    settings = [s for s, g in ok.groupby("setting") if g["budget_group"].nunique() > 1]
    fig, axes = grid(len(settings), 6.0, 3.4, max_cols=2)
    colour_of = method_colors(ok["method_label"].unique())
    for ax, s in zip(axes, settings):
        g = ok[ok["setting"] == s]
        ticks = sorted(g["budget_group"].dropna().unique())
        for m, gm in g.groupby("method_label"):
            use = budget_use(gm["budget_use"].dropna().iloc[0]) if gm["budget_use"].notna().any() else "hard"
            y = gm[metric] * scale(metric)
            if use == "none":
                mu, sd = float(y.mean()), float(y.std()) if len(y) > 1 else 0.0
                ax.axhline(mu, color=colour_of[m], ls="--", lw=1.2, label=f"{m} (ignores budget)")
                ax.axhspan(mu - sd, mu + sd, color=colour_of[m], alpha=0.1)
                continue
            x = pd.to_numeric(gm["sel.effective_budget"], errors="coerce") if use == "soft" and \
                "sel.effective_budget" in gm else pd.Series(np.nan, index=gm.index)
            x = x.fillna(gm["budget_group"]) if use == "soft" else gm["budget_group"]
            st = pd.DataFrame({"x": x, "y": y}).groupby(gm["budget_group"]).agg(
                x=("x", "mean"), xs=("x", "std"), m=("y", "mean"), s=("y", "std")).sort_values("x")
            st = st[st["x"] > 0]
            ax.errorbar(st["x"], st["m"], yerr=st["s"].fillna(0), xerr=st["xs"].fillna(0) if use == "soft" else None,
                        marker="o" if use == "hard" else "D", ls="-" if use == "hard" else ":", capsize=3,
                        label=m if use == "hard" else f"{m} (at effective fraction)", color=colour_of[m])
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{b:g}" for b in ticks])
        ax.minorticks_off()
        label_panel(ax, "fraction of pool used (budget; soft methods: effective)", ylabel(metric), short(s))
    return save(fig, path)


def pareto_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (lower cost, higher value), by cost."""
    order = np.lexsort((-value, cost))
    front, best = [], -np.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return np.array(front, dtype=int)


def plot_accuracy_vs_cost(runs: Runs, path, metric: str = "test_accuracy") -> str | None:
    ok = runs.ok.dropna(subset=["cost.method_wall_s", metric]) if not runs.ok.empty else runs.ok
    if ok.empty:
        return None
    ok = budget_groups(ok)
    settings = sorted(ok["setting"].unique())
    fig, axes = grid(len(settings), 6.0, 3.4, max_cols=2)
    colour_of = method_colors(ok["method_label"].unique())
    for ax, s in zip(axes, settings):
        g = ok[ok["setting"] == s]
        st = g.assign(_m=g[metric] * scale(metric), _b=g["budget_group"].map(budget_tag)) \
            .groupby(["method_label", "_b"]).agg(m=("_m", "mean"), sd=("_m", "std"), t=("cost.method_wall_s", "mean"),
                                                 ts=("cost.method_wall_s", "std"))
        st = st.reset_index()
        budgets = sorted(st["_b"].unique())
        for _, r in st.iterrows():
            ax.errorbar(r.t, r.m, xerr=0 if pd.isna(r.ts) else r.ts, yerr=0 if pd.isna(r.sd) else r.sd,
                        marker=MARKERS[budgets.index(r._b) % len(MARKERS)], capsize=3, color=colour_of[r.method_label],
                        label=r.method_label if len(budgets) == 1 or r._b == NA else f"{r.method_label} @ {r._b}")
        label_points(ax, st["t"].to_numpy(float), st["m"].to_numpy(float),
                     [m if len(budgets) == 1 or b == NA else f"{m} @ {b}" for m, b in zip(st["method_label"], st["_b"])],
                     log_x=bool((st["t"] > 0).all() and st["t"].max() / max(st["t"].min(), 1e-9) > 20))
        front = pareto_front(st["t"].to_numpy(float), st["m"].to_numpy(float))
        ft, fm = st["t"].to_numpy()[front], st["m"].to_numpy()[front]
        ax.step(ft, fm, where="post", color="k", lw=1, ls="--", alpha=0.6)
        ax.scatter(ft, fm, s=120, facecolors="none", edgecolors="k", lw=1.2, zorder=5, label="Pareto front")
        if (st["t"] > 0).all() and st["t"].max() / max(st["t"].min(), 1e-9) > 20:
            ax.set_xscale("log")
        label_panel(ax, "selection + training wall time (s)", ylabel(metric), short(s))
    return save(fig, path)


def label_points(ax, x: np.ndarray, y: np.ndarray, labels: list[str], log_x: bool = False,
                 near_x: float = 0.15, near_y: float = 0.05) -> list[int]:
    """Write each point's label to its right; a label that would run into an earlier one (points within
    ``near_x`` of the x span — a label's width — and ``near_y`` of the y span; log span for a log axis)
    is stacked below it instead of on top of it.  Returns each label's stack level."""
    xs = np.log10(np.clip(x, 1e-12, None)) if log_x else x.astype(float)
    span_x = max(float(np.ptp(xs)), 1e-9) if len(xs) else 1.0
    span_y = max(float(np.ptp(y)), 1e-9) if len(y) else 1.0
    levels: list[int] = []
    for i, lab in enumerate(labels):
        close = [levels[j] for j in range(i)
                 if abs(xs[i] - xs[j]) / span_x < near_x and abs(y[i] - y[j]) / span_y < near_y]
        level = max(close) + 1 if close else 0
        levels.append(level)
        ax.annotate(lab, (x[i], y[i]), xytext=(5, 3 - 9 * level), textcoords="offset points", fontsize=6, alpha=0.8)
    return levels


def plot_learning_curves(runs: Runs, path, metric: str = "test_accuracy") -> str | None:
    """Per setting, two panels: the metric on the validation split (what the best step is chosen on)
    and on the test split, mean ± std over seeds per method (and budget)."""
    cf = curves_frame(runs)
    if cf.empty or metric not in cf.columns:
        return None
    val = "val_" + metric.removeprefix("test_")
    splits = [(c, name) for c, name in ((val, "validation"), (metric, "test")) if c in cf.columns]
    settings = sorted(cf["setting"].unique())
    fig, axes = grid(len(settings) * len(splits), 6.0, 3.4, max_cols=len(splits))
    colour_of = method_colors(cf["method_label"].unique())
    for i, s in enumerate(settings):
        g = cf[cf["setting"] == s]
        budgets = sorted(g["budget_group"].unique())
        multi = len(budgets) > 1
        for j, (col, split) in enumerate(splits):
            ax = axes[i * len(splits) + j]
            for (m, b), gm in g.groupby(["method_label", "budget_group"]):
                st = (pd.to_numeric(gm[col], errors="coerce") * scale(metric)).groupby(gm["step"]) \
                    .agg(["mean", "std"]).dropna(subset=["mean"]).sort_index()
                if st.empty:
                    continue
                ls = "-" if not multi else ["-", "--", ":", "-."][budgets.index(b) % 4]
                ax.plot(st.index, st["mean"], color=colour_of[m], ls=ls, label=m if not multi or b == NA else f"{m} @ {b}")
                ax.fill_between(st.index, st["mean"] - st["std"].fillna(0), st["mean"] + st["std"].fillna(0),
                                color=colour_of[m], alpha=0.15)
            label_panel(ax, "step", ylabel(metric).replace("test ", f"{split} ", 1), short(f"{s} — {split}"))
    return save(fig, path)
