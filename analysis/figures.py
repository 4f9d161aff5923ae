"""Figures from run records (matplotlib, Agg backend: no display needed).

Each ``plot_*`` function takes the :class:`~selbench.analysis.records.Runs` and an
output path, draws one PNG with a panel per setting (or per setting × method) and
returns the path, or ``None`` when the runs hold nothing to draw (e.g. a learning
rate sweep has no budget axis) — the report then says why the figure is missing.

The figures themselves are in ``analysis.metric_figures`` and ``analysis.weight_figures``
(shared helpers: ``analysis.plotting``); this module lists them for the report.
"""
from __future__ import annotations

from pathlib import Path

from selbench.analysis.metric_figures import plot_accuracy_vs_budget, plot_accuracy_vs_cost, plot_learning_curves
from selbench.analysis.records import Runs
from selbench.analysis.weight_figures import plot_weight_distributions, plot_weight_share_over_training


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
