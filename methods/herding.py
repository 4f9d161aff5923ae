"""``herding`` (Welling 2009, as in the dataset-distillation tables): per class, greedily add
the real image whose embedding brings the running mean closest to the class mean; ``ipc``
full-colour images per class (the byte budget exactly).

Embeddings come from a small ConvNet trained ``embed_steps`` steps on the pool (on text: the
runner model's embeddings)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selbench.methods.base import RunContext, Synthesis
from selbench.methods.coreset_baselines import BudgetedSynthesizer, SynthConfig, embed_all, full_colour_synthesis
from selbench.methods.distill_dm import trained_features
from selbench.methods.registry import register_method


def herding_order(feats: Tensor, n: int) -> Tensor:
    """Positions of ``n`` rows of ``feats`` chosen by herding (no repeats)."""
    mu = feats.mean(0)
    chosen: list[int] = []
    acc = torch.zeros_like(mu)
    avail = torch.ones(len(feats), dtype=torch.bool)
    for t in range(n):
        dist = ((mu - (acc + feats) / (t + 1)) ** 2).sum(1)
        dist[~avail] = float("inf")
        j = int(dist.argmin())
        chosen.append(j)
        avail[j] = False
        acc += feats[j]
    return torch.tensor(chosen, dtype=torch.long)


@dataclass
class EmbedSelectConfig(SynthConfig):
    embed_steps: int = 100  # training steps of the feature ConvNet (0 = random features)


class _EmbeddingSelector(BudgetedSynthesizer):
    """Shared by herding and k-center: features once, then a per-class rule."""

    rule = staticmethod(herding_order)

    def synthesize(self, ctx: RunContext) -> Synthesis:
        if ctx.modality == "vision":
            feats = trained_features(ctx, ctx.pool.x, steps=self.cfg.embed_steps)
        else:
            feats = embed_all(ctx, ctx.pool.x)

        def pick(ctx_: RunContext, idx: Tensor, n: int) -> Tensor:
            return idx[type(self).rule(feats[idx], n)]

        return full_colour_synthesis(ctx, self.cfg, pick, self.name)


@register_method("herding", config=EmbedSelectConfig)
class Herding(_EmbeddingSelector):
    name = "herding"
    rule = staticmethod(herding_order)
