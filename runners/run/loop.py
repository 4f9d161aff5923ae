"""The training loop: a fixed number of steps with periodic evaluation.

Every method trains for the same number of steps (the ``scale`` caps them uniformly).
How many examples each step trains on is the method's: equal for all under
``runner.match_examples`` (``runners/run/context.py``), and always recorded
(``record["compute"]``), so a table can show what each method spent.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Callable

import torch
from tqdm.auto import tqdm

from selbench.core.errors import ConfigError, DivergedError


def trainable_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """The runner's optimiser over the model's trainable parameters: frozen ones (a LoRA base
    model) are not the optimiser's, so no weight decay or noise reaches them."""
    return make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The shared optimiser (``runner.optimizer``), with its gradient-norm clip when
    ``clip_grad_norm`` is set (:class:`GradClip`)."""
    name = str(cfg.name)
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.get("momentum", 0.0),
                              weight_decay=cfg.get("weight_decay", 0.0), nesterov=cfg.get("nesterov", False))
    elif name == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.get("weight_decay", 0.0))
    elif name == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.get("weight_decay", 0.0))
    else:
        raise ConfigError(f"runner.optimizer.name={name!r} (choose from: sgd, adam, adamw)")
    if cfg.get("clip_grad_norm") is not None:
        GradClip(opt, float(cfg.clip_grad_norm))
    return opt


class GradClip:
    """The shared optimiser's guard against a runaway step: before every ``step()``, the global
    L2 norm of the gradients is clipped to ``max_norm`` (``torch.nn.utils.clip_grad_norm_``).

    Why it is the harness's and not a method's: a reweighter whose normalised weights put a
    whole batch on one example (L2RW, eq. 12) takes a step of that example's gradient, up to
    ~5x the batch-mean gradient of ``erm``, and with momentum 0.9 on a net without
    normalisation the weights run away (docs/methods/l2rw.md). The vision default (5) is the
    loosest round bound that stops it (10 does not: L2RW still falls to 0.30–0.51) and sits above
    the largest step ``erm`` takes in the quickstart setting (3.7–4.2): ``erm``, ``bads``, ``blo``
    are never clipped there, ``target_only`` / ``random`` in ≤ 0.8% of steps, ``mwnet`` ≤ 3%,
    ``l2rw`` ~20%. A step under the bound is multiplied by exactly 1.0 (bit-identical). How
    often it acted is in ``record["optim"]`` (:meth:`summary`), per run. Counters stay on the
    device (no host read per step); they travel in the checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float):
        self.max_norm = max_norm
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        dev = self.params[0].device if self.params else "cpu"
        self.steps = torch.zeros((), dtype=torch.long, device=dev)
        self.clipped = torch.zeros((), dtype=torch.long, device=dev)
        self.largest = torch.zeros((), dtype=torch.float32, device=dev)
        optimizer.register_step_pre_hook(lambda *_: self._clip())
        optimizer.grad_clip = self

    def _clip(self) -> None:
        with_grad = [p for p in self.params if p.grad is not None]
        if not with_grad:
            return
        norm = torch.nn.utils.clip_grad_norm_(with_grad, self.max_norm).detach().float().to(self.steps.device)
        self.steps += 1
        self.clipped += (norm > self.max_norm).long()
        self.largest = torch.maximum(self.largest, torch.nan_to_num(norm, nan=float("inf")))

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(), "clipped": self.clipped.clone(), "largest": self.largest.clone()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)

    def summary(self) -> dict:
        steps, clipped = int(self.steps), int(self.clipped)
        return {"clip_grad_norm": self.max_norm, "steps": steps, "clipped_steps": clipped,
                "clipped_fraction": clipped / steps if steps else 0.0, "largest_grad_norm": float(self.largest)}


def clip_summary(optimizer: torch.optim.Optimizer) -> dict:
    """``record["optim"]``: the main optimiser's clip, and how often it acted (``clip_grad_norm``
    None: no clip)."""
    clip = getattr(optimizer, "grad_clip", None)
    return clip.summary() if clip is not None else {"clip_grad_norm": None}


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


PRECISIONS = ("fp32", "bf16")


def check_precision(precision) -> str:
    """``runner.precision`` (unset = ``fp32``), or one line naming the bad value: the one check,
    before launch (``validate.py``) and at the loop's start."""
    precision = str(precision or "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"runner.precision={precision!r} (choose from: {', '.join(PRECISIONS)})")
    return precision


def autocast_for(precision: str, device: torch.device | str):
    """The ``runner.precision`` context: ``fp32`` (none) or ``bf16`` (``torch.autocast``)."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


class StepStats:
    """Per-step stats accumulated on the device: no host synchronisation until ``read``.

    Tensor entries are summed as float64 tensors where they live, numbers on the host.
    The window's tensor losses are kept (one scalar each) so that ``read`` can report the
    step of the first non-finite one; a loss given as a number is checked at once (free).
    ``read`` does one device → host transfer per device.
    """

    def __init__(self):
        self.sums: dict = {}
        self.losses: list[tuple[int, torch.Tensor]] = []
        self.last_loss = float("nan")
        self.n = 0

    def add(self, step: int, out: dict) -> None:
        loss = out["loss"]
        if isinstance(loss, torch.Tensor):
            self.losses.append((step, loss.detach().reshape(())))
        else:
            self.last_loss = float(loss)
            if not math.isfinite(self.last_loss):
                raise DivergedError(step)
        for k, v in out.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().reshape(()).double()
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                v = float(v)
            else:
                continue
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += 1

    @staticmethod
    def _host(tensors: list) -> list[float]:
        """The values of 0-d tensors, one transfer per device they live on."""
        out: list = [None] * len(tensors)
        for dev in {t.device for t in tensors}:
            at = [i for i, t in enumerate(tensors) if t.device == dev]
            for i, v in zip(at, torch.stack([tensors[i].double() for i in at]).tolist()):
                out[i] = v
        return out

    def first_nonfinite(self) -> int | None:
        """The step of the window's first non-finite tensor loss, or None."""
        vals = self._host([t for _, t in self.losses])
        return next((s for (s, _), v in zip(self.losses, vals) if not math.isfinite(v)), None)

    def read(self) -> tuple[dict[str, float], float]:
        """Means over the window (``train_<name>``) and the last loss; raises ``DivergedError``
        at the window's first non-finite loss."""
        keys = [k for k, v in self.sums.items() if isinstance(v, torch.Tensor)]
        vals = self._host([self.sums[k] for k in keys] + [t for _, t in self.losses])
        losses = vals[len(keys):]
        for (s, _), v in zip(self.losses, losses):
            if not math.isfinite(v):
                raise DivergedError(s)
        sums = {**self.sums, **dict(zip(keys, vals))}
        means = {f"train_{k}": v / self.n for k, v in sums.items()}
        last = losses[-1] if losses else self.last_loss
        self.sums, self.losses, self.n = {}, [], 0
        return means, last


def run_steps(steps: int, eval_every: int, step_fn: Callable[[int], dict], on_eval: Callable[[int, dict], None],
              cost, progress: bool, desc: str, start_step: int = 0,
              checkpoint_every: int = 0, on_checkpoint: Callable[[int], None] | None = None,
              precision: str = "fp32", device: torch.device | str = "cpu") -> None:
    """Run ``step_fn(step)`` for steps ``start_step+1 … steps``; ``on_eval`` at each eval point.

    **Stats channel.** ``step_fn`` returns a dict of scalars (``loss`` and whatever the
    method reports: BADS's ``s_bar``, L2RW's ``zero_batch``, BLO's ``n_kept`` …), as
    tensors (kept on the device) or numbers.  Every numeric entry is averaged over the
    steps of an eval window and handed to ``on_eval`` as ``train_<name>``, so it reaches
    the curve, the logger and the record.

    **No host synchronisation inside the window.** Stats are summed on the device
    (:class:`StepStats`) and read once per eval point.  The non-finite-loss check runs
    there too: a NaN/inf loss raises ``DivergedError`` with the step it first appeared at,
    so the run is recorded as failed at that step (steps after it in the window ran on a
    diverged model and are discarded with the run).  If a method raises on the diverged
    values before the eval point, the window is checked first, so the divergence — not
    the secondary error — is what the record says.

    Training time and evaluation time go to separate cost phases.  ``precision=bf16``
    runs the steps under ``torch.autocast`` (evaluation stays fp32).  Checkpoints are
    taken right after an evaluation, once at least ``checkpoint_every`` steps have passed
    since the last one, so no half-averaged window is lost.
    """
    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress, file=sys.stderr, leave=False)
    step = last_ckpt = start_step
    stats = StepStats()
    amp = autocast_for(precision, device)  # checked before the first step
    try:
        for point in eval_points(steps, eval_every):
            if point <= step:
                continue
            with cost.phase("train"):
                while step < point:
                    step += 1
                    try:
                        with amp:
                            out = step_fn(step)
                        stats.add(step, out)
                    except DivergedError:
                        raise
                    except Exception:
                        bad = stats.first_nonfinite()
                        if bad is not None:
                            raise DivergedError(bad) from None
                        raise
                    bar.update(1)
            means, loss = stats.read()
            with cost.phase("eval"):
                on_eval(step, means)
            bar.set_postfix(loss=f"{loss:.3f}")
            if on_checkpoint and checkpoint_every > 0 and step - last_ckpt >= checkpoint_every and step < steps:
                with cost.phase("checkpoint"):
                    on_checkpoint(step)
                last_ckpt = step
    finally:
        bar.close()
