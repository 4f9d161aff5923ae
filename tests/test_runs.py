"""End-to-end runs through the real CLI: records, sweeps, errors, reproducibility."""
import json

import pytest
import torch

from conftest import TINY, compose_cfg, selbench
from selbench.runners.run.job import run_job


def _records(root):
    return sorted(root.rglob("record.json"))


def test_same_seed_twice_gives_identical_metrics_and_other_seed_differs(tmp_path):
    a = run_job(compose_cfg(TINY + ["method=random", "seed=3"], tmp_path / "a"))
    b = run_job(compose_cfg(TINY + ["method=random", "seed=3"], tmp_path / "b"))
    c = run_job(compose_cfg(TINY + ["method=random", "seed=4"], tmp_path / "c"))
    assert a["metrics"] == b["metrics"] and a["curve"] == b["curve"]
    assert a["metrics"] != c["metrics"]


def test_record_has_config_cost_versions_and_selection(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=random"], tmp_path))
    for key in ("config", "metrics", "curve", "cost", "versions", "git", "selection", "status", "run_key"):
        assert key in rec
    for phase in ("data", "select", "train", "eval"):
        p = rec["cost"]["phases"][phase]
        assert p["wall_s"] >= 0 and p["peak_rss_mb"] > 0
    assert rec["cost"]["forward_examples"] > 0 and rec["cost"]["passes_over_pool"] > 0
    assert set(rec["metrics"]) >= {"test_accuracy", "test_balanced_accuracy", "test_loss", "test_per_class_accuracy"}
    q = rec["selection"]["quality"]
    assert 0.4 < q["auc_clean_vs_corrupted"] < 0.6  # random selection carries no signal
    run_dir = tmp_path.joinpath(*()) / rec["run_dir"].split(str(tmp_path) + "/")[-1]
    import numpy as np
    art = np.load(run_dir / "selection.npz")
    assert art["pool_indices"].shape[0] == rec["selection"]["n_selected"]
    assert art["truth_is_clean"].shape[0] == rec["scenario_info"]["n_pool"]


def test_relaunch_skips_completed_runs(tmp_path, capsys):
    cfg = compose_cfg(TINY + ["method=erm"], tmp_path)
    first = run_job(cfg)
    again = run_job(cfg)
    assert again["finished_at"] == first["finished_at"] and again["metrics"] == first["metrics"]
    assert "already completed" in capsys.readouterr().err


def test_multirun_writes_one_valid_record_per_job(tmp_path):
    out = selbench("-m", "method=erm,random", "scenario=imbalance", "seed=0,1", "dataset=mnist5k",
                   "scenario.pool_size=300", "scenario.target_per_class=5", "scenario.imbalance.minority_fraction=0.02",
                   "scale=debug", "runner.device=cpu", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(p.read_text()) for p in _records(tmp_path / "results")]
    assert len(recs) == 4
    assert {(r["method"], r["seed"]) for r in recs} == {("erm", 0), ("erm", 1), ("random", 0), ("random", 1)}
    assert all(r["status"] == "ok" for r in recs)
    assert all("minority_weight_share" in r["selection"]["quality"] for r in recs)
    assert len({r["run_dir"] for r in recs}) == 4


def test_divergence_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    tiny = [a for a in TINY if not a.startswith("runner.steps")]
    out = selbench("-m", "runner.optimizer.lr=1e12,0.05", "method=erm", *tiny, "runner.steps=40", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    recs = [json.loads(p.read_text()) for p in _records(tmp_path / "results")]
    assert sorted(r["status"] for r in recs) == ["failed", "ok"]
    failed = next(r for r in recs if r["status"] == "failed")
    assert "NaN" in failed["reason"] and failed["failed_step"] >= 1
    assert "1 of 2 run(s) failed" in out.stderr and "Traceback" not in out.stderr


def test_a_method_that_runs_out_of_memory_is_recorded_as_failed(tmp_path):
    from selbench.methods.base import Reweighter
    from selbench.methods.registry import register_method, unregister_method

    @register_method("oom_tmp")
    class OOM(Reweighter):
        def step(self, ctx, step, pool_idx, target_idx):
            raise MemoryError("cannot allocate 80 GiB")

        def pool_weights(self, ctx):
            return torch.ones(ctx.n_pool)

    try:
        rec = run_job(compose_cfg(TINY + ["method=oom_tmp"], tmp_path))
    finally:
        unregister_method("oom_tmp")
    assert rec["status"] == "failed" and rec["reason"] == "MemoryError: cannot allocate 80 GiB"
    run_dir = tmp_path / rec["run_dir"].split(str(tmp_path) + "/")[-1]
    assert (run_dir / "record.json").exists() and "MemoryError" in (run_dir / "error.txt").read_text()


# --------------------------------------------------------------------------- best-val beside final
def test_the_best_eval_step_is_chosen_on_validation_never_on_test():
    """Test and validation disagree on every step here: the choice must follow validation alone
    (a choice that read a test metric would pick step 1 for accuracy and step 3 for the loss)."""
    from selbench.runners.run.evaluation import BestVal, best_index

    curve = [{"step": 1, "test_accuracy": 0.99, "val_accuracy": 0.50, "test_loss": 0.1, "val_loss": 2.0},
             {"step": 2, "test_accuracy": 0.10, "val_accuracy": 0.80, "test_loss": 3.0, "val_loss": 0.5},
             {"step": 3, "test_accuracy": 0.60, "val_accuracy": 0.70, "test_loss": 0.05, "val_loss": 0.9}]
    assert best_index(curve, "val_accuracy") == 1
    assert best_index(curve, "val_loss") == 1  # a loss: lower is better
    best = BestVal("val_accuracy")
    for p in curve:
        best.see(p["step"], p)
    assert best.best["step"] == 2 and best.best["metrics"]["test_accuracy"] == 0.10
    assert best.best["objective"] == {"metric": "val_accuracy", "value": 0.80}
    tie = [{"val_accuracy": 0.8, "test_accuracy": 0.1}, {"val_accuracy": 0.8, "test_accuracy": 0.9}]
    assert best_index(tie, "val_accuracy") == 0  # a tie keeps the earlier step: the test score never breaks it
    assert best_index([{"test_accuracy": 0.9}], "val_accuracy") is None
    with pytest.raises(ValueError, match="validation"):
        best_index(curve, "test_accuracy")


def test_every_run_records_test_metrics_at_its_best_validation_step_beside_the_final_ones(tmp_path):
    args = [a for a in TINY if not a.startswith(("runner.steps", "runner.eval_every"))]
    rec = run_job(compose_cfg(args + ["method=erm", "runner.steps=60", "runner.eval_every=10"], tmp_path / "a"))
    bv, curve = rec["best_val"], rec["curve"]
    assert all("val_accuracy" in p and "test_accuracy" in p for p in curve)
    vals = [p["val_accuracy"] for p in curve]
    at = curve[vals.index(max(vals))]
    assert bv["step"] == at["step"] and bv["objective"] == {"metric": "val_accuracy", "value": max(vals)}
    assert set(bv["metrics"]) == set(rec["metrics"])  # the same keys as the final metrics, per-class included
    assert bv["metrics"]["test_accuracy"] == at["test_accuracy"] and bv["metrics"]["test_loss"] == at["test_loss"]
    assert rec["metrics"]["test_accuracy"] == curve[-1]["test_accuracy"]  # metrics stay the final ones
    by_loss = run_job(compose_cfg(args + ["method=erm", "runner.steps=60", "runner.eval_every=10",
                                          "objective=val_loss"], tmp_path / "b"))
    losses = [p["val_loss"] for p in by_loss["curve"]]
    assert by_loss["best_val"]["step"] == by_loss["curve"][losses.index(min(losses))]["step"]
    none = run_job(compose_cfg(TINY + ["method=erm", "scenario.val_per_class=0"], tmp_path / "c"))
    assert none["status"] == "ok" and none["best_val"] is None


def test_a_resumed_run_keeps_the_best_validation_step_it_had_seen(tmp_path):
    from pathlib import Path

    args = [a for a in TINY if not a.startswith(("runner.steps", "runner.eval_every"))] + [
        "method=random", "runner.steps=40", "runner.eval_every=10", "runner.checkpoint_every=20",
        "runner.keep_checkpoint=true"]
    full = run_job(compose_cfg(args, tmp_path))
    (Path(full["run_dir"]) / "record.json").unlink()
    resumed = run_job(compose_cfg(args, tmp_path))
    assert resumed["resumed_from_step"] == 20 and resumed["best_val"] == full["best_val"]


def test_a_job_checked_before_launch_is_not_checked_again_when_it_runs(tmp_path):
    """``check_config`` once per job: the pre-launch check of the command line covers the job that
    runs it; a job with another config (here another seed) is checked on its own."""
    from selbench.methods.base import Selection, Selector
    from selbench.methods.registry import register_method, unregister_method
    from selbench.runners.run.validate import validate_overrides

    calls = []

    @register_method("count_checks_tmp")
    class CountChecks(Selector):
        @classmethod
        def check_config(cls, cfg, run_cfg):
            calls.append(int(run_cfg.seed))

        def select(self, ctx):
            return Selection(torch.arange(ctx.k_budget))

    args = TINY + ["method=count_checks_tmp", "runner.steps=4", "runner.eval_every=4", f"results_dir={tmp_path}"]
    try:
        assert validate_overrides(args) == 1 and calls == [0]
        assert run_job(compose_cfg(args))["status"] == "ok" and calls == [0]
        assert run_job(compose_cfg(args + ["seed=5"]))["status"] == "ok" and calls == [0, 5]
    finally:
        unregister_method("count_checks_tmp")
