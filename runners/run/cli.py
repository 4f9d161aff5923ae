"""The ``selbench`` command: a Hydra app around ``run_job``.

``selbench`` with no arguments runs the quickstart comparison
(``experiment=quickstart``).  The command line is composed and checked *before*
Hydra launches anything, so a bad override exits 2 with one line and writes
nothing.  Inside a multirun each job is isolated: a failed job leaves a ``failed``
record and the sweep goes on; the exit status is 1 if any job failed, and the
last line says how many.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from selbench.methods.registry import load_builtin_methods
from selbench.runners.run.callbacks import OUTPUT_ROOTS, STATUS_FILE, collect_statuses
from selbench.core.errors import SelbenchError


def _error(msg: str) -> None:
    print(f"selbench: error: {msg}", file=sys.stderr)


def _write_status(status: dict) -> None:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / STATUS_FILE).write_text(json.dumps(status))


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    """One job.  Returns ``cfg.objective`` from the record (what an Optuna sweep maximises)."""
    from selbench.runners.run.job import run_job

    try:
        record = run_job(cfg)
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
    _write_status({"status": record["status"], "run_dir": record["run_dir"], "reason": record.get("reason")})
    if record["status"] != "ok":
        _error(f"run failed ({record['reason']}); record: {record['run_dir']}")
        return None
    m = record["metrics"]
    print(f"selbench: {record['method']} seed={record['seed']}: test accuracy {m['test_accuracy']:.4f} "
          f"-> {record['run_dir']}", file=sys.stderr)
    value = (record.get("objective") or {}).get("value")
    return float(value) if value is not None else None


_NO_VALIDATE_FLAGS = ("help", "hydra_help", "info", "shell_completion", "cfg")


def main(argv: list[str] | None = None) -> int:
    from hydra._internal.utils import get_args_parser

    from selbench.runners.run.validate import validate_overrides

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
    if not any(getattr(args, f, None) for f in _NO_VALIDATE_FLAGS):
        try:
            validate_overrides(args.overrides)
        except SelbenchError as e:
            _error(str(e))
            return 2
    OUTPUT_ROOTS.clear()
    sys.argv = [sys.argv[0]] + argv
    try:
        _app()
    except SelbenchError as e:
        _error(str(e))
        return 2
    statuses = collect_statuses(OUTPUT_ROOTS)
    done = [s["run_dir"] for s in statuses if s.get("status") == "ok"]
    if len(statuses) > 1 and done:
        _print_summary([s["run_dir"] for s in statuses if s.get("run_dir")])  # failed runs counted too
    failed = [s for s in statuses if s.get("status") != "ok"]
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
