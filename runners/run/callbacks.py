"""Sweep bookkeeping that works with every Hydra launcher.

Each job writes ``selbench_status.json`` into its own Hydra output directory (in
whatever process or cluster node it runs); this callback, which Hydra calls in the
launching process, remembers where the run or sweep lives so the CLI can count
failures and print the summary afterwards, even when jobs ran in other processes.
"""
from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

STATUS_FILE = "selbench_status.json"
OUTPUT_ROOTS: list[str] = []


class SweepStatus(Callback):
    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        OUTPUT_ROOTS.append(str(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        OUTPUT_ROOTS.append(str(config.hydra.sweep.dir))


def collect_statuses(roots: list[str]) -> list[dict]:
    out = []
    for root in roots:
        for f in sorted(Path(root).rglob(STATUS_FILE)):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                out.append({"status": "error", "reason": f"unreadable status file {f}"})
    return out
