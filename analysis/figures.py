"""Figures from run records (matplotlib, Agg backend: no display needed).

Each ``plot_*`` function takes the :class:`~selbench.analysis.records.Runs` and an
output path, draws one PNG with a panel per setting (or per setting × method) and
returns the path, or ``None`` when the runs hold nothing to draw (e.g. a learning
rate sweep has no budget axis) — the report then says why the figure is missing.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from selbench.analysis.records import Runs  # noqa: E402
from selbench.analysis.tables import NA, budget_use, is_percent, scale, with_budget_group  # noqa: E402

DPI = 110
MARKERS = "os^Dvp*"


def _grid(n: int, w: float = 4.2, h: float = 3.3, max_cols: int = 3):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _colors(labels) -> dict:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(sorted(labels, key=str))}


def _legend_outside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)


def _ylabel(metric: str) -> str:
    name = metric.removeprefix("test_").replace("_", " ")
    return f"test {name} (%)" if is_percent(metric) else f"test {name}"


def _short(s: str, n: int = 48) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _label_panel(ax, xlabel: str, ylabel: str, title: str) -> None:
    """The finishing touches every per-setting panel shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _legend_outside(ax)


def _budget_groups(df: pd.DataFrame) -> pd.DataFrame:
    return with_budget_group(df) if len(df) else df


def _budget_tag(b) -> str:
    """How a plot labels a run's budget group ("—" for a method that ignores the budget)."""
    return NA if pd.isna(b) else f"{b:g}"


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


def curves_frame(runs: Runs) -> pd.DataFrame:
    """Every eval point of every ok run: one row per (run, step) with the run's labels."""
    rows = []
    df = _budget_groups(runs.df)
    for (_, r), rec in zip(df.iterrows(), runs.records):
        if r["status"] != "ok":
            continue
        for p in rec.get("curve") or []:
            row = {"setting": r["setting"], "method_label": r["method_label"], "budget": r["budget"],
                   "budget_group": _budget_tag(r["budget_group"]), "seed": r["seed"]}
            for k, v in p.items():
                if isinstance(v, dict):
                    for d, x in v.items():
                        row[f"{k}.{d}"] = x
                elif not isinstance(v, list):
                    row[k] = v
            rows.append(row)
    return pd.DataFrame(rows)


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


def _weights_clean(run: pd.Series, rec: dict):
    """(weights, is_clean) for one run from selection.npz, else None."""
    rd = Path(run["record_path"]).parent if run.get("record_path") else None
    f = rd / "selection.npz" if rd is not None else None
    if f is None or not f.exists():
        return None
    try:
        with np.load(f) as z:
            if "pool_weights" not in z or "truth_is_clean" not in z:
                return None
            w, c = z["pool_weights"].astype(float), z["truth_is_clean"].astype(bool)
    except (OSError, ValueError):
        return None
    return (w, c) if len(w) == len(c) and 0 < c.sum() < len(c) else None


def plot_weight_distributions(runs: Runs, path, bins: int = 20) -> str | None:
    """Final pool weights of clean vs corrupted examples, per setting × method (seeds pooled).

    Reads ``selection.npz`` beside each record; falls back to the record's histogram."""
    panels: dict[tuple, dict] = {}
    for (_, r), rec in zip(runs.df.iterrows(), runs.records):
        if r["status"] != "ok":
            continue
        wc = _weights_clean(r, rec)
        key = (r["setting"], r["method_label"])
        if wc is not None:
            p = panels.setdefault(key, {"w": [], "c": [], "hist": []})
            p["w"].append(wc[0])
            p["c"].append(wc[1])
            continue
        h = ((rec.get("selection") or {}).get("quality") or {}).get("histogram") or {}
        if "clean" in h and "corrupted" in h:
            panels.setdefault(key, {"w": [], "c": [], "hist": []})["hist"].append(h)
    def informative(p):  # every example weighted alike (erm, pool_only, …): nothing to compare
        if p["w"]:
            w = np.concatenate(p["w"])
            return len(w) > 0 and w.max() > w.min()
        return any(sum(1 for x in np.add(h["clean"], h["corrupted"]) if x > 0) > 1 for h in p["hist"])

    panels = {k: p for k, p in panels.items() if informative(p)}
    if not panels:
        return None
    keys = sorted(panels, key=lambda k: (str(k[0]), str(k[1])))
    fig, axes = _grid(len(keys), 3.6, 2.8)
    for ax, key in zip(axes, keys):
        p = panels[key]
        if p["w"]:
            w, c = np.concatenate(p["w"]), np.concatenate(p["c"])
            lo, hi = float(w.min()), float(w.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            hc, _ = np.histogram(w[c], edges)
            hn, _ = np.histogram(w[~c], edges)
        else:
            edges = np.asarray(p["hist"][0]["edges"], float)
            same = [h for h in p["hist"] if np.allclose(h["edges"], edges)]
            hc = np.sum([h["clean"] for h in same], axis=0)
            hn = np.sum([h["corrupted"] for h in same], axis=0)
        width = np.diff(edges)
        fc, fn = hc / max(hc.sum(), 1), hn / max(hn.sum(), 1)
        ax.bar(edges[:-1], fc, width=width, align="edge", alpha=0.45, color="tab:green", label="clean")
        ax.stairs(fn, edges, color="tab:red", lw=1.6, label="corrupted")
        ax.set_title(_short(f"{key[1]} — {key[0]}", 40), fontsize=8)
        ax.set_xlabel("final weight")
        ax.set_ylabel("fraction of examples")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_weight_share_over_training(runs: Runs, path) -> str | None:
    """Clean / minority / per-domain weight share over training, from the ``sel_*`` curve points
    that online reweighters record at every evaluation."""
    cf = curves_frame(runs)
    if cf.empty:
        return None
    share_cols = [c for c in cf.columns if c in ("sel_clean_weight_share", "sel_minority_weight_share")
                  or c.startswith("sel_domain_weight_share.")]
    if not share_cols:
        return None
    cf = cf.dropna(subset=share_cols, how="all")
    keys = sorted({(s, m) for s, m in zip(cf["setting"], cf["method_label"])}, key=str)
    fig, axes = _grid(len(keys), 3.8, 2.9)
    for ax, (s, m) in zip(axes, keys):
        g = cf[(cf["setting"] == s) & (cf["method_label"] == m)]
        for c in share_cols:
            if g[c].notna().any():
                st = g[c].groupby(g["step"]).agg(["mean", "std"]).sort_index()
                lab = c.removeprefix("sel_").replace("_weight_share", "").replace("domain_weight_share.", "domain ")
                lab = lab.replace("domain.", "domain ")
                ax.plot(st.index, st["mean"], label=lab)
                ax.fill_between(st.index, st["mean"] - st["std"].fillna(0), st["mean"] + st["std"].fillna(0), alpha=0.15)
        # what uniform weights would give: the share of such examples in the pool
        for col, ref, lab in (("sel_minority_weight_share", "scn.pool_minority_fraction", "minority pool fraction"),
                              ("sel_clean_weight_share", "scn.pool_clean_fraction", "clean pool fraction")):
            if col in share_cols and g[col].notna().any() and ref in runs.df.columns:
                frac = runs.df[runs.df["setting"] == s][ref].dropna()
                if len(frac):
                    ax.axhline(float(frac.mean()), color="k", ls=":", lw=1, label=lab)
        ax.set_ylim(0, 1)
        ax.set_title(_short(f"{m} — {s}", 40), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("share of total weight")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, path)


FIGURES = {
    "accuracy_vs_budget": (plot_accuracy_vs_budget, "Accuracy vs budget", "needs a setting run at ≥ 2 budgets"),
    "accuracy_vs_cost": (plot_accuracy_vs_cost, "Accuracy vs cost (dashed: Pareto front)", "no ok runs with cost"),
    "learning_curves": (plot_learning_curves, "Learning curves (mean ± std over seeds)", "no eval curves"),
    "weight_distributions": (plot_weight_distributions, "Final weights, clean vs corrupted examples "
                             "(methods that weight every example alike are left out)",
                             "no method with varying weights in a scenario with corrupted examples"),
    "weight_share_over_training": (plot_weight_share_over_training, "Weight share over training (online reweighters)",
                                   "no online reweighter with ground-truth shares in these runs"),
}


def render_all(runs: Runs, out_dir, metric: str = "test_accuracy") -> dict[str, str | None]:
    out = {}
    for name, (fn, _, _) in FIGURES.items():
        kw = {"metric": metric} if "metric" in fn.__code__.co_varnames else {}
        out[name] = fn(runs, Path(out_dir) / f"{name}.png", **kw)
    return out
