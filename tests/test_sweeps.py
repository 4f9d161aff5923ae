"""Sweeps under faults: kill and relaunch, launchers, Optuna, load."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, compose_cfg, selbench
from selbench.runners.run.job import run_job

# long enough to be killed mid-way, short enough for CI: ~1-3 s per job on 2 cores
KILLABLE = [a for a in TINY if not a.startswith(("runner.steps", "runner.eval_every"))] + [
    "runner.steps=3000", "runner.eval_every=100", "runner.checkpoint_every=100", "method=random",
    "runner.threads=1"]  # the in-process reference run must not inherit another test's thread count


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("record.json"))]


def test_killed_sweep_resumes_without_redoing_or_losing_runs(tmp_path):
    exe = Path(sys.executable).parent / "selbench"
    cmd = [str(exe), "-m", "seed=0,1", *KILLABLE]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    results = tmp_path / "results"
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        done0 = list(results.glob("*/random/s0-*/record.json"))
        ck1 = list(results.glob("*/random/s1-*/checkpoint.pt"))
        if done0 and ck1:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait()
    assert killed, "the sweep finished before it could be killed; make KILLABLE longer"
    assert not list(results.glob("*/random/s1-*/record.json"))  # the interrupted job left no record
    first = {r["seed"]: r for r in _records(results)}
    assert set(first) == {0}

    out = selbench("-m", "seed=0,1", *KILLABLE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "already completed" in out.stderr and "resuming" in out.stderr
    after = {r["seed"]: r for r in _records(results)}
    assert len(_records(results)) == 2 and set(after) == {0, 1}
    assert after[0]["finished_at"] == first[0]["finished_at"]  # the finished job was not rerun
    assert after[1]["resumed_from_step"] and after[1]["resumed_from_step"] % 100 == 0
    assert not list(results.rglob("checkpoint.pt"))  # removed once the record is written

    # the resumed run ends exactly where an uninterrupted one does
    clean = run_job(compose_cfg(KILLABLE + ["seed=1"], tmp_path / "clean"))
    assert clean["metrics"] == after[1]["metrics"]
    assert [p["test_accuracy"] for p in clean["curve"]] == [p["test_accuracy"] for p in after[1]["curve"]]


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_write_every_record(tmp_path, launcher):
    out = selbench("-m", f"launcher={launcher}", "method=erm,random", "seed=0,1", *TINY, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    recs = _records(tmp_path / "results")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    assert "4 records under" in out.stderr


def test_failures_in_parallel_jobs_are_counted(tmp_path):
    tiny = [a for a in TINY if not a.startswith("runner.steps")]
    out = selbench("-m", "launcher=joblib", "runner.optimizer.lr=1e12,0.05", "method=erm", *tiny, "runner.steps=40",
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "selbench: 1 of 2 run(s) failed"


def test_optuna_finds_a_better_learning_rate_than_a_bad_default(tmp_path):
    base = [a for a in TINY if not a.startswith("runner.steps")] + ["runner.steps=40", "method=pool_only"]
    bad = run_job(compose_cfg(base + ["runner.optimizer.lr=1e-5"], tmp_path / "bad"))
    out = selbench("-m", "experiment=tune/lr", *base, "hydra.sweeper.n_trials=6", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    opt = list((tmp_path / "results" / "_hydra").rglob("optimization_results.yaml"))
    assert opt, out.stderr
    import yaml
    best = yaml.safe_load(opt[0].read_text())
    # the sweeper maximised validation accuracy, never test accuracy, and every record says so
    assert bad["objective"] == {"metric": "val_accuracy", "split": "val", "value": bad["metrics"]["val_accuracy"]}
    trials = [r for r in _records(tmp_path / "results") if r["experiment"] == "tune/lr"]
    assert len(trials) == 6 and all(r["objective"]["split"] == "val" for r in trials)
    assert best["best_value"] == max(r["metrics"]["val_accuracy"] for r in trials)
    assert best["best_value"] > bad["metrics"]["val_accuracy"] + 0.1
    assert float(best["best_params"]["runner.optimizer.lr"]) > 1e-4


@pytest.mark.slow
def test_a_100_job_joblib_sweep_writes_100_valid_records(tmp_path):
    seeds = ",".join(str(i) for i in range(50))
    out = selbench("-m", "launcher=joblib", "method=erm,random", f"seed={seeds}", *TINY, "runner.steps=20",
                   cwd=tmp_path, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = _records(tmp_path / "results")
    assert len(recs) == 100 and all(r["status"] == "ok" for r in recs)
    assert len({r["run_dir"] for r in recs}) == 100


def _kinds():
    from selbench.methods.registry import registered

    return sorted(n for n, e in registered().items()
                  if e.cls.kind == "reweighter" and "vision" in e.cls.modalities) + ["random"]


@pytest.mark.parametrize("method", _kinds())
def test_every_method_resumes_from_a_checkpoint_to_the_same_result(tmp_path, method):
    """Finish a run keeping its mid-run checkpoint, drop the record (as after a kill), rerun:
    the resumed run must end bit-for-bit where the uninterrupted one did — which needs every
    piece of method state (weights, weight nets and their optimisers, running averages,
    noise generators) in the checkpoint."""
    args = [a for a in TINY if not a.startswith(("runner.steps", "runner.eval_every"))] + [
        f"method={method}", "runner.steps=40", "runner.eval_every=10", "runner.checkpoint_every=20",
        "runner.keep_checkpoint=true"]
    full = run_job(compose_cfg(args, tmp_path))
    assert full["status"] == "ok", full.get("reason")
    run_dir = Path(full["run_dir"])
    (run_dir / "record.json").unlink()
    resumed = run_job(compose_cfg(args, tmp_path))
    assert resumed["resumed_from_step"] == 30 or resumed["resumed_from_step"] == 20
    assert resumed["metrics"] == full["metrics"]
    assert resumed["optim"] == full["optim"]  # the clip's counters travel in the checkpoint
    assert [p["test_loss"] for p in resumed["curve"]] == [p["test_loss"] for p in full["curve"]]
    assert resumed["selection"]["quality"] == full["selection"]["quality"]
