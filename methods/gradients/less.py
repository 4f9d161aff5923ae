"""LESS (Xia et al. 2024): top-k pool examples by cosine similarity of their (projected) gradient
to the mean unit-normalised target gradient, on a proxy warmed up on a random fraction of the
pool (LESS's warm-up; here also the target by default, ``proxy_data``).  Departures: one
checkpoint (LESS averages over several warm-up checkpoints with Adam-preconditioned gradients),
one mean target gradient over all target tasks.  docs/methods/spice.md."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from selbench.methods.base import RunContext, Selection
from selbench.methods.gradients.features import GradMethodConfig, GradSelector, feature_info, pool_target_features
from selbench.methods.gradients.logdet_greedy import selection_quality
from selbench.methods.registry import register_method


@dataclass
class LessConfig(GradMethodConfig):
    pass


@register_method("less", config=LessConfig)
class Less(GradSelector):
    def select(self, ctx: RunContext) -> Selection:
        feats = pool_target_features(ctx, self.cfg)
        G, T = feats["pool"], feats["target"]
        t0 = time.perf_counter()
        if len(T) == 0:
            ctx.warn("less: empty target set; scoring by similarity to the mean pool gradient")
            T = G
        tbar = torch.nn.functional.normalize(T.double(), dim=1).mean(0)
        scores = torch.nn.functional.normalize(G.double(), dim=1) @ torch.nn.functional.normalize(tbar, dim=0)
        idx = scores.topk(ctx.k_budget).indices
        info = {**feature_info(feats), "greedy_seconds": time.perf_counter() - t0, **selection_quality(G, idx)}
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=scores.float(),
                         info=info)
