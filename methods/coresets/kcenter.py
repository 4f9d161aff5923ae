"""Greedy k-center (Sener & Savarese 2018, "core-set" active learning; a coreset baseline of the
dataset-distillation tables): start from the example nearest the candidates' mean, then
repeatedly add the one farthest from everything chosen,

    x_t = argmax_{x ∉ S} min_{s∈S} ‖φ(x) − φ(s)‖²   (a 2-approximation of the k-center cover).

One greedy (:func:`kcenter_order`), two budgets, as for herding (``methods/coresets/herding.py``):
``kcenter`` is the fraction-budget *selector*, ``kcenter_real`` the byte-budget *synthesizer*.
Departures: no robust (outlier-budget) variant, and the features are trained on the pool.
"""
from __future__ import annotations

import torch
from torch import Tensor

from selbench.methods.coresets.select import CoresetSelectConfig, CoresetSelector, EmbedSynthConfig, EmbeddingSynthesizer
from selbench.methods.registry import register_method


def kcenter_order(feats: Tensor, n: int) -> Tensor:
    """Positions of ``n`` rows of ``feats`` chosen by greedy k-center (no repeats)."""
    n = min(int(n), len(feats))
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    feats = feats.double()
    first = int(((feats - feats.mean(0)) ** 2).sum(1).argmin())
    chosen = [first]
    dmin = ((feats - feats[first]) ** 2).sum(1)
    dmin[first] = -1.0
    for _ in range(n - 1):
        j = int(dmin.argmax())
        chosen.append(j)
        dmin = torch.minimum(dmin, ((feats - feats[j]) ** 2).sum(1))
        dmin[chosen] = -1.0
    return torch.tensor(chosen, dtype=torch.long)


@register_method("kcenter", config=CoresetSelectConfig)
class KCenter(CoresetSelector):
    order = staticmethod(kcenter_order)


@register_method("kcenter_real", config=EmbedSynthConfig)
class KCenterReal(EmbeddingSynthesizer):
    order = staticmethod(kcenter_order)
