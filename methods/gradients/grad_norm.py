"""Top-k pool examples by (projected) per-example gradient norm of a warmed-up proxy (the official
SPICE code's default config; a baseline in the SPICE paper).  docs/methods/spice.md."""
from __future__ import annotations

import time
from dataclasses import dataclass

from selbench.methods.base import RunContext, Selection
from selbench.methods.gradients.features import GradMethodConfig, GradSelector, feature_info, pool_target_features
from selbench.methods.gradients.logdet_greedy import selection_quality
from selbench.methods.registry import register_method


@dataclass
class GradNormConfig(GradMethodConfig):
    pass


@register_method("grad_norm", config=GradNormConfig)
class GradNorm(GradSelector):
    def select(self, ctx: RunContext) -> Selection:
        feats = pool_target_features(ctx, self.cfg)
        G = feats["pool"]
        t0 = time.perf_counter()
        scores = G.double().norm(dim=1)
        idx = scores.topk(ctx.k_budget).indices
        info = {**feature_info(feats), "greedy_seconds": time.perf_counter() - t0, **selection_quality(G, idx)}
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=scores.float(),
                         info=info)
