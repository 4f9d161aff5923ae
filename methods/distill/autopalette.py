"""AutoPalette (Yuan et al., *Color-Oriented Redundancy Reduction in Dataset Distillation*,
NeurIPS 2024) on a distillation base: distribution matching (``methods/distill/dm.py``, the
default, CPU-feasible) or trajectory matching (``base=mtt``, ``methods/distill/mtt.py``, the
paper's Table 1 base; for GPU runs).

Synthetic images are stored with ``colours`` (K) colours each — per-pixel indices plus a
per-image palette — so more of them fit the byte budget of ``ipc`` full-colour images per
class (``methods/common/storage.py``; honest accounting by default).  The palette network
(``methods/distill/palette_net.py``) and the images are trained jointly: the DM loss is computed on
the *soft*-quantised images, plus the colour losses (``methods/distill/palette_losses.py``)
``α·L_maxcolour + β·L_balance + γ·L_pixel``.  The stored set is the *hard* (argmax) assignment
with palettes on the 8-bit grid, so each image has at most K colours.  Initialisation:
colour-guided graph-cut selection (``methods/distill/colour_init.py``).  Everything the paper leaves
open and every departure: ``docs/methods/autopalette.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from selbench.core.data import Split
from selbench.methods.common import storage
from selbench.methods.base import RunContext, Synthesis
from selbench.methods.distill.colour_init import colour_guided_init
from selbench.methods.common.synthesis import (BudgetedSynthesizer, SynthConfig, class_indices, iterations,
                                                pixel_grid, random_pick, to_8bit)
from selbench.methods.common.choice import Choice
from selbench.methods.distill.dm import dm_distill
from selbench.methods.distill.mtt import MTTKnobs, mtt_distill
from selbench.methods.distill.median_cut import check_colours, quantise_batch
from selbench.methods.distill.palette_losses import (balance_loss, hard_colours_used, hard_usage_entropy, max_colour_loss,
                                             pixel_similarity_loss, usage_entropy)
from selbench.methods.distill.palette_net import PaletteNet, colours_used, compose
from selbench.methods.registry import register_method
from selbench.core.errors import ConfigError


class Init(Choice):
    graph_cut = "graph_cut"            # graph-cut on embeddings of colour-quantised real images (the paper's)
    graph_cut_real = "graph_cut_real"  # graph-cut on embeddings of the unquantised images
    random_real = "random_real"


class Base(Choice):
    dm = "dm"    # distribution matching (the paper's Table 5 comparison; runs on CPU)
    mtt = "mtt"  # trajectory matching (the paper's Table 1 base; expert trajectories, GPU-sized)


class PixelTarget(Choice):
    original = "original"      # the unquantised synthetic image (detached)
    median_cut = "median_cut"  # median-cut quantisation of the initial images


@dataclass
class AutoPaletteConfig(SynthConfig):
    colours: int = 64
    base: Base = Base.dm
    iterations: int = 100        # capped by scale.max_steps like every training loop
    lr_img: float = 1.0          # paper, DM base, IPC 1/10
    lr_palette: float = 0.05     # paper
    batch_real: int = 32
    embed_width: int = 64
    embed_depth: int = 3
    hidden: int = 256
    max_colour_weight: float = 1.0   # α (paper 1)
    balance_weight: float = 1.0      # β (paper 1)
    pixel_weight: float = 0.0        # γ (paper 3, against median cut); off by default on CPU
    pixel_target: PixelTarget = PixelTarget.original
    init: Init = Init.graph_cut
    init_candidates: int = 100       # real images per class the graph cut chooses from
    init_embed_steps: int = 50
    init_lambda: float = 0.5
    mtt: MTTKnobs = field(default_factory=MTTKnobs)  # used with base=mtt (lr_img then applies to MTT)


def _seeded_palette_net(channels: int, colours: int, hidden: int, g: torch.Generator) -> PaletteNet:
    net = PaletteNet(channels, colours, hidden)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            bound = 1.0 / max(fan_in, 1) ** 0.5
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return net


@register_method("autopalette", config=AutoPaletteConfig)
class AutoPalette(BudgetedSynthesizer):
    modalities = ("vision",)  # pixels and colour palettes: the runner refuses text before launch

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        check_colours(cfg)
        if cfg.base == Base.mtt:
            cfg.mtt.check("method.mtt")
        for k in ("max_colour_weight", "balance_weight", "pixel_weight", "init_lambda"):
            if float(getattr(cfg, k)) < 0:
                raise ConfigError(f"method.{k}={getattr(cfg, k)} must be ≥ 0")

    def synthesize(self, ctx: RunContext) -> Synthesis:
        cfg = self.cfg
        shape, k = tuple(ctx.pool.x.shape[1:]), int(cfg.colours)
        cost = storage.palette_cost(shape, ctx.num_classes, k, str(cfg.accounting))
        n = storage.per_class_count(int(cfg.ipc), shape, ctx.num_classes, cost)
        if cfg.init == Init.random_real:
            idx = torch.cat([random_pick(ctx, i, min(n, len(i))) for i in class_indices(ctx) if len(i)])
        else:
            idx = colour_guided_init(ctx, n, k, candidates=max(int(cfg.init_candidates), n),
                                     embed_steps=cfg.init_embed_steps, lam=cfg.init_lambda,
                                     quantise=cfg.init == Init.graph_cut)
        lo, hi = pixel_grid(ctx.pool)
        syn0, y = ctx.pool.x[idx].clone(), ctx.pool.y[idx].clone()
        net = _seeded_palette_net(shape[0], k, int(cfg.hidden), ctx.generator).to(ctx.device)
        ref = quantise_batch(syn0, k, lo, hi).to(ctx.device) if cfg.pixel_target == PixelTarget.median_cut else None
        trace: dict = {}

        def transform(syn):
            soft, m = net.soft(syn)
            extra = cfg.max_colour_weight * max_colour_loss(m) + cfg.balance_weight * balance_loss(m)
            if cfg.pixel_weight:
                extra = extra + cfg.pixel_weight * pixel_similarity_loss(soft, syn.detach() if ref is None else ref)
            if "first_hard_usage_entropy" not in trace:
                trace["first_hard_usage_entropy"] = hard_usage_entropy(m.detach())
                trace["first_colours_used_mean"] = float(hard_colours_used(m.detach()).float().mean())
            return soft, extra

        def on_step(it: int, stats: dict) -> None:
            trace.setdefault("first_dm_loss", stats["dm_loss"])
            trace["last_dm_loss"] = stats["dm_loss"]

        n_iter = iterations(ctx, cfg.iterations)
        joint = dict(transform=transform, extra_params=list(net.parameters()), lr_extra=cfg.lr_palette, on_step=on_step)
        if cfg.base == Base.mtt:
            syn = mtt_distill(ctx, syn0, y, iters=n_iter, lr_img=cfg.lr_img, knobs=cfg.mtt, **joint)
        else:
            syn = dm_distill(ctx, syn0, y, iters=n_iter, lr_img=cfg.lr_img, batch_real=cfg.batch_real,
                             width=cfg.embed_width, depth=cfg.embed_depth, **joint)
        with torch.no_grad():
            m = net.assign(syn)
            ids, pal, _ = net.hard(syn)
            pal = to_8bit(pal.cpu().permute(0, 2, 1).unsqueeze(-1), lo, hi).squeeze(-1).permute(0, 2, 1)
            x = compose(ids.cpu(), pal)
        budget = storage.budget_bits_per_class(int(cfg.ipc), shape, ctx.num_classes) * ctx.num_classes
        info = storage.breakdown([(len(x), cost)], budget, str(cfg.accounting))
        if not info["within_budget"]:
            ctx.warn(f"autopalette: one {k}-colour image costs more than ipc={cfg.ipc} full-colour images here "
                     f"(palette bits dominate small images); kept 1 per class, over budget")
        used = colours_used(x).float()
        return Synthesis(Split(x, y), info["storage_bytes"], info={
            "ipc": int(cfg.ipc), "colours": k, "images_per_class": n, "iterations": n_iter, "init": str(cfg.init),
            "base": str(cfg.base),
            "bytes": info, "colours_used_mean": float(used.mean()), "colours_used_min": int(used.min()),
            "palette_entries_used_mean": float(hard_colours_used(m.cpu()).float().mean()),
            "hard_usage_entropy": round(hard_usage_entropy(m.cpu()), 6), "usage_entropy": round(usage_entropy(m.cpu()), 6),
            **{k_: round(v, 6) for k_, v in trace.items()}, "pool_indices": idx})
