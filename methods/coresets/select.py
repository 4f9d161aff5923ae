"""Feature space and class quotas shared by the coreset methods (``herding``, ``kcenter`` as
fraction-budget selectors; ``herding_real``, ``kcenter_real`` as byte-budget synthesizers).

- **Features.**  Vision: a small ConvNet trained ``embed_steps`` steps on the pool
  (``methods/distill/dm.py``; 0 = a random ConvNet), as the dataset-distillation tables use.
  Text: MiniLM sentence embeddings of the decoded examples (``methods/common/text_lm.py``): the runner's
  from-scratch LM embeds nothing meaningful before training.
- **Class quotas** (selectors, vision): the greedy runs per (observed) class with a quota
  proportional to the class's pool count, every non-empty class getting at least one slot when
  the budget allows (largest remainder, so the quotas add up to ``k`` exactly).  On text there
  are no classes and the greedy runs over the whole pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector, Synthesis
from selbench.methods.common.synthesis import BudgetedSynthesizer, SynthConfig, full_colour_synthesis
from selbench.methods.common.feature_net import trained_features
from selbench.methods.common.text_lm import text_features

#: ``order(feats, n) -> positions of n rows`` (the greedy: herding or k-center)
Order = Callable[[Tensor, int], Tensor]


def coreset_features(ctx: RunContext, embed_steps: int, who: str) -> Tensor:
    if ctx.modality == "vision":
        return trained_features(ctx, ctx.pool.x, steps=int(embed_steps))
    return text_features(ctx, ctx.pool.x, ctx.pool.y, who)


def class_quotas(counts: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``[C]`` slots per class summing to ``min(k, N)``: one per non-empty class first (the largest
    classes when ``k`` is smaller than their number, ties broken at random), the rest proportional
    to the remaining counts by largest remainder."""
    counts = counts.long()
    k = min(int(k), int(counts.sum()))
    q = torch.zeros_like(counts)
    present = torch.nonzero(counts > 0).flatten()
    if k < len(present):
        jitter = torch.rand(len(present), generator=generator)
        order = sorted(range(len(present)), key=lambda i: (-int(counts[present[i]]), float(jitter[i])))
        q[present[order[:k]]] = 1
        return q
    q[present] = 1
    rest, left = (counts - q).double(), k - len(present)
    if left > 0 and rest.sum() > 0:
        share = rest / rest.sum() * left
        q += share.floor().long()
        short = k - int(q.sum())
        if short > 0:
            frac = torch.where(q < counts, share - share.floor(), torch.full_like(share, -1.0))
            q[frac.topk(short).indices] += 1
    return torch.minimum(q, counts)


@dataclass
class CoresetSelectConfig(MethodConfig):
    embed_steps: int = 100      # vision: training steps of the feature ConvNet (0 = random features)
    balance: bool = True        # vision: per-class quotas (proportional, every class ≥ 1 slot); false = one greedy
    include_target: bool = True  # train on the selection + the target set (as `random`)


class CoresetSelector(Selector):
    """Top-``⌊β·N⌋`` pool examples in the order the greedy picks them (a hard budget)."""

    budget_use = "hard"
    order: Order

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.embed_steps) < 0:
            raise ConfigError(f"method.embed_steps={cfg.embed_steps} must be >= 0")

    def select(self, ctx: RunContext) -> Selection:
        feats = coreset_features(ctx, self.cfg.embed_steps, self.cfg.name)
        order = type(self).order
        k = ctx.k_budget
        if ctx.modality == "vision" and self.cfg.balance:
            y = ctx.pool.y
            quotas = class_quotas(torch.bincount(y, minlength=ctx.num_classes), k, ctx.generator)
            parts = []
            for c in torch.nonzero(quotas).flatten().tolist():
                idx = torch.nonzero(y == c).flatten()
                parts.append(idx[order(feats[idx], int(quotas[c]))])
            sel = torch.cat(parts)
        else:
            sel = order(feats, min(k, ctx.n_pool))
        info = {"feature_dim": int(feats.shape[1]), "balanced": bool(ctx.modality == "vision" and self.cfg.balance)}
        return Selection(sel.sort().values, target_repeats=int(self.cfg.include_target), info=info)


@dataclass
class EmbedSynthConfig(SynthConfig):
    embed_steps: int = 100  # vision: training steps of the feature ConvNet (0 = random features)


class EmbeddingSynthesizer(BudgetedSynthesizer):
    """``herding_real`` / ``kcenter_real``: ``ipc`` real images per class picked by the greedy
    ``order`` on the coreset features (the byte budget; ``ipc`` in total on text)."""

    order: Order

    def synthesize(self, ctx: RunContext) -> Synthesis:
        feats = coreset_features(ctx, self.cfg.embed_steps, self.cfg.name)
        order = type(self).order

        def pick(ctx_: RunContext, idx: Tensor, n: int) -> Tensor:
            return idx[order(feats[idx], n)]

        return full_colour_synthesis(ctx, self.cfg, pick, self.cfg.name)
