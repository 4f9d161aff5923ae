"""The ``selbench`` command: a Hydra app around ``run_job``.

``selbench`` with no arguments runs the quickstart comparison
(``experiment=quickstart``).  The command line is composed and checked *before*
Hydra launches anything — every job of the sweep — so a bad override exits 2 with
one line and writes nothing.  Inside a multirun each job is isolated: a failed job
leaves a ``failed`` record and the sweep goes on; the exit status is 1 if any job
failed, and the last line says how many.

Each job holds its run's lock (``runners/run/lock.py``) while it runs: a second launch
of the same sweep skips a run in progress and says so.  Ctrl-C ends with one line that
says from which step a relaunch resumes, and exit status 130.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from selbench.methods.registry import load_builtin_methods
from selbench.runners.run.callbacks import OUTPUT_ROOTS, STATUS_FILE, SWEEP_ENV, collect_statuses
from selbench.core.errors import SelbenchError
from selbench.core.io import atomic_write_json


class Interrupted(KeyboardInterrupt):
    """Ctrl-C inside a job, already reported (with the step a relaunch resumes from)."""


def _error(msg: str) -> None:
    print(f"selbench: error: {msg}", file=sys.stderr)


def _write_status(status: dict) -> None:
    """The job's status for the launching process: atomic, and a failed write is one named line."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir) / STATUS_FILE
        try:
            atomic_write_json(path, status)
        except OSError as e:
            _error(str(e) if isinstance(e, SelbenchError) else f"cannot write {path}: {e.strerror or e}")


def _resume_step(run_dir: Path) -> int:
    from selbench.runners.run import checkpoint as ckpt

    path = run_dir / ckpt.CHECKPOINT
    try:
        return int(ckpt.load(path)["step"]) if path.exists() else 0
    except (SelbenchError, KeyError, TypeError, ValueError):
        return 0


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    """One job.  Returns ``cfg.objective`` from the record (what an Optuna sweep maximises)."""
    from selbench.runners.run.job import run_job
    from selbench.runners.run.lock import RunBusy, RunLock
    from selbench.runners.run.record import run_dir_for

    run_dir = run_dir_for(cfg)
    try:
        with RunLock(run_dir):
            record = run_job(cfg)
    except RunBusy as e:
        print(f"selbench: skip {run_dir}: {e}", file=sys.stderr)
        _write_status({"status": "busy", "run_dir": str(run_dir), "reason": str(e)})
        return None
    except KeyboardInterrupt:
        print(f"selbench: interrupted; relaunch the same command to resume from step {_resume_step(run_dir)}",
              file=sys.stderr)
        raise Interrupted() from None
    except SelbenchError as e:
        _error(str(e))
        _write_status({"status": "error", "reason": str(e)})
        return None
    except Exception as e:  # noqa: BLE001 - a bug before training starts: one line, traceback on request
        if os.environ.get("SELBENCH_DEBUG"):
            raise
        msg = f"{type(e).__name__}: {e}".splitlines()[0]
        _error(f"{msg} (set SELBENCH_DEBUG=1 for the traceback)")
        _write_status({"status": "error", "reason": msg})
        return None
    # where the run is now (a record read from a moved results dir may name the old place)
    _write_status({"status": record["status"], "run_dir": str(run_dir), "reason": record.get("reason")})
    if record["status"] != "ok":
        _error(f"run failed ({record['reason']}); record: {run_dir}")
        return None
    m = record["metrics"]
    print(f"selbench: {record['method']} seed={record['seed']}: test accuracy {m['test_accuracy']:.4f} "
          f"-> {run_dir}", file=sys.stderr)
    value = (record.get("objective") or {}).get("value")
    return float(value) if value is not None else None


_NO_VALIDATE_FLAGS = ("help", "hydra_help", "info", "shell_completion", "cfg")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except Interrupted:
        return 130
    except KeyboardInterrupt:  # outside a job (composing, launching, summarising): nothing half-done
        print("selbench: interrupted; relaunch the same command to resume", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from hydra._internal.utils import get_args_parser

    from selbench.runners.run.validate import validate_plan

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["experiment=quickstart"]
        print("selbench: no arguments: running the quickstart comparison (experiment=quickstart)", file=sys.stderr)
    load_builtin_methods()
    try:
        args = get_args_parser().parse_intermixed_args(argv)
    except SystemExit as e:  # argparse has already printed its one-line usage error
        return int(e.code or 0)
    # Hydra's own parser wants flags before overrides; accept them in any order.
    flags = list(argv)
    for o in args.overrides:
        flags.remove(o)
    argv = flags + args.overrides
    sweep = {}
    if not any(getattr(args, f, None) for f in _NO_VALIDATE_FLAGS):
        try:
            plan = validate_plan(args.overrides)
        except SelbenchError as e:
            _error(str(e))
            return 2
        if args.multirun or plan.multirun:  # what the sweep-progress line counts against (callbacks.py)
            sweep = {SWEEP_ENV: f"{plan.n_jobs or 0}:{time.time()}"}
    OUTPUT_ROOTS.clear()
    sys.argv = [sys.argv[0]] + argv
    saved = {k: os.environ.get(k) for k in sweep}
    os.environ.update(sweep)  # inherited by launcher workers (joblib, submitit)
    try:
        _app()
    except SelbenchError as e:
        _error(str(e))
        return 2
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    statuses = collect_statuses(OUTPUT_ROOTS)
    done = [s["run_dir"] for s in statuses if s.get("status") == "ok"]
    if len(statuses) > 1 and done:
        _print_summary([s["run_dir"] for s in statuses if s.get("run_dir") and s.get("status") != "busy"])
    busy = [s for s in statuses if s.get("status") == "busy"]
    if busy:
        print(f"selbench: {len(busy)} run(s) skipped: in progress in another launch; relaunch after it "
              f"to collect them", file=sys.stderr)
    failed = [s for s in statuses if s.get("status") not in ("ok", "busy")]
    if failed:
        if len(statuses) > 1:
            print(f"selbench: {len(failed)} of {len(statuses)} run(s) failed", file=sys.stderr)
        return 1
    return 0


def _print_summary(run_dirs: list[str]) -> None:
    from selbench.analysis.summary import load_records, summary_table

    table = summary_table(load_records(run_dirs))
    roots = sorted({str(Path(d).parent.parent) for d in run_dirs})
    print("\n" + table.to_string(index=False), file=sys.stderr)
    print(f"selbench: {len(run_dirs)} records under {', '.join(roots)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
