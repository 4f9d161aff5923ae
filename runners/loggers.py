"""Metric loggers (``logger=none|jsonl|…``).  The run record stays the source of truth;
a logger only mirrors metrics as they happen.  Each is imported only when chosen."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

LOGGERS: dict[str, Callable[..., "Logger"]] = {}


def register_logger(name: str):
    def deco(cls):
        LOGGERS[name] = cls
        return cls

    return deco


class Logger:
    def __init__(self, cfg: Any, run_dir: Path, config: dict):
        self.cfg, self.run_dir, self.config = cfg, run_dir, config

    def log(self, step: int, metrics: dict) -> None:
        pass

    def finish(self, record: dict) -> None:
        pass


@register_logger("none")
class NoLogger(Logger):
    pass


@register_logger("jsonl")
class JsonlLogger(Logger):
    """Appends one JSON line per logged step to ``<run_dir>/metrics.jsonl``."""

    def __init__(self, cfg, run_dir, config):
        super().__init__(cfg, run_dir, config)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._f = open(run_dir / "metrics.jsonl", "w")

    def log(self, step, metrics):
        self._f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._f.flush()

    def finish(self, record):
        self._f.close()


def make_logger(cfg: Any, run_dir: Path, config: dict) -> Logger:
    from selbench.runners.errors import ConfigError

    name = str(cfg.name)
    if name not in LOGGERS:
        raise ConfigError(f"unknown logger {name!r} (choose from: {', '.join(sorted(LOGGERS))})")
    return LOGGERS[name](cfg, run_dir, config)
