"""The one run builder: seeds, device, step count, and a method ready to train — the model (through
the task's adapter), the method object, the optimiser over the trainable parameters, the schedule
and the ``RunContext`` — built the same way for a job (``runners/run/job.py``) and for a benchmark
(``bench/common.py``), including the synthesizer step rule.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selbench.core.errors import ConfigError
from selbench.methods.base import RunContext
from selbench.runners.run.context import make_context
from selbench.runners.run.loop import make_schedule, trainable_optimizer
from selbench.runners.run.prepare import PREPARE, Prepared


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runner.device={name!r} but no CUDA device is available (use cpu or auto)")
    return torch.device(name)


def effective_steps(cfg: DictConfig) -> tuple[int, int]:
    """Steps and eval interval after the ``scale`` caps (``scale=paper`` leaves the preset's)."""
    steps = int(cfg.runner.steps)
    cap = cfg.scale.get("max_steps")
    if cap is not None:
        steps = min(steps, int(cap))
    every = int(cfg.scale.get("eval_every") or cfg.runner.eval_every)
    return steps, max(1, min(every, steps))


@dataclass
class Run:
    """A method ready to train: what the loop, the checkpoint and the record need."""

    entry: Any                  #: the registry entry (``name``, ``cls``)
    method: Any
    adapter: Any
    optimizer: torch.optim.Optimizer
    schedule: Any               #: an lr scheduler, or None (``runner.schedule=constant``)
    ctx: RunContext
    generator: torch.Generator  #: the run's host generator (samplers, method noise), checkpointed
    device: torch.device
    steps: int
    prepared: Prepared | None = None

    def prepare(self, restored: dict | None = None) -> Prepared:
        """The kind's offline phase (select / synthesise / set up the reweighter); ``restored``: the
        output a checkpoint kept, so a resumed run does not redo it."""
        self.prepared = PREPARE[self.entry.cls.kind](self.method, self.ctx, self.optimizer, self.ctx.cost,
                                                     restored=restored)
        return self.prepared

    def step(self, step: int) -> dict:
        """One training step, then the schedule's."""
        out = self.prepared.step_fn(step)
        if self.schedule is not None:
            self.schedule.step()
        return out


def build_run(cfg: DictConfig, entry, runner, scenario, cost, device: torch.device, *, steps: int,
              log: Callable[[int, dict], None] | None = None, warn: Callable[[str], None] | None = None,
              synth_steps: int | None = None) -> Run:
    """Everything of a run up to its preparation.  ``synth_steps`` caps a synthesizer's own
    iterations (default: the ``scale`` cap the training steps obey, ``scale.max_steps``)."""
    adapter = runner.build_adapter(cfg, scenario, cost, device)
    g = torch.Generator().manual_seed(int(cfg.seed))
    method = entry.cls(OmegaConf.to_object(cfg.method))
    optimizer = trainable_optimizer(adapter.model, cfg.runner.optimizer)
    schedule = make_schedule(optimizer, str(cfg.runner.schedule), steps)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=entry.cls, steps=steps, generator=g, log=log,
                       warn=warn)
    if entry.cls.kind == "synthesizer":  # a synthesizer's own iterations obey the same scale cap as training
        ctx.extra["max_steps"] = int(synth_steps) if synth_steps else cfg.scale.get("max_steps")
        ctx.extra["max_synth_iterations"] = None if synth_steps else cfg.scale.get("max_synth_iterations")
    return Run(entry, method, adapter, optimizer, schedule, ctx, g, device, steps)
