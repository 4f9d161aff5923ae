"""Sweep bookkeeping that works with every Hydra launcher.

Each job writes ``selbench_status.json`` into its own Hydra output directory (in
whatever process or cluster node it runs); this callback, which Hydra calls in the
launching process, remembers where the run or sweep lives so the CLI can count
failures and print the summary afterwards, even when jobs ran in other processes.

**Sweep progress.**  After each job of a multirun, one line: jobs done of the sweep's N,
time elapsed since launch and an estimate of the time left (a bar on a TTY, a plain log
line otherwise; ``progress=false`` turns both off).  It is printed where the job ran
(the launching process, or a joblib / submitit worker), counting the status files of the
whole sweep, so parallel launchers count right; N and the launch time come from the
launching process through ``SELBENCH_SWEEP`` (``N:start``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

STATUS_FILE = "selbench_status.json"
SWEEP_ENV = "SELBENCH_SWEEP"
OUTPUT_ROOTS: list[str] = []


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(done: int, total: int | None, elapsed: float, tty: bool) -> str:
    """``job i/N, elapsed, time left`` (N unknown: no estimate)."""
    if not total:
        return f"selbench: sweep: job {done} done, {_clock(elapsed)} elapsed"
    left = elapsed / done * (total - done) if done else float("nan")
    tail = f"{_clock(elapsed)} elapsed, about {_clock(left)} left" if done < total else f"{_clock(elapsed)} in all"
    if tty:
        filled = round(20 * done / total)
        return f"selbench: sweep [{'#' * filled}{'.' * (20 - filled)}] job {done}/{total} · {tail}"
    return f"selbench: sweep: job {done}/{total} done, {tail}"


class SweepStatus(Callback):
    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        OUTPUT_ROOTS.append(str(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        OUTPUT_ROOTS.append(str(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        sweep = os.environ.get(SWEEP_ENV)
        if not sweep or config.get("progress", "auto") is False:
            return
        total, started = sweep.split(":", 1)
        done = sum(1 for _ in Path(str(config.hydra.sweep.dir)).rglob(STATUS_FILE))
        tty = sys.stderr.isatty()
        print(progress_line(done, int(total) or None, time.time() - float(started), tty), file=sys.stderr)


def collect_statuses(roots: list[str]) -> list[dict]:
    out = []
    for root in roots:
        for f in sorted(Path(root).rglob(STATUS_FILE)):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                out.append({"status": "error", "reason": f"unreadable status file {f}"})
    return out
