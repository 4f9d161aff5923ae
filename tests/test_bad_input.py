"""Bad input, tried as a new user would: one line naming the problem, non-zero exit, no record."""
import errno
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg, selbench
from selbench.runners.run import record as rec
from selbench.core.errors import SelbenchError
from selbench.runners.run.cli import main
from selbench.runners.run.job import run_job


def _records(root: Path):
    return sorted(root.rglob("record.json"))


def _one_line_error(out, msg):
    lines = [ln for ln in out.stderr.strip().splitlines() if ln]
    assert out.returncode != 0
    assert len(lines) == 1 and msg in lines[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args,msg", [
    (["method=nope"], "unknown method 'nope' (choose from:"),
    (["dataset=imagenet"], "unknown dataset 'imagenet' (choose from:"),
    (["model=vgg"], "unknown model 'vgg' (choose from:"),
    (["scenario=bogus"], "unknown scenario 'bogus' (choose from:"),
    (["launcher=kubernetes"], "unknown launcher 'kubernetes' (choose from:"),
    (["-m", "method=erm,bogus"], "unknown method 'bogus'"),
    (["runner.steps=abc"], "runner.steps='abc' must be a positive integer"),
    (["runner.optimizer.lr=fast"], "runner.optimizer.lr='fast' is not a number"),
    (["method=random", "method.include_target=maybe"], "include_target"),
    (["seed=-1"], "seed=-1 must be a non-negative integer"),
    (["budget.fraction=1.5"], "budget.fraction=1.5 is out of range; allowed: (0, 1]"),
    (["budget.fraction=0"], "budget.fraction=0 is out of range"),
    (["-m", "budget.fraction=0.1,2"], "budget.fraction=2 is out of range"),
    (["scenario.noise.rate=2"], "scenario.noise.rate=2 is out of range"),
    (["runner.steps=0"], "runner.steps=0 must be a positive integer"),
    (["runner.precision=fp8"], "runner.precision='fp8' (choose from: fp32, bf16)"),
    (["dataset=cifar10", "dataset.root=/no/such/dir"], "dataset.root='/no/such/dir' does not exist"),
    (["dataset=cifar10"], "dataset=cifar10 needs dataset.root"),
    (["results_dir=/proc/selbench-results"], "results_dir='/proc/selbench-results' is not writable"),
    (["method=erm", "+unknown_key=1", "runner.nonsense=3"], "nonsense"),
    # issue 24 item 1: each of these used to pass the checks and fail in the run, or be accepted silently
    (["runner.threads=-1"], "runner.threads=-1 must be a positive integer or null"),
    (["runner.optimizer.name=lbfgs"], "runner.optimizer.name='lbfgs' (choose from: sgd, adam, adamw)"),
    (["runner.schedule=linear"], "runner.schedule='linear' (choose from: constant, cosine)"),
    (["runner.eval_batch_size=0"], "runner.eval_batch_size=0 must be a positive integer"),
    (["scenario.classes=[]"], "scenario.classes=[] keeps no class; allowed: a list of at least two class ids"),
    (["dataset=digits", "scenario.pool_size=100000"],
     "scenario.pool_size=100000 but dataset=digits scenario=sym_noise has only 58 pool examples"),
    (["runner.optimizer.lr=inf"], "runner.optimizer.lr=inf is out of range; allowed: a finite number > 0"),
    (["runner.optimizer.clip_grad_norm=0"],
     "runner.optimizer.clip_grad_norm=0 is out of range; allowed: null or a finite number > 0"),
    (["runner.optimizer.clip_grad_norm=-1"],
     "runner.optimizer.clip_grad_norm=-1 is out of range; allowed: null or a finite number > 0"),
    (["runner.checkpoint_every=-5"], "runner.checkpoint_every=-5 must be a non-negative integer"),
    (["runner.deterministic=maybe"], "runner.deterministic='maybe' (choose from: true, false)"),
    (["+runner.nosuchkey=1"], "+runner.nosuchkey: unknown runner key 'nosuchkey'; known: batch_size"),
    (["+nosuchkey=1"], "+nosuchkey: unknown top-level key 'nosuchkey'"),
    (["method=random", "+method.nosuchkey=1"], "unknown key of method random 'nosuchkey'; known: include_target"),
    (["scale=paper", "runner.steps=1e12"], "runner.steps=1000000000000.0 must be a positive integer no larger than"),
    (["runner.steps=1000000000000"], "must be a positive integer no larger than 100000000"),
    (["experiment=tune/lr", "scenario.val_per_class=0"],
     "the sweeper tunes on objective=val_accuracy, but scenario.val_per_class=0 gives no validation split"),
    (["-m", "method=erm,random", "cache_dir=/proc/selbench-cache"], "cache_dir='/proc/selbench-cache' is not writable"),
    (["progress=sometimes"], "progress='sometimes' (choose from: auto, true, false)"),
])
def test_bad_overrides(tmp_path, monkeypatch, capsys, args, msg):
    """In-process (the checks run before Hydra launches anything); one subprocess case below."""
    monkeypatch.chdir(tmp_path)
    code = main([*args, "scale=debug"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert code == 2
    assert len(lines) == 1 and msg in lines[0], err
    assert not list(tmp_path.iterdir())  # nothing written: no results folder, no Hydra logs


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_launch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["runner.device=cuda", "scale=debug"]) == 2
    assert "runner.device='cuda' but no CUDA device is available" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cuda_is_left_to_the_job_when_jobs_run_on_cluster_nodes(tmp_path):
    """A Slurm launch is made from a login node: its lack of a GPU says nothing about the job's."""
    from selbench.runners.run.validate import validate_overrides

    validate_overrides(["launcher=slurm", "runner.device=cuda", "scale=debug", f"results_dir={tmp_path / 'r'}"])


def test_a_default_pool_larger_than_the_data_is_named_before_launch(tmp_path):
    from selbench.runners.run.validate import validate_overrides

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        validate_overrides(["dataset=digits", "scale=debug", f"results_dir={tmp_path / 'r'}"])
    assert "scenario.pool_size=20000 but dataset=digits scenario=sym_noise has only 58 pool examples" in err.getvalue()
    assert not (tmp_path / "r").exists()


def test_bad_override_through_the_console_script(tmp_path):
    out = selbench("method=nope", cwd=tmp_path)
    _one_line_error(out, "unknown method 'nope' (choose from:")
    assert out.returncode == 2


def test_missing_data_files_name_the_package(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = selbench(f"dataset.root={empty}", "scale=debug", cwd=tmp_path)
    _one_line_error(out, "apt-get install dataset-fashion-mnist")
    assert not _records(tmp_path)


def _checkpointed_run_dir(tmp_path) -> tuple[list[str], Path]:
    """A run killed after its first checkpoint (simulated by keeping the checkpoint of a finished run)."""
    args = TINY + ["method=random", "runner.checkpoint_every=30", "runner.keep_checkpoint=true"]
    r = run_job(compose_cfg(args, tmp_path))
    run_dir = Path(r["run_dir"])
    (run_dir / "record.json").unlink()
    return args, run_dir


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_or_truncated_checkpoint(tmp_path, damage):
    args, run_dir = _checkpointed_run_dir(tmp_path)
    ck = run_dir / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes({"garbage": b"not a checkpoint" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    out = selbench(*args, f"results_dir={tmp_path}", cwd=tmp_path)
    _one_line_error(out, "is corrupt or truncated")
    assert "delete it to restart" in out.stderr
    assert not (run_dir / "record.json").exists()


def test_checkpoints_load_with_weights_only(tmp_path):
    _, run_dir = _checkpointed_run_dir(tmp_path)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 30 and "model" in state and "rng" in state


def test_corrupt_record_is_rerun_not_trusted(tmp_path):
    cfg = compose_cfg(TINY + ["method=erm"], tmp_path)
    first = run_job(cfg)
    path = Path(first["run_dir"]) / "record.json"
    path.write_text('{"status": "ok", "metrics": ')  # truncated JSON
    again = run_job(cfg)
    assert again["status"] == "ok" and again["metrics"] == first["metrics"]
    assert json.loads(path.read_text())["finished_at"] == again["finished_at"]


def test_disk_full_leaves_no_partial_record(tmp_path, monkeypatch):
    def enospc(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    from selbench.core import io as core_io

    monkeypatch.setattr(core_io.os, "fsync", enospc)
    cfg = compose_cfg(TINY + ["method=erm"], tmp_path)
    with pytest.raises(SelbenchError, match=r"cannot write .*/selection\.npz: No space left on device"):
        run_job(cfg)
    assert not _records(tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
