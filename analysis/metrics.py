"""How a metric is shown and compared: accuracy-like metrics in percent (as the papers print
them), losses and errors lower-is-better, the column labels (final and at best validation), and the
spread over seeds."""
from __future__ import annotations

import pandas as pd


def is_percent(metric: str) -> bool:
    return "accuracy" in metric


def higher_is_better(metric: str) -> bool:
    return not any(s in metric for s in ("loss", "error"))


def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def seed_std(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def metric_label(metric: str) -> str:
    name = metric.removeprefix("test_").replace("_", " ")
    return f"{name} (%)" if is_percent(metric) else name


def final_label(metric: str) -> str:
    """The column of the metric at the end of training (``record["metrics"]``)."""
    return f"{metric_label(metric)} final"


def best_val_label(metric: str) -> str:
    """The column of the test metric at the eval step with the best validation objective."""
    return f"{metric_label(metric)} at best val"
