"""AutoPalette's colour-guided initialisation: per class, quantise candidate real images to K
colours (median cut), embed the quantised images with a small ConvNet trained on the pool,
and pick ``n`` of them by maximising the graph-cut submodular function

    f(S) = Σ_{i∈V} Σ_{j∈S} s_ij − λ Σ_{j∈S} Σ_{k∈S} s_jk       (s = cosine similarity)

with stochastic greedy (Mirzasoleiman et al. 2015: each step scores a random sample of
``(|V|/n)·log(1/ε)`` candidates).  The first term rewards representative images, the
second penalises redundant ones.  Returns pool indices; the synthetic set starts from
those (unquantised) images.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from selbench.methods.base import RunContext
from selbench.methods.common.synthesis import class_indices, pixel_grid, random_pick
from selbench.methods.common.feature_net import trained_features
from selbench.methods.distill.median_cut import quantise_batch


def graph_cut_greedy(feats: Tensor, n: int, lam: float, generator: torch.Generator, eps: float = 0.01) -> Tensor:
    """Positions of ``n`` rows chosen by stochastic greedy on the graph-cut objective."""
    f = torch.nn.functional.normalize(feats.float(), dim=1)
    sim = f @ f.t()
    cover = sim.sum(0)                       # Σ_i s_ij for every j
    in_s = torch.zeros(len(f), dtype=torch.bool)
    red = torch.zeros(len(f))                # Σ_{k∈S} s_jk
    sample = max(1, min(len(f), math.ceil(len(f) / max(n, 1) * math.log(1 / eps))))
    chosen = []
    for _ in range(min(n, len(f))):
        cand = torch.nonzero(~in_s).flatten()
        cand = cand[torch.randperm(len(cand), generator=generator)[:sample]]
        gain = cover[cand] - lam * (2 * red[cand] + sim[cand, cand])
        j = int(cand[gain.argmax()])
        chosen.append(j)
        in_s[j] = True
        red += sim[:, j]
    return torch.tensor(chosen, dtype=torch.long)


def colour_guided_init(ctx: RunContext, per_class: int, colours: int, *, candidates: int = 200,
                       embed_steps: int = 50, lam: float = 0.5, quantise: bool = True) -> Tensor:
    """Pool indices: ``per_class`` per class (fewer where a class has fewer images)."""
    cand = [random_pick(ctx, i, min(candidates, len(i))) for i in class_indices(ctx) if len(i)]
    every = torch.cat(cand)
    x = ctx.pool.x[every]
    if quantise:
        lo, hi = pixel_grid(ctx.pool)
        x = quantise_batch(x, colours, lo, hi)
    feats = trained_features(ctx, x, steps=embed_steps)
    out, start = [], 0
    for idx in cand:
        f = feats[start:start + len(idx)]
        start += len(idx)
        out.append(idx[graph_cut_greedy(f, min(per_class, len(idx)), lam, ctx.generator)])
    return torch.cat(out)
