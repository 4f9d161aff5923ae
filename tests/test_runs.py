"""End-to-end runs through the real CLI: records, sweeps, errors, reproducibility."""
import json

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
