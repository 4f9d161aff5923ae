"""Figures of the primary metric: against the budget, against the method's cost (with the
Pareto front), and over training (learning curves)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from selbench.analysis.budget_rules import budget_use
from selbench.analysis.metrics import scale
from selbench.analysis.plotting import (MARKERS, _budget_groups, _budget_tag, _colors, _grid, _label_panel, _save,
                                        _short, _ylabel, curves_frame)
from selbench.analysis.records import Runs
from selbench.analysis.tables import NA


def plot_accuracy_vs_budget(runs: Runs, path, metric: str = "test_accuracy") -> str | None:
    """Metric vs the fraction of the pool used: hard methods at β, soft methods at their effective
    fraction (x error bar: its std over seeds), methods that ignore β as a horizontal band."""
    ok = _budget_groups(runs.ok)
    if ok.empty or ok.groupby("setting")["budget_group"].nunique().max() < 2:
        return None
    settings = [s for s, g in ok.groupby("setting") if g["budget_group"].nunique() > 1]
    fig, axes = _grid(len(settings), 6.0, 3.4, max_cols=2)
    colors = _colors(ok["method_label"].unique())
    for ax, s in zip(axes, settings):
        g = ok[ok["setting"] == s]
        ticks = sorted(g["budget_group"].dropna().unique())
        for m, gm in g.groupby("method_label"):
            use = budget_use(gm["budget_use"].dropna().iloc[0]) if gm["budget_use"].notna().any() else "hard"
            y = gm[metric] * scale(metric)
            if use == "none":
                mu, sd = float(y.mean()), float(y.std()) if len(y) > 1 else 0.0
                ax.axhline(mu, color=colors[m], ls="--", lw=1.2, label=f"{m} (ignores budget)")
                ax.axhspan(mu - sd, mu + sd, color=colors[m], alpha=0.1)
                continue
            x = pd.to_numeric(gm["sel.effective_budget"], errors="coerce") if use == "soft" and \
                "sel.effective_budget" in gm else pd.Series(np.nan, index=gm.index)
            x = x.fillna(gm["budget_group"]) if use == "soft" else gm["budget_group"]
            st = pd.DataFrame({"x": x, "y": y}).groupby(gm["budget_group"]).agg(
                x=("x", "mean"), xs=("x", "std"), m=("y", "mean"), s=("y", "std")).sort_values("x")
            st = st[st["x"] > 0]
            ax.errorbar(st["x"], st["m"], yerr=st["s"].fillna(0), xerr=st["xs"].fillna(0) if use == "soft" else None,
                        marker="o" if use == "hard" else "D", ls="-" if use == "hard" else ":", capsize=3,
                        label=m if use == "hard" else f"{m} (at effective fraction)", color=colors[m])
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{b:g}" for b in ticks])
        ax.minorticks_off()
        _label_panel(ax, "fraction of pool used (budget; soft methods: effective)", _ylabel(metric), _short(s))
    return _save(fig, path)


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
    ok = _budget_groups(ok)
    settings = sorted(ok["setting"].unique())
    fig, axes = _grid(len(settings), 6.0, 3.4, max_cols=2)
    colors = _colors(ok["method_label"].unique())
    for ax, s in zip(axes, settings):
        g = ok[ok["setting"] == s]
        st = g.assign(_m=g[metric] * scale(metric), _b=g["budget_group"].map(_budget_tag)) \
            .groupby(["method_label", "_b"]).agg(m=("_m", "mean"), sd=("_m", "std"), t=("cost.method_wall_s", "mean"),
                                                 ts=("cost.method_wall_s", "std"))
        st = st.reset_index()
        budgets = sorted(st["_b"].unique())
        for _, r in st.iterrows():
            ax.errorbar(r.t, r.m, xerr=0 if pd.isna(r.ts) else r.ts, yerr=0 if pd.isna(r.sd) else r.sd,
                        marker=MARKERS[budgets.index(r._b) % len(MARKERS)], capsize=3, color=colors[r.method_label],
                        label=r.method_label if len(budgets) == 1 or r._b == NA else f"{r.method_label} @ {r._b}")
        front = pareto_front(st["t"].to_numpy(float), st["m"].to_numpy(float))
        ft, fm = st["t"].to_numpy()[front], st["m"].to_numpy()[front]
        ax.step(ft, fm, where="post", color="k", lw=1, ls="--", alpha=0.6)
        ax.scatter(ft, fm, s=120, facecolors="none", edgecolors="k", lw=1.2, zorder=5, label="Pareto front")
        if (st["t"] > 0).all() and st["t"].max() / max(st["t"].min(), 1e-9) > 20:
            ax.set_xscale("log")
        _label_panel(ax, "selection + training wall time (s)", _ylabel(metric), _short(s))
    return _save(fig, path)


def plot_learning_curves(runs: Runs, path, metric: str = "test_accuracy") -> str | None:
    cf = curves_frame(runs)
    if cf.empty or metric not in cf.columns:
        return None
    settings = sorted(cf["setting"].unique())
    fig, axes = _grid(len(settings), 6.0, 3.4, max_cols=2)
    colors = _colors(cf["method_label"].unique())
    for ax, s in zip(axes, settings):
        g = cf[cf["setting"] == s]
        budgets = sorted(g["budget_group"].unique())
        multi = len(budgets) > 1
        for (m, b), gm in g.groupby(["method_label", "budget_group"]):
            st = (gm[metric] * scale(metric)).groupby(gm["step"]).agg(["mean", "std"]).sort_index()
            ls = "-" if not multi else ["-", "--", ":", "-."][budgets.index(b) % 4]
            ax.plot(st.index, st["mean"], color=colors[m], ls=ls, label=m if not multi or b == NA else f"{m} @ {b}")
            ax.fill_between(st.index, st["mean"] - st["std"].fillna(0), st["mean"] + st["std"].fillna(0),
                            color=colors[m], alpha=0.15)
        _label_panel(ax, "step", _ylabel(metric), _short(s))
    return _save(fig, path)
