"""Launches under faults (issue 24): two launches of one sweep, a moved or copied results dir,
Ctrl-C, failed writes, file modes.  Each trains tiny runs on sklearn digits."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, compose_cfg, selbench
from selbench.runners.run.job import run_job
from selbench.runners.run.lock import LOCK, RunBusy, RunLock

# ~2-4 s per job on a busy 2-core machine: long enough for two launches to overlap
SLOW = [a for a in TINY if not a.startswith(("runner.steps", "runner.eval_every"))] + [
    "runner.steps=1500", "runner.eval_every=100", "runner.checkpoint_every=100", "runner.threads=1"]


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("record.json"))]


def _trained(stderr: str) -> int:
    """Jobs this launch trained: finished-run lines less the runs it found already completed."""
    return stderr.count(": test accuracy ") - stderr.count("(already completed)")


def test_two_concurrent_launches_of_a_4_run_sweep_train_4_runs(tmp_path):
    exe = Path(sys.executable).parent / "selbench"
    cmd = [str(exe), "-m", "method=erm,random", "seed=0,1", *SLOW]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # at the same time, the same sweep with its jobs in the opposite order: the launches meet in the middle
    reverse = [str(exe), "-m", "method=random,erm", "seed=1,0", *SLOW]
    second = subprocess.Popen(reverse, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    err1, err2 = first.communicate(timeout=600)[1], second.communicate(timeout=600)[1]
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert _trained(err1) + _trained(err2) == 4, err1 + err2
    met = (err1 + err2).count("in progress in another launch") + (err1 + err2).count("(already completed)")
    assert met >= 2, err1 + err2  # each launch found runs of the other, done or in progress
    assert "resuming" not in err1 + err2  # never from a checkpoint a live launch was writing
    recs = _records(tmp_path / "results")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    assert not list((tmp_path / "results").rglob(LOCK))


def test_a_lock_of_a_dead_process_is_taken_over_a_live_one_is_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": 0}))
    with RunLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid, "since": 0}))
        with pytest.raises(RunBusy, match=f"pid {live.pid}.*if none is running, delete {lock}"):
            with RunLock(tmp_path):
                pass
        other = {"host": "elsewhere", "pid": 1, "since": 0}  # another host: cannot be checked from here
        lock.write_text(json.dumps(other))
        with pytest.raises(RunBusy, match="host elsewhere"):
            with RunLock(tmp_path):
                pass
        assert json.loads(lock.read_text()) == other  # left as it was
    finally:
        live.kill()


@pytest.fixture
def launch(tmp_path, monkeypatch, capsys):
    """The console script's ``main`` in this process (seconds, where a subprocess takes tens on a busy
    machine): returns (exit status, stderr)."""
    from selbench.runners.run.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        capsys.readouterr()
        code = main(["-m", "method=erm,random", *TINY, "runner.threads=1", *args])
        return code, capsys.readouterr().err
    return run


def test_a_moved_or_copied_results_dir_relaunches_reports_and_resumes(tmp_path, launch):
    code, err = launch("results_dir=results")
    assert code == 0, err
    on_disk = _records(tmp_path / "results")
    assert all(not Path(r["run_dir"]).is_absolute() and r["run_dir"].count("/") == 2 for r in on_disk)
    (tmp_path / "results").rename(tmp_path / "moved")  # mv results moved
    code, err = launch("results_dir=moved")
    assert code == 0, err
    assert err.count("(already completed)") == 2 and "2 records under moved/" in err
    # a copy reads its own tree: with the original's selections gone, the copy still reports and resumes
    import shutil

    from selbench.analysis.records import load_runs
    from selbench.core.records import read_record_file

    shutil.copytree(tmp_path / "moved", tmp_path / "copied")
    for p in (tmp_path / "moved").rglob("selection.npz"):
        p.unlink()
    runs = load_runs([tmp_path / "copied"])
    assert len(runs.records) == 2 and all(r["run_dir"].startswith(str(tmp_path / "copied")) for r in runs.records)
    rec = read_record_file(next((tmp_path / "copied").rglob("record.json")))
    assert Path(rec["run_dir"]).parent.parent.parent == tmp_path / "copied"
    next((tmp_path / "copied").rglob("random/*/record.json")).unlink()
    code, err = launch("results_dir=copied")
    assert code == 0 and err.count("(already completed)") == 1, err


def test_a_run_another_live_launch_holds_is_skipped_and_said_so_then_collected(tmp_path, launch):
    from selbench.runners.run.record import run_dir_for

    held = run_dir_for(compose_cfg([*TINY, "method=random", "seed=1", "runner.threads=1"], Path("results")))
    (tmp_path / held).mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # what a launch training that run leaves: its lock, and a checkpoint it keeps writing
        (tmp_path / held / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid,
                                                        "since": time.time()}))
        (tmp_path / held / "checkpoint.pt").write_bytes(b"being written by the other launch")
        code, err = launch("seed=0,1")
        assert code == 0, err
        assert f"selbench: skip {held}: in progress in another launch (host {socket.gethostname()}, pid {live.pid}" \
            in err
        assert "1 run(s) skipped: in progress in another launch" in err
        assert len(_records(tmp_path / "results")) == 3 and not (tmp_path / held / "record.json").exists()
    finally:
        live.kill()
        live.wait()
    (tmp_path / held / "checkpoint.pt").unlink()
    code, err = launch("seed=0,1")  # the other launch died: its stale lock is taken over
    assert code == 0 and _trained(err) == 1, err
    assert len(_records(tmp_path / "results")) == 4 and not list(tmp_path.rglob(LOCK))


def _checkpoints(results: Path) -> list[Path]:
    """The checkpoints so far; the launcher's writability probe makes and removes ``results/`` before the
    run starts, so the folder can vanish while it is walked."""
    try:
        return list(results.rglob("checkpoint.pt"))
    except FileNotFoundError:
        return []


def test_ctrl_c_is_one_line_exit_130_and_the_relaunch_resumes_from_that_step(tmp_path):
    exe = Path(sys.executable).parent / "selbench"
    # long enough that the interrupt lands mid-run on an idle machine (the relaunch finishes it)
    args = [*SLOW, "method=random", "runner.steps=4000"]
    proc = subprocess.Popen([str(exe), *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 240
    while time.time() < deadline and not _checkpoints(tmp_path / "results"):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("selbench: interrupted; relaunch the same command to resume from step "), err
    step = int(last.rsplit(" ", 1)[1])
    assert step > 0 and step % 100 == 0
    assert not list((tmp_path / "results").rglob(LOCK))  # released on the way out
    again = selbench(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"from step {step}" in again.stderr


def test_files_are_written_with_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        r = run_job(compose_cfg(TINY + ["method=random", "runner.steps=20", "runner.checkpoint_every=10",
                                        "runner.eval_every=10", "runner.keep_checkpoint=true"], tmp_path))
    finally:
        os.umask(old)
    run_dir = Path(r["run_dir"])
    for name in ("record.json", "selection.npz", "checkpoint.pt"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o644, name
    os.umask(0o077)
    try:
        from selbench.core.io import atomic_write_json

        atomic_write_json(tmp_path / "private.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_a_failed_checkpoint_write_names_the_file(tmp_path, monkeypatch):
    from selbench.runners.run import checkpoint as ckpt
    from selbench.core import io as core_io

    real = core_io.os.replace

    def full(src, dst):
        if str(dst).endswith(ckpt.CHECKPOINT):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(core_io.os, "replace", full)
    r = run_job(compose_cfg(TINY + ["method=erm", "runner.checkpoint_every=30"], tmp_path))
    assert r["status"] == "failed"
    assert f"cannot write {Path(r['run_dir']) / ckpt.CHECKPOINT}: No space left on device" in r["reason"]


def test_a_failed_status_write_is_one_named_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    from selbench.core import io as core_io
    from selbench.runners.run.callbacks import STATUS_FILE
    from selbench.runners.run.cli import main

    real = core_io.os.replace

    def full(src, dst):
        if str(dst).endswith(STATUS_FILE):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(core_io.os, "replace", full)
    monkeypatch.chdir(tmp_path)
    code = main(TINY + ["method=erm", "runner.steps=10"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code == 0
    line = next(ln for ln in err.splitlines() if "cannot write" in ln)
    assert line.startswith("selbench: error: cannot write ") and line.endswith(f"{STATUS_FILE}: No space left on device")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(f".{STATUS_FILE}")]  # no temp file left
    assert len(_records(tmp_path / "results")) == 1


def test_a_rerun_of_a_corrupt_record_says_so(tmp_path, capsys):
    cfg = compose_cfg(TINY + ["method=erm", "runner.steps=10"], tmp_path)
    path = Path(run_job(cfg)["run_dir"]) / "record.json"
    path.write_text('{"status": "ok", "metrics": ')
    capsys.readouterr()
    assert run_job(cfg)["status"] == "ok"
    assert f"record {path} is corrupt JSON" in capsys.readouterr().err


def test_sweep_progress_counts_jobs_with_elapsed_and_time_left(tmp_path, monkeypatch, capsys):
    from selbench.runners.run.cli import main

    monkeypatch.chdir(tmp_path)
    args = [a for a in TINY if a != "progress=false"] + ["runner.steps=10", "runner.threads=1"]
    assert main(["-m", "method=erm,random", "seed=0,1", *args]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("selbench: sweep: job ")]  # not a TTY: log lines
    assert [ln.split()[3] for ln in lines] == ["1/4", "2/4", "3/4", "4/4"], err
    assert "elapsed, about" in lines[0] and "left" in lines[0] and lines[-1].endswith("in all")
    assert main(["-m", "method=erm,random", *TINY, "runner.steps=10"]) == 0
    assert "sweep: job" not in capsys.readouterr().err  # progress=false


def test_progress_is_a_bar_on_a_tty():
    from selbench.runners.run.callbacks import progress_line

    assert progress_line(2, 8, 60, tty=True) == "selbench: sweep [#####...............] job 2/8 · 1:00 elapsed, about 3:00 left"
    assert progress_line(2, 8, 60, tty=False) == "selbench: sweep: job 2/8 done, 1:00 elapsed, about 3:00 left"
