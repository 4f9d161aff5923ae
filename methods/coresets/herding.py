"""Herding (Welling 2009; the coreset baseline of the dataset-distillation tables, e.g. Chen et al.
2010's kernel herding with a linear kernel): greedily add the example whose features bring the
running mean of the chosen set closest to the mean of the candidates,

    x_t = argmin_{x ∉ S} ‖ μ − (Σ_{s∈S} φ(s) + φ(x)) / t ‖²,   μ = mean_i φ(x_i).

One greedy (:func:`herding_order`), two budgets:

- ``herding``: a *selector* at ``budget.fraction`` (``⌊β·N⌋`` pool examples, class quotas
  proportional to the pool, ``methods/coresets/select.py``; ``budget_use = "hard"``);
- ``herding_real``: the AutoPalette table's byte-budget *synthesizer*, ``ipc`` real full-colour
  images per class (``methods/common/synthesis.py``; ``budget_use = "none"``).

Features: a small ConvNet trained on the pool (vision), MiniLM (text).  Departure: the tables
use a ConvNet pretrained on the full training set; here it trains ``embed_steps`` steps on the
(possibly noisy) pool.  docs/methods/baselines.md, docs/methods/autopalette.md.
"""
from __future__ import annotations

import torch
from torch import Tensor

from selbench.methods.coresets.select import CoresetSelectConfig, CoresetSelector, EmbedSynthConfig, EmbeddingSynthesizer
from selbench.methods.registry import register_method


def herding_order(feats: Tensor, n: int) -> Tensor:
    """Positions of ``n`` rows of ``feats`` chosen by herding (no repeats)."""
    feats = feats.double()
    mu = feats.mean(0)
    chosen: list[int] = []
    acc = torch.zeros_like(mu)
    avail = torch.ones(len(feats), dtype=torch.bool)
    for t in range(min(int(n), len(feats))):
        dist = ((mu - (acc + feats) / (t + 1)) ** 2).sum(1)
        dist[~avail] = float("inf")
        j = int(dist.argmin())
        chosen.append(j)
        avail[j] = False
        acc += feats[j]
    return torch.tensor(chosen, dtype=torch.long)


@register_method("herding", config=CoresetSelectConfig)
class Herding(CoresetSelector):
    order = staticmethod(herding_order)


@register_method("herding_real", config=EmbedSynthConfig)
class HerdingReal(EmbeddingSynthesizer):
    order = staticmethod(herding_order)
