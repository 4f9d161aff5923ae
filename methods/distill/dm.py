"""Distribution matching (DM; Zhao & Bilen, WACV 2023) — the CPU-feasible distillation base.

Each iteration draws a *fresh randomly initialised* ConvNet (``[conv3×3–instance norm–
ReLU–avgpool]×depth``, the evaluator's architecture) and matches, per class, the mean
embedding of a real batch and of the synthetic images:
``L = Σ_c ‖mean_i φ(x_real,c,i) − mean_j φ(T(s_c,j))‖²``.  ``T`` is the identity for ``dm``
and the palette quantiser for ``autopalette`` (``methods/distill/autopalette.py`` reuses
:func:`dm_distill`).  Images are optimised by SGD (momentum 0.5, DM's setting).

``dm`` keeps ``ipc`` full-colour images per class (the byte budget exactly, see
``methods/common/storage.py``), initialised from random real images and stored on the 8-bit grid.
Not implemented: DSA augmentation and ZCA whitening of the DM paper (docs/methods/autopalette.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.methods.common import storage
from selbench.methods.base import RunContext, Synthesis
from selbench.methods.common.synthesis import (BudgetedSynthesizer, SynthConfig, class_indices, iterations,
                                                pixel_grid, random_pick, to_8bit)
from selbench.methods.common.feature_net import make_embedder
from selbench.methods.registry import register_method


def dm_distill(ctx: RunContext, syn: Tensor, syn_y: Tensor, *, iters: int, lr_img: float, batch_real: int,
               width: int, depth: int, transform: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
               extra_params: list | None = None, lr_extra: float = 0.05, wd_extra: float = 0.0,
               class_mean: bool = False, on_step: Callable[[int, dict], None] | None = None) -> Tensor:
    """Optimise ``syn`` (a leaf tensor) by distribution matching; returns it detached.

    ``transform(syn) -> (image used for matching, extra loss)``; ``extra_params`` (e.g. a palette
    net) are optimised jointly with lr ``lr_extra`` and weight decay ``wd_extra``.  ``class_mean``
    divides the loss by the number of classes (AutoPalette's ``dm_quant.py``); DM's own code sums."""
    syn = syn.detach().to(ctx.device).requires_grad_(True)
    groups = [{"params": [syn], "lr": lr_img}]
    if extra_params:
        groups.append({"params": list(extra_params), "lr": lr_extra, "weight_decay": wd_extra})
    opt = torch.optim.SGD(groups, momentum=0.5)
    per_class = class_indices(ctx)
    classes = [c for c in range(ctx.num_classes) if len(per_class[c]) and bool((syn_y == c).any())]
    syn_y = syn_y.to(ctx.device)
    shape = tuple(syn.shape[1:])
    for it in range(iters):
        net = make_embedder(shape, width, depth, ctx.generator, ctx.device)
        for p in net.parameters():
            p.requires_grad_(False)
        real_idx = [per_class[c][torch.randint(0, len(per_class[c]), (batch_real,), generator=ctx.generator)]
                    for c in classes]
        real = ctx.pool.x[torch.cat(real_idx)].to(ctx.device)
        img, extra = transform(syn) if transform is not None else (syn, torch.zeros((), device=ctx.device))
        emb_real = net(real).view(len(classes), batch_real, -1).mean(1)
        emb_syn = net(img)
        loss_dm = sum(((emb_real[k] - emb_syn[syn_y == c].mean(0)) ** 2).sum() for k, c in enumerate(classes))
        if class_mean:
            loss_dm = loss_dm / ctx.num_classes
        loss = loss_dm + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx.cost.count(forward=len(real) + len(img), backward=len(img))
        if on_step is not None:
            on_step(it, {"dm_loss": float(loss_dm.detach()), "extra_loss": float(extra.detach())})
    return syn.detach()


@dataclass
class DMConfig(SynthConfig):
    iterations: int = 100        # DM runs 20k (presets at scale=paper); capped by scale.max_steps
    lr_img: float = 1.0          # DM paper (IPC 1/10)
    batch_real: int = 32         # real images per class per iteration (DM: 256)
    embed_width: int = 64        # DM: 128 (the presets); smaller by default for 2-core CPUs
    embed_depth: int = 3


@register_method("dm", config=DMConfig)
class DistributionMatching(BudgetedSynthesizer):
    """Full-colour DM at ``ipc`` images per class (the byte budget exactly)."""

    modalities = ("vision",)  # distribution matching on pixels: an image method

    def synthesize(self, ctx: RunContext) -> Synthesis:
        cfg = self.cfg
        idx = random_init(ctx, int(cfg.ipc))
        n_iter = iterations(ctx, cfg.iterations)
        syn = dm_distill(ctx, ctx.pool.x[idx].clone(), ctx.pool.y[idx], iters=n_iter, lr_img=cfg.lr_img,
                         batch_real=cfg.batch_real, width=cfg.embed_width, depth=cfg.embed_depth)
        return store_full_colour(ctx, int(cfg.ipc), syn, idx, iterations=n_iter)


def random_init(ctx: RunContext, ipc: int) -> Tensor:
    """``ipc`` random real pool images per class: the full-colour distillers' starting point."""
    return torch.cat([random_pick(ctx, i, min(ipc, len(i))) for i in class_indices(ctx) if len(i)])


def store_full_colour(ctx: RunContext, ipc: int, syn: Tensor, idx: Tensor, **info) -> Synthesis:
    """A distilled full-colour set as stored: pixels snapped to the 8-bit grid, with its byte breakdown."""
    lo, hi = pixel_grid(ctx.pool)
    x = to_8bit(syn.cpu(), lo, hi)
    shape = tuple(x.shape[1:])
    budget = storage.budget_bits_per_class(ipc, shape, ctx.num_classes) * ctx.num_classes
    b = storage.breakdown([(len(x), storage.full_colour_cost(shape, ctx.num_classes))], budget)
    return Synthesis(Split(x, ctx.pool.y[idx].clone()), b["storage_bytes"],
                     info={"ipc": ipc, **info, "bytes": b, "pool_indices": idx})
