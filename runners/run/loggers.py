"""Metric loggers (``logger=none|jsonl|…``).  The run record stays the source of truth;
a logger only mirrors metrics as they happen.  Each is imported only when chosen."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selbench.core.registry import Registry

LOGGERS = Registry("logger")
register_logger = LOGGERS.register


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


def _scalars(metrics: dict, prefix: str = "") -> dict:
    """Numbers only; nested dicts (e.g. per-domain weight shares) become ``key/sub``."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


@register_logger("wandb")
class WandbLogger(Logger):
    """Mirrors a run to Weights & Biases: the resolved config at start, every logged
    step's metrics, and at the end the record's metrics / selection quality / cost as
    the run summary plus a copy of the record as the run file ``selbench_record.json``.

    ``mode: offline`` (the default) needs no account or network: the run is written
    under ``<run_dir>/wandb/offline-run-*`` and can be uploaded later with
    ``wandb sync``.  Each job of a multirun is its own wandb run, finished when the
    job ends (failed jobs are marked with exit code 1).  ``wandb`` is imported only
    when this logger is chosen.
    """

    def __init__(self, cfg, run_dir, config):
        super().__init__(cfg, run_dir, config)
        import os

        from selbench.core.errors import ConfigError

        try:
            import wandb
        except ImportError:
            raise ConfigError("logger=wandb needs the wandb package (pip install 'selbench[wandb]'), "
                              "or choose logger=jsonl|none") from None
        mode = str(cfg.get("mode") or "offline")
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"logger.mode={mode!r} is not one of offline, online, disabled")
        os.environ.setdefault("WANDB_SILENT", "true")
        run_dir.mkdir(parents=True, exist_ok=True)
        tags = list(cfg.get("tags") or [])
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.get("project") or "selbench", entity=cfg.get("entity"),
            group=cfg.get("group") or run_dir.parent.parent.name,
            name=f"{run_dir.parent.name}/{run_dir.name}", job_type=cfg.get("job_type"),
            tags=tags or None, dir=str(run_dir), config=config, mode=mode, reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=not cfg.get("system_stats", False),
                                    disable_git=True, disable_code=True),
        )

    def log(self, step, metrics):
        self.run.log(_scalars(metrics), step=int(step))

    def finish(self, record):
        from selbench.runners.run.record import RECORD

        try:
            summary = {"status": record.get("status"), "reason": record.get("reason")}
            summary.update(_scalars(record.get("metrics") or {}, "final/"))
            sel = record.get("selection") or {}
            summary.update(_scalars({k: v for k, v in sel.items() if k != "quality"}, "selection/"))
            q = {k: v for k, v in (sel.get("quality") or {}).items() if k != "histogram"}
            summary.update(_scalars(q, "quality/"))
            cost = record.get("cost") or {}
            summary.update(_scalars(cost, "cost/"))
            self.run.summary.update({k: v for k, v in summary.items() if v is not None})
            # a copy (not a link, not named record.json: the run dir's record stays the only one)
            (Path(self.run.dir) / f"selbench_{RECORD}").write_text(json.dumps(record, indent=1, default=str))
        finally:
            self.run.finish(exit_code=0 if record.get("status") == "ok" else 1)


def make_logger(cfg: Any, run_dir: Path, config: dict) -> Logger:
    return LOGGERS.lookup(str(cfg.name))(cfg, run_dir, config)
