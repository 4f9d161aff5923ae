"""Every reweighter on its defaults, on scenarios no preset was designed for (issue 25).

Default suite (seconds): each reweighter finishes a short run on its defaults with finite metrics and a
``record["best_val"]`` that really is the eval step with the best validation accuracy.

Slow suite (``-m slow``, minutes): the memorisation regime (an MLP on Fashion-MNIST with 50% symmetric
noise, a pool of 3,000 trained for ≈ 64 epochs, where ``erm`` memorises the noise): no NaN, and no
finish below ``erm``; and a rare class flipped into the majority where ``target_only`` learns: no
one-class collapse.  Where a method still fails the failure is a finding, stated with its mechanism
and numbers in the method's page and kept here as a strict xfail (docs/findings.md).
"""
from __future__ import annotations

import math

import pytest

from conftest import TINY, compose_cfg, needs_fashion
from selbench.runners.run.job import run_job

REWEIGHTERS = ("bads", "l2rw", "mwnet", "blo")


def _finite(metrics: dict) -> bool:
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


@pytest.mark.parametrize("method", REWEIGHTERS)
def test_defaults_finish_without_nan_and_record_best_val(tmp_path, one_thread, method):
    rec = run_job(compose_cfg(TINY + [f"method={method}", "runner.eval_every=20"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert _finite(rec["metrics"]), rec["metrics"]
    best = rec["best_val"]
    assert best is not None and best["objective"]["metric"] == "val_accuracy"
    assert set(best["metrics"]) == set(rec["metrics"]) and _finite(best["metrics"])
    evals = [p for p in rec["curve"] if "val_accuracy" in p]
    assert len(evals) >= 3
    top = max(p["val_accuracy"] for p in evals)
    assert best["objective"]["value"] == pytest.approx(top)
    first = next(p for p in evals if p["val_accuracy"] == top)  # ties: the earliest step
    assert best["step"] == first["step"] and best["metrics"]["test_accuracy"] == pytest.approx(first["test_accuracy"])


#: the memorisation regime: erm fits the 50% noise (test accuracy falls from ≈ 0.75 to ≈ 0.5)
MEMORISE = ["dataset=fashion_mnist", "scenario=sym_noise", "scenario.pool_size=3000", "scenario.target_per_class=20",
            "model=mlp", "scale=paper", "runner.steps=1500", "runner.eval_every=250", "runner.threads=1",
            "runner.device=cpu", "progress=false", "seed=0"]

@pytest.fixture(scope="module")
def erm_memorising(tmp_path_factory):
    rec = run_job(compose_cfg(MEMORISE + ["method=erm"], tmp_path_factory.mktemp("erm")))
    # the regime is what it claims: erm memorises (its final accuracy is well below its best)
    assert rec["status"] == "ok" and rec["best_val"]["metrics"]["test_accuracy"] - rec["metrics"]["test_accuracy"] > 0.1
    return rec


@needs_fashion
@pytest.mark.slow
@pytest.mark.parametrize("method", ["bads", "l2rw", "mwnet", "blo"])
def test_long_training_neither_diverges_nor_ends_below_erm(tmp_path, erm_memorising, method):
    rec = run_job(compose_cfg(MEMORISE + [f"method={method}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert _finite(rec["metrics"]) and _finite(rec["best_val"]["metrics"])
    per_class = rec["metrics"]["test_per_class_accuracy"]
    assert sum(a > 0.05 for a in per_class) >= len(per_class) // 2, per_class  # not collapsed onto a few classes
    assert rec["metrics"]["test_accuracy"] >= erm_memorising["metrics"]["test_accuracy"], rec["metrics"]


@needs_fashion
@pytest.mark.slow
def test_l2rw_runs_away_without_the_shared_optimisers_clip(tmp_path, erm_memorising):
    """Why the vision runner clips the gradient norm (runner.optimizer.clip_grad_norm, loop.GradClip):
    L2RW's normalised weights put a batch on one example, and with momentum 0.9 at lr 0.05 on a net
    without normalisation the weights run away (NaN, or chance accuracy before it) — the reference
    implementation on the same batches does the same (docs/methods/l2rw.md). With the clip it holds."""
    rec = run_job(compose_cfg(MEMORISE + ["method=l2rw", "runner.optimizer.clip_grad_norm=null"], tmp_path))
    ran_away = rec["status"] == "failed" or rec["metrics"]["test_accuracy"] < erm_memorising["metrics"]["test_accuracy"]
    assert ran_away, rec.get("metrics")


#: a 1:200 minority (25 coats among 5,000 pullovers) with 40% of the coats labelled pullover, β = 0.005
RARE_FLIPPED = ["dataset=fashion_mnist", "scenario=imbalance", "scenario.classes=[2,4]", "scenario.imbalance.minority=[4]",
                "scenario.imbalance.minority_fraction=0.005", "scenario.pool_size=5000", "scenario.target_per_class=25",
                "scenario.noise={kind:asymmetric,rate:0.4}", "~dataset.asym_map", "+dataset.asym_map={4:2}",
                "budget=b0005", "scale=small", "runner.threads=1", "runner.device=cpu", "progress=false"]


@needs_fashion
@pytest.mark.slow
@pytest.mark.parametrize("method", [pytest.param("blo", marks=pytest.mark.xfail(strict=True, reason=(
    "measured 0.500/0.500/0.500 balanced accuracy vs target_only 0.727, also with the paper's kept count "
    "(match_examples=false) and before the cached features: the scorer ranks the minority first but stays near "
    "uniform, so the sampled kept batch is near-random; at method.weight_lr=1e-2 it learns the minority in all 3 seeds "
    "(0.793/0.714/0.757): the scorer's step size at this length, not the cache or kept count "
    "(docs/methods/online_blo.md)")))])
def test_no_one_class_collapse_where_target_only_learns(tmp_path, method):
    def balanced(m):
        return [run_job(compose_cfg(RARE_FLIPPED + [f"method={m}", f"seed={s}"], tmp_path))["metrics"]
                ["test_balanced_accuracy"] for s in range(3)]
    ref = balanced("target_only")
    assert min(ref) > 0.6, ref  # target_only learns the task
    got = balanced(method)
    assert min(got) > 0.55, f"{method} predicted one class in some seed: {got} (target_only {ref})"
