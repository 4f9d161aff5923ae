"""The training loop: a fixed number of steps with periodic evaluation.

Every method trains for the same number of steps (the ``scale`` caps them uniformly).
How many examples each step trains on is the method's: equal for all under
``runner.match_examples`` (``runners/run/context.py``), and always recorded
(``record["compute"]``), so a table can show what each method spent.
"""
from __future__ import annotations

import math
import sys
from typing import Callable

import torch
from tqdm.auto import tqdm

from selbench.core.errors import ConfigError, DivergedError


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    name = str(cfg.name)
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.get("momentum", 0.0),
                               weight_decay=cfg.get("weight_decay", 0.0), nesterov=cfg.get("nesterov", False))
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.get("weight_decay", 0.0))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.get("weight_decay", 0.0))
    raise ConfigError(f"runner.optimizer.name={name!r} (choose from: sgd, adam, adamw)")


def make_schedule(optimizer, kind: str, steps: int):
    if kind == "constant":
        return None
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    raise ConfigError(f"runner.schedule={kind!r} (choose from: constant, cosine)")


def eval_points(steps: int, every: int) -> list[int]:
    pts = list(range(every, steps + 1, every)) if every and every > 0 else []
    if not pts or pts[-1] != steps:
        pts.append(steps)
    return pts


def run_steps(steps: int, eval_every: int, step_fn: Callable[[int], dict], on_eval: Callable[[int, dict], None],
              cost, progress: bool, desc: str, start_step: int = 0,
              checkpoint_every: int = 0, on_checkpoint: Callable[[int], None] | None = None) -> None:
    """Run ``step_fn(step)`` for steps ``start_step+1 … steps``; ``on_eval`` at each eval point.

    **Stats channel.** ``step_fn`` returns a dict of scalars (``loss`` and whatever the
    method reports: BADS's ``s_bar``, L2RW's ``zero_batch``, BLO's ``n_kept`` …).  Every
    numeric entry is averaged over the steps of an eval window and handed to ``on_eval``
    as ``train_<name>``, so it reaches the curve, the logger and the record.

    Training time and evaluation time go to separate cost phases.  A non-finite loss
    raises ``DivergedError`` with the step, so the run is recorded as failed there.
    Checkpoints are taken right after an evaluation, once at least ``checkpoint_every``
    steps have passed since the last one, so no half-averaged window is lost.
    """
    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress, file=sys.stderr, leave=False)
    step = last_ckpt = start_step
    sums: dict[str, float] = {}
    n = 0
    for point in eval_points(steps, eval_every):
        if point <= step:
            continue
        with cost.phase("train"):
            while step < point:
                step += 1
                out = step_fn(step)
                loss = float(out["loss"])
                if not math.isfinite(loss):
                    bar.close()
                    raise DivergedError(step)
                for k, v in out.items():
                    if isinstance(v, (int, float, torch.Tensor)) and not isinstance(v, bool):
                        sums[k] = sums.get(k, 0.0) + float(v)
                n += 1
                bar.update(1)
        with cost.phase("eval"):
            on_eval(step, {f"train_{k}": v / n for k, v in sums.items()})
        bar.set_postfix(loss=f"{loss:.3f}")
        sums.clear()
        n = 0
        if on_checkpoint and checkpoint_every > 0 and step - last_ckpt >= checkpoint_every and step < steps:
            with cost.phase("checkpoint"):
                on_checkpoint(step)
            last_ckpt = step
    bar.close()
