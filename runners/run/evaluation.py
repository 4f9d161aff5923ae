"""Evaluation, written once: the test / validation metrics of a model, the objective a sweeper
reads, the best-validation eval step beside the final one, and a synthesizer's repeated
evaluators.

The test set gives the final number only.  Everything that *chooses* — the sweeper's objective,
the best eval step of ``record["best_val"]`` — reads the validation metrics alone.
"""
from __future__ import annotations

import dataclasses
import math
import statistics

import torch

from selbench.core.data import Split
from selbench.runners.run.loop import make_schedule, trainable_optimizer
from selbench.runners.run.prepare import fixed_set_trainer


def evaluate_splits(adapter, scenario) -> dict:
    """``test_*`` (the final number only) and ``val_*`` (what objectives and tuning read)."""
    out = {f"test_{k}": v for k, v in adapter.evaluate(scenario.test).items()}
    if scenario.val is not None and len(scenario.val):
        out.update({f"val_{k}": v for k, v in adapter.evaluate(scenario.val).items()})
    return out


def objective_name(cfg) -> str:
    return str(cfg.get("objective") or "val_accuracy")


def objective_of(cfg, metrics: dict) -> dict:
    """The metric a sweeper optimises, the split it comes from and its value (``validate`` has
    already refused an objective on the test split)."""
    name = objective_name(cfg)
    return {"metric": name, "split": name.split("_", 1)[0], "value": metrics.get(name)}


def lower_is_better(metric: str) -> bool:
    return "loss" in metric


def best_index(points: list[dict], metric: str) -> int | None:
    """The index of the point with the best ``metric`` (the first on a tie), or None when no point has
    a finite value of it.  ``metric`` must be a validation metric: only it is read, so the test
    metrics beside it can never move the choice."""
    if not metric.startswith("val_"):
        raise ValueError(f"the best eval step is chosen on a validation metric, not {metric!r}")
    sign = -1.0 if lower_is_better(metric) else 1.0
    best, at = None, None
    for i, p in enumerate(points):
        v = p.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (best is None or sign * v > best):
            best, at = sign * v, i
    return at


class BestVal:
    """``record["best_val"]``: the test metrics at the eval step with the best validation objective
    (``{"step", "objective": {"metric", "value"}, "metrics"}``), beside the final ones; None without a
    validation split.  Fed every evaluation in order (:meth:`see`); kept in checkpoints."""

    def __init__(self, metric: str, best: dict | None = None):
        self.metric, self.best = metric, best

    def see(self, step: int, metrics: dict) -> None:
        candidates = [{self.metric: self.best["objective"]["value"]}] if self.best is not None else []
        if best_index(candidates + [metrics], self.metric) == len(candidates):  # strictly better, or the first
            self.best = {"step": int(step), "objective": {"metric": self.metric, "value": metrics[self.metric]},
                         "metrics": dict(metrics)}

    @classmethod
    def from_curve(cls, metric: str, curve: list[dict]) -> "BestVal":
        """From a checkpoint's curve (written before ``best_val`` was checkpointed): its points lack only
        the per-class accuracies."""
        out = cls(metric)
        for p in curve:
            out.see(p["step"], {k: v for k, v in p.items() if k.startswith(("test_", "val_"))})
        return out


def repeat_evaluation(cfg, runner, scenario, ctx, cost, data: Split, weights, steps: int, first: dict) -> dict:
    """Synthesizers only (``runner.eval_repeats`` = N > 1): train N − 1 more fresh evaluators
    (seeds ``seed·1000 + r``) from scratch on the same synthetic set for the same steps, and
    return test / val accuracy over all N (the first is the run's own evaluator) as mean ± std."""
    n = int(cfg.runner.get("eval_repeats") or 1)
    cap = cfg.scale.get("max_eval_repeats")
    n = min(n, int(cap)) if cap is not None else n
    runs = [first]
    for r in range(1, n):
        seed = int(cfg.seed) * 1000 + r
        torch.manual_seed(seed)
        adapter = runner.build_adapter(cfg, scenario, cost, ctx.device)
        opt = trainable_optimizer(adapter.model, cfg.runner.optimizer)
        sched = make_schedule(opt, str(cfg.runner.schedule), steps)
        sub = dataclasses.replace(ctx, adapter=adapter, generator=torch.Generator().manual_seed(seed))
        step_fn, _ = fixed_set_trainer(sub, data, weights, opt)
        with cost.phase("eval_repeats"):
            for s in range(steps):
                step_fn(s + 1)
                if sched is not None:
                    sched.step()
            runs.append(evaluate_splits(adapter, scenario))
    out: dict = {"repeats": n}
    for key in ("test_accuracy", "val_accuracy"):
        vals = [float(m[key]) for m in runs if m.get(key) is not None]
        if vals:
            out[key] = vals
            out[f"{key}_mean"] = statistics.fmean(vals)
            out[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out
