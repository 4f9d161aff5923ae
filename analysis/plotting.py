"""What every figure shares: matplotlib on the Agg backend (no display needed), the panel
grid, saving, colours and labels, and :func:`curves_frame` (the eval points both curve
figures draw from)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from selbench.analysis.budget_rules import with_budget_group  # noqa: E402
from selbench.analysis.metrics import is_percent  # noqa: E402
from selbench.analysis.records import Runs  # noqa: E402
from selbench.analysis.tables import NA  # noqa: E402

DPI = 110
MARKERS = "os^Dvp*"


def grid(n: int, w: float = 4.2, h: float = 3.3, max_cols: int = 3):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def method_colors(labels) -> dict:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(sorted(labels, key=str))}


def legend_outside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)


def ylabel(metric: str) -> str:
    name = metric.removeprefix("test_").replace("_", " ")
    return f"test {name} (%)" if is_percent(metric) else f"test {name}"


def short(s: str, n: int = 48) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def label_panel(ax, xlabel: str, ylabel: str, title: str) -> None:
    """The finishing touches every per-setting panel shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    legend_outside(ax)


def budget_groups(df: pd.DataFrame) -> pd.DataFrame:
    return with_budget_group(df) if len(df) else df


def budget_tag(b) -> str:
    """How a plot labels a run's budget group ("—" for a method that ignores the budget)."""
    return NA if pd.isna(b) else f"{b:g}"


def curves_frame(runs: Runs) -> pd.DataFrame:
    """Every eval point of every ok run: one row per (run, step) with the run's labels."""
    rows = []
    df = budget_groups(runs.df)
    for (_, r), rec in zip(df.iterrows(), runs.records):
        if r["status"] != "ok":
            continue
        for p in rec.get("curve") or []:
            row = {"setting": r["setting"], "method_label": r["method_label"], "budget": r["budget"],
                   "budget_group": budget_tag(r["budget_group"]), "seed": r["seed"]}
            for k, v in p.items():
                if isinstance(v, dict):
                    for d, x in v.items():
                        row[f"{k}.{d}"] = x
                elif not isinstance(v, list):
                    row[k] = v
            rows.append(row)
    return pd.DataFrame(rows)
