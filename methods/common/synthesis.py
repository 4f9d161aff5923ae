"""What the byte-budgeted synthesizers share: the budget plan, per-class real picks, the
8-bit grid every stored pixel lies on, and the text fallback.

The coreset synthesizers (``random_real``, ``herding_real``, ``kcenter_real``) keep ``ipc`` real
full-colour images per class, i.e. exactly the byte budget of ``methods/common/storage.py``; the
greedy of ``herding_real`` / ``kcenter_real`` is the one the fraction-budget selectors ``herding``
/ ``kcenter`` use (``methods/coresets/herding.py``, ``methods/coresets/kcenter.py``, ``methods/coresets/select.py``).
Each ``Synthesis`` carries ``info["pool_indices"]`` (the pool examples it was built from); the
runner moves them into ``selection.npz``, not the record.

On a text scenario there are no pixels: ``random_real``, ``herding_real`` and ``kcenter_real``
keep ``ipc`` real examples in total, picked by their own rule (herding / k-center on MiniLM
embeddings) or at random; the image synthesizers (``dm``, ``autopalette``, ``median_cut``)
declare ``modalities = ("vision",)`` and are refused on text before launch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Synthesis, Synthesizer
from selbench.methods.common import storage
from selbench.methods.common.storage import Accounting

#: ``pick(ctx, candidate_pool_indices, n) -> chosen pool indices``
Pick = Callable[[RunContext, Tensor, int], Tensor]


@dataclass
class SynthConfig(MethodConfig):
    #: byte budget: the bytes of ``ipc`` real full-colour images per class (labels included)
    ipc: int = 10
    accounting: Accounting = Accounting.honest


class BudgetedSynthesizer(Synthesizer):
    """Synthesizers whose budget is ``ipc`` (bytes), not ``budget.fraction``."""

    budget_use = "none"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.ipc) < 1:
            raise ConfigError(f"method.ipc={cfg.ipc} must be a positive integer (images per class of byte budget)")


def iterations(ctx: RunContext, wanted: int) -> int:
    """A synthesizer's optimisation steps, under the same ``scale.max_steps`` cap as training and the
    scale's ``max_synth_iterations`` (``scale=debug``: one synthesizer iteration costs what hundreds of
    training steps do, so the training cap alone leaves a debug run at minutes)."""
    caps = [int(c) for c in (ctx.extra.get("max_steps"), ctx.extra.get("max_synth_iterations")) if c is not None]
    return max(1, min([int(wanted), *caps]))


def class_indices(ctx: RunContext) -> list[Tensor]:
    y = ctx.pool.y
    return [torch.nonzero(y == c).flatten() for c in range(ctx.num_classes)]


def full_colour_synthesis(ctx: RunContext, cfg: SynthConfig, pick: Pick, name: str) -> Synthesis:
    """``ipc`` real examples per class chosen by ``pick`` (``ipc`` in total on text)."""
    if ctx.modality != "vision":
        return text_synthesis(ctx, cfg, pick)
    shape = tuple(ctx.pool.x.shape[1:])
    chosen, short = [], []
    for c, idx in enumerate(class_indices(ctx)):
        if len(idx) == 0:
            continue
        n = min(int(cfg.ipc), len(idx))
        if n < cfg.ipc:
            short.append(c)
        chosen.append(pick(ctx, idx, n))
    if short:
        ctx.warn(f"{name}: classes {short} have fewer than ipc={cfg.ipc} pool images; kept all of them")
    sel = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
    cost = storage.full_colour_cost(shape, ctx.num_classes)
    budget = storage.budget_bits_per_class(int(cfg.ipc), shape, ctx.num_classes) * ctx.num_classes
    info = storage.breakdown([(len(sel), cost)], budget)
    return Synthesis(ctx.pool.subset(sel), info["storage_bytes"],
                     info={"ipc": int(cfg.ipc), "bytes": info, "pool_indices": sel})


def text_synthesis(ctx: RunContext, cfg: SynthConfig, pick: Pick | None = None) -> Synthesis:
    """Text: ``ipc`` real sequences in total (their token ids are what is stored)."""
    n = min(int(cfg.ipc), ctx.n_pool)
    every = torch.arange(ctx.n_pool)
    sel = pick(ctx, every, n) if pick is not None else random_pick(ctx, every, n)
    cost = storage.token_cost(int(ctx.pool.x.shape[1]), ctx.num_classes)
    info = storage.breakdown([(len(sel), cost)], int(cfg.ipc) * cost.total_bits)
    return Synthesis(ctx.pool.subset(sel), info["storage_bytes"],
                     info={"ipc": int(cfg.ipc), "bytes": info, "pool_indices": sel})


def random_pick(ctx: RunContext, idx: Tensor, n: int) -> Tensor:
    return idx[torch.randperm(len(idx), generator=ctx.generator)[:n]].sort().values


def pixel_grid(pool: Split) -> tuple[Tensor, Tensor]:
    """Per-channel (lo, hi) of the pool: real 8-bit images occupy 256 levels between them."""
    x = pool.x.transpose(0, 1).reshape(pool.x.shape[1], -1)
    lo, hi = x.min(1).values, x.max(1).values
    return lo.view(1, -1, 1, 1), torch.maximum(hi, lo + 1e-6).view(1, -1, 1, 1)


def to_8bit(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Snap values to the 256-level grid of each channel (what 8 bits per value can store)."""
    lo, hi = lo.to(x.device), hi.to(x.device)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    lo, hi = lo.reshape(shape), hi.reshape(shape)
    levels = ((x - lo) / (hi - lo) * 255).round().clamp(0, 255)
    return lo + levels / 255 * (hi - lo)
