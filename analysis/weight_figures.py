"""Figures of the weights a method gave the pool: final weights of clean vs corrupted examples,
and the clean / minority / per-domain weight share over training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selbench.analysis.plotting import grid, save, short, curves_frame
from selbench.analysis.records import Runs


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


#: the weight axis is linear within ±LINTHRESH and logarithmic beyond it
LINTHRESH = 0.1


def symlog_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Histogram edges evenly spaced on the symlog axis the figure draws (so every bar has the same
    drawn width, near 0 and in a tail to weight 30 alike)."""
    def fwd(x):
        return np.sign(x) * np.log1p(np.abs(x) / LINTHRESH)

    def inv(t):
        return np.sign(t) * LINTHRESH * np.expm1(np.abs(t))

    if hi <= lo:
        hi = lo + 1.0
    edges = inv(np.linspace(fwd(lo), fwd(hi), bins + 1))
    edges[0], edges[-1] = lo, hi
    return edges


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
    fig, axes = grid(len(keys), 3.6, 2.8)
    for ax, key in zip(axes, keys):
        p = panels[key]
        if p["w"]:
            w, c = np.concatenate(p["w"]), np.concatenate(p["c"])
            edges = symlog_edges(float(w.min()), float(w.max()), bins)
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
        ax.set_title(short(f"{key[1]} — {key[0]}", 40), fontsize=8)
        ax.set_xscale("symlog", linthresh=LINTHRESH)  # a tail to weight 30 must not squash the mass near 0
        ax.set_xlabel("final weight (symlog)")
        ax.set_ylabel("fraction of examples")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save(fig, path)


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
    fig, axes = grid(len(keys), 3.8, 2.9)
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
        ax.set_title(short(f"{m} — {s}", 40), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("share of total weight")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return save(fig, path)
