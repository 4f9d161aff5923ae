"""The proxy trainer: a run's model trained in place before it selects or scores (a warm-up on a
slice of the data, the BADS-paper baselines' proxy epochs, SPICE's online steps, LESS's
checkpointed warm-up), its state saved and restored, and the cache keys they depend on.  One
loop, ``train_in_place`` (cyclic sampler, divergence check); ``warm_up`` is it on ``proxy_set``.
Shared by the gradient selectors, TRAK, IFD and the score filters."""
from __future__ import annotations

import math
import time
from enum import Enum

import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.core.sampling import CyclicSampler
from selbench.methods.base import RunContext


class ProxyData(str, Enum):
    both = "both"                 # random proxy_fraction of the pool + the target set
    pool_random = "pool_random"   # LESS's warm-up: a random fraction of the pool
    target = "target"
    none = "none"                 # gradients of the runner's initial model


def proxy_set(ctx: RunContext, cfg, gen: torch.Generator) -> Split | None:
    kind = ProxyData(cfg.proxy_data)
    if kind is ProxyData.none or int(cfg.proxy_steps) == 0:
        return None
    parts = []
    if kind in (ProxyData.both, ProxyData.pool_random):
        n = max(1, round(float(cfg.proxy_fraction) * ctx.n_pool))
        parts.append(ctx.pool.subset(torch.randperm(ctx.n_pool, generator=gen)[:n]))
    if kind in (ProxyData.both, ProxyData.target) and len(ctx.target):
        parts.append(ctx.target)
    return Split.concat(*parts) if parts else None


def warm_up(ctx: RunContext, cfg, gen: torch.Generator, opt=None, on_step=None) -> float:
    """``proxy_steps`` steps of the run's model on ``proxy_set`` (batch ``ctx.batch_size``), through
    ``train_in_place``; returns the seconds spent (0 when there is nothing to warm up on)."""
    data = proxy_set(ctx, cfg, gen)
    if data is None or len(data) == 0:
        return 0.0
    return train_in_place(ctx, data, int(cfg.proxy_steps), ctx.batch_size, gen, on_step=on_step, opt=opt)


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's trainable parameters and buffers (frozen base weights of a LoRA model never change)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k in trainable or k not in dict(model.named_parameters())}


def restore(model: torch.nn.Module, saved: dict[str, Tensor]) -> None:
    model.load_state_dict(saved, strict=False)


def optimizer_key(ctx: RunContext) -> list:
    """What the proxy's optimiser depends on (for cache keys): its type and scalar defaults."""
    probe = ctx.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    return [type(probe).__name__, sorted((k, v) for k, v in probe.defaults.items()
                                         if isinstance(v, (bool, int, float, str)))]


def epochs_to_steps(epochs: float, n: int, batch: int, cap: int) -> int:
    """``⌈epochs · n / batch⌉`` optimiser steps, at least 1 and at most ``cap`` (the run's steps),
    so a proxy never costs more updates than the run it serves."""
    return int(max(1, min(cap, math.ceil(float(epochs) * n / max(batch, 1)))))


def train_in_place(ctx: RunContext, data: Split, steps: int, batch: int, gen: torch.Generator,
                   on_step=None, opt: torch.optim.Optimizer | None = None) -> float:
    """The one proxy trainer: ``steps`` optimiser steps of the run's model on ``data`` (mean loss,
    batches from a ``CyclicSampler``), stopped with a ``FloatingPointError`` naming the step at a
    non-finite loss; ``opt`` continues a caller's optimiser (its state is the caller's to read),
    otherwise a fresh one from the runner's config; ``on_step(s)`` after step ``s`` (1-based).
    Returns the seconds spent."""
    t0 = time.perf_counter()
    model = ctx.model
    opt = opt if opt is not None else ctx.make_optimizer([p for p in model.parameters() if p.requires_grad])
    was = model.training
    model.train()
    sampler = CyclicSampler(len(data), gen)
    bs = max(1, min(batch, len(data)))
    for s in range(1, int(steps) + 1):
        idx = sampler.next(bs)
        opt.zero_grad(set_to_none=True)
        loss = ctx.adapter.per_example_loss(data.x[idx], data.y[idx]).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"proxy training diverged at step {s} (loss {float(loss)})")
        loss.backward()
        ctx.cost.count(backward=len(idx))  # a proxy's update: not a training example of the run
        opt.step()
        if on_step is not None:
            on_step(s)
    opt.zero_grad(set_to_none=True)
    model.train(was)
    return time.perf_counter() - t0
