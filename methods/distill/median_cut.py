"""Median-cut colour quantisation (Heckbert 1982) and the ``median_cut`` baseline.

``median_cut(img, K)``: start with one box holding every pixel; repeatedly split the box
with the widest channel range at the median of that channel, until K boxes (or none can
be split); each box's colour is its pixels' mean.  At most K colours per image.

``median_cut`` (the method): real pool images picked at random per class, each quantised
to ``colours`` colours by median cut and stored as indices + palette, so more images fit
the same bytes (``methods/common/storage.py``: with ``accounting=honest`` a 32×32 RGB image at
K=64 costs 6,144 + 1,536 + label bits vs 24,576 + label bits at full colour, 3 per class
where 1 full-colour image fits).  The paper's "palette net vs median cut" ablation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.methods.common import storage
from selbench.methods.base import RunContext, Synthesis
from selbench.methods.common.synthesis import (BudgetedSynthesizer, SynthConfig, class_indices, pixel_grid,
                                                random_pick, to_8bit)
from selbench.methods.distill.palette_net import compose
from selbench.methods.registry import register_method
from selbench.core.errors import ConfigError


def median_cut(img: Tensor, colours: int) -> tuple[Tensor, Tensor]:
    """``img`` ``[C, H, W]`` → (indices ``[H, W]``, palette ``[colours, C]``; unused rows repeat row 0).

    NumPy inside (a box's span is computed once, when it is made): ~1 ms per 32×32 image at K=64."""
    c, h, w = img.shape
    px = img.detach().cpu().reshape(c, -1).t().numpy()  # [P, C]

    def span(b):
        return px[b].max(0) - px[b].min(0) if len(b) > 1 else np.zeros(c, dtype=px.dtype)

    boxes = [np.arange(len(px))]
    spans = [span(boxes[0])]
    while len(boxes) < colours:
        widest = np.array([s.max() for s in spans])
        j = int(widest.argmax())
        if widest[j] <= 0:
            break
        b, s_ = boxes.pop(j), spans.pop(j)
        order = b[np.argsort(px[b, int(s_.argmax())], kind="stable")]
        half = len(order) // 2
        for part in (order[:half], order[half:]):
            boxes.append(part)
            spans.append(span(part))
    idx = np.zeros(len(px), dtype=np.int64)
    pal = np.zeros((colours, c), dtype=px.dtype)
    for k, b in enumerate(boxes):
        idx[b] = k
        pal[k] = px[b].mean(0)
    pal[len(boxes):] = pal[0]
    return torch.from_numpy(idx).view(h, w), torch.from_numpy(pal).to(img.dtype)


def quantise_batch(x: Tensor, colours: int, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """Median-cut every image of ``x`` ``[N, C, H, W]``; palettes snapped to the 8-bit grid when given."""
    if len(x) == 0:
        return x.clone()
    parts = [median_cut(img, colours) for img in x.cpu()]
    idx, pal = torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])
    if lo is not None:
        pal = to_8bit(pal.permute(0, 2, 1).unsqueeze(-1), lo, hi).squeeze(-1).permute(0, 2, 1)
    return compose(idx, pal)


@dataclass
class MedianCutConfig(SynthConfig):
    colours: int = 64


def check_colours(cfg, key: str = "method.colours") -> None:
    if not 2 <= int(cfg.colours) <= 256:
        raise ConfigError(f"{key}={cfg.colours} is out of range; allowed: [2, 256]")


@register_method("median_cut", config=MedianCutConfig)
class MedianCut(BudgetedSynthesizer):
    modalities = ("vision",)  # pixels and colour palettes: the runner refuses text before launch

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        check_colours(cfg)

    def synthesize(self, ctx: RunContext) -> Synthesis:
        cfg = self.cfg
        shape = tuple(ctx.pool.x.shape[1:])
        cost = storage.palette_cost(shape, ctx.num_classes, int(cfg.colours), str(cfg.accounting))
        n = storage.per_class_count(int(cfg.ipc), shape, ctx.num_classes, cost)
        picks = [random_pick(ctx, i, min(n, len(i))) for i in class_indices(ctx) if len(i)]
        if any(len(p) < n for p in picks):
            ctx.warn(f"median_cut: some classes have fewer than the {n} images the bytes allow; kept all of them")
        idx = torch.cat(picks)
        lo, hi = pixel_grid(ctx.pool)
        x = quantise_batch(ctx.pool.x[idx], int(cfg.colours), lo, hi)
        budget = storage.budget_bits_per_class(int(cfg.ipc), shape, ctx.num_classes) * ctx.num_classes
        info = storage.breakdown([(len(x), cost)], budget, str(cfg.accounting))
        if not info["within_budget"]:
            ctx.warn(f"median_cut: one {cfg.colours}-colour image costs more than ipc={cfg.ipc} full-colour "
                     f"images here (palette bits dominate small images); kept 1 per class, over budget")
        return Synthesis(Split(x, ctx.pool.y[idx].clone()), info["storage_bytes"],
                         info={"ipc": int(cfg.ipc), "colours": int(cfg.colours), "images_per_class": n,
                               "bytes": info, "pool_indices": idx})
