"""AutoPalette (Yuan et al., *Color-Oriented Redundancy Reduction in Dataset Distillation*,
NeurIPS 2024) on a distillation base: distribution matching (``methods/distill/dm.py``, the
default, CPU-feasible; the authors' ``distill/dm_quant.py``) or trajectory matching (``base=mtt``,
``methods/distill/mtt.py``, the paper's Table 1 base; for GPU runs).

Synthetic images are stored with ``colours`` (K) colours each — per-pixel indices plus a
per-image palette — so more of them fit the byte budget of ``ipc`` full-colour images per
class (``methods/common/storage.py``; honest accounting by default).  As in the authors' code,
per iteration:

1. the base loss (DM or MTT) is computed on the *soft*-quantised images ``T(s)``
   (``methods/distill/palette_net.py``) and moves both the pixels and the palette network;
2. the palette losses (``methods/distill/palette_losses.py``)
   ``α·L_maxcolour + β·L_balance + η·L_confidence + γ·L_pixel`` are computed on a *detached* copy of
   (at most ``palette_batch``) synthetic images, so they train only the palette network: the
   pixels never see them;
3. images: SGD (momentum 0.5, ``lr_img``); palette network: its own SGD (lr 0.05, momentum 0.5,
   weight decay 5e-4).

The stored set is the *hard* (argmax) assignment, each palette entry recomputed as the mean of the
pixels it owns, snapped to the 8-bit grid, so each image has at most K colours.  Initialisation:
colour-guided graph-cut selection (``methods/distill/colour_init.py``).  Everything the paper leaves
open, every departure and the side-by-side agreement with the authors' code:
``docs/methods/autopalette.md``.
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
from selbench.methods.distill.median_cut import check_colours
from selbench.methods.distill.palette_losses import (affinity_loss, balance_loss, confidence_loss, hard_colours_used,
                                                     hard_usage_entropy, max_colour_loss, median_cut_assignment,
                                                     sample_pixels, usage_entropy)
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


@dataclass
class AutoPaletteConfig(SynthConfig):
    colours: int = 64
    base: Base = Base.dm
    iterations: int = 100        # capped by scale.max_steps like every training loop
    lr_img: float = 1.0          # paper, DM base, IPC 1/10
    lr_palette: float = 0.05     # paper
    palette_weight_decay: float = 5.0e-4  # the authors' palette optimiser (SGD, momentum 0.5)
    batch_real: int = 32
    embed_width: int = 64
    embed_depth: int = 3
    hidden: int = 256
    max_colour_weight: float = 1.0   # α (paper 1)
    balance_weight: float = 1.0      # β (paper 1)
    confidence_weight: float = 1.0   # η (the authors' --conf_ratio default; their run script passes 0)
    pixel_weight: float = 3.0        # γ (paper 3): affinity against a median cut of the current images
    pixel_sample: float = 0.3        # share of each image's pixels the affinity compares (authors 0.3)
    palette_batch: int = 64          # images the palette losses see per iteration (authors: 64 DM, 50 MTT)
    dm_class_mean: bool = True       # DM loss / classes, as dm_quant.py (DM's own code sums: method=dm)
    init: Init = Init.graph_cut
    init_candidates: int = 100       # real images per class the graph cut chooses from
    init_embed_steps: int = 50
    init_lambda: float = 0.5
    mtt: MTTKnobs = field(default_factory=MTTKnobs)  # used with base=mtt (lr_img then applies to MTT)


def _seeded_palette_net(channels: int, colours: int, hidden: int, g: torch.Generator) -> PaletteNet:
    """PyTorch's default Conv2d init (weights and biases U(±1/√fan_in), fan_in of the weight), drawn from ``g``."""
    net = PaletteNet(channels, colours, hidden)
    with torch.no_grad():
        for layer in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
            bound = 1.0 / layer.weight[0].numel() ** 0.5
            for p in (layer.weight, layer.bias):
                if p is not None:
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return net


def palette_loss(net: PaletteNet, syn: torch.Tensor, cfg: AutoPaletteConfig, lo: torch.Tensor, hi: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """The palette network's own losses on a detached random subset of the images (the authors'
    ``copy.deepcopy(image_syn.detach())[sub_indices]``): they train the palette net, never the pixels."""
    sub = syn.detach()[torch.randperm(len(syn), generator=generator)[:int(cfg.palette_batch)].to(syn.device)]
    m = net.assign(sub)
    loss = (cfg.max_colour_weight * max_colour_loss(m) + cfg.balance_weight * balance_loss(m)
            + cfg.confidence_weight * confidence_loss(m))
    if cfg.pixel_weight:
        ref = median_cut_assignment(sub, net.colours, lo, hi)  # from the current images, every iteration
        px = sample_pixels(len(sub), sub.shape[2] * sub.shape[3], float(cfg.pixel_sample), generator)
        loss = loss + cfg.pixel_weight * affinity_loss(m, ref, px.to(sub.device))
    return loss


def palette_transform(net: PaletteNet, cfg: AutoPaletteConfig, lo: torch.Tensor, hi: torch.Tensor,
                      generator: torch.Generator, trace: dict):
    """``T(syn) -> (soft-quantised images for the base loss, palette loss)``, the distillers' transform."""
    def transform(syn):
        soft, m = net.soft(syn)
        if "first_hard_usage_entropy" not in trace:
            trace["first_hard_usage_entropy"] = hard_usage_entropy(m.detach())
            trace["first_colours_used_mean"] = float(hard_colours_used(m.detach()).float().mean())
        return soft, palette_loss(net, syn, cfg, lo, hi, generator)
    return transform


@register_method("autopalette", config=AutoPaletteConfig)
class AutoPalette(BudgetedSynthesizer):
    modalities = ("vision",)  # pixels and colour palettes: the runner refuses text before launch

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        check_colours(cfg)
        if cfg.base == Base.mtt:
            cfg.mtt.check("method.mtt")
        for k in ("max_colour_weight", "balance_weight", "confidence_weight", "pixel_weight", "init_lambda",
                  "palette_weight_decay"):
            if float(getattr(cfg, k)) < 0:
                raise ConfigError(f"method.{k}={getattr(cfg, k)} must be ≥ 0")
        if not 0 < float(cfg.pixel_sample) <= 1:
            raise ConfigError(f"method.pixel_sample={cfg.pixel_sample} is out of range; allowed: (0, 1]")
        if int(cfg.palette_batch) < 1:
            raise ConfigError(f"method.palette_batch={cfg.palette_batch} must be ≥ 1")

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
        trace: dict = {}
        transform = palette_transform(net, cfg, lo, hi, ctx.generator, trace)

        def on_step(it: int, stats: dict) -> None:
            trace.setdefault("first_dm_loss", stats["dm_loss"])
            trace["last_dm_loss"] = stats["dm_loss"]

        n_iter = iterations(ctx, cfg.iterations)
        joint = dict(transform=transform, extra_params=list(net.parameters()), lr_extra=cfg.lr_palette,
                     wd_extra=float(cfg.palette_weight_decay), on_step=on_step)
        if cfg.base == Base.mtt:
            syn = mtt_distill(ctx, syn0, y, iters=n_iter, lr_img=cfg.lr_img, knobs=cfg.mtt, **joint)
        else:
            syn = dm_distill(ctx, syn0, y, iters=n_iter, lr_img=cfg.lr_img, batch_real=cfg.batch_real,
                             width=cfg.embed_width, depth=cfg.embed_depth, class_mean=bool(cfg.dm_class_mean), **joint)
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
