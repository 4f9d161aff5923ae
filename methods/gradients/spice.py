"""SPICE (Chang, Zhang et al., ICLR 2026): greedy log-det information minus a gradient-conflict
penalty over (projected) per-example gradients of a warmed-up proxy.

``score(i|S) = log(1 + α g_iᵀ(I + α Σ_S g gᵀ)⁻¹ g_i) − λ·max(0, −cos(g_i, ḡ_S))``, greedy argmax
with exact gains (``methods/gradients/logdet_greedy.py``), early stop at ``τ ×`` the first gain and a
top-score fill.  ``α = alpha_scale / median ‖g‖²`` (scale-aware).  ``fisher=diag`` is the
cheap diagonal-Fisher variant; ``window > 0`` streams over the pool.  The official code's
default (plain top-k by gradient norm) is ``grad_norm``, not this.  docs/methods/spice.md.
"""
from __future__ import annotations

import time

import torch
from dataclasses import dataclass
from enum import Enum

from selbench.core.errors import ConfigError
from selbench.methods.base import RunContext, Selection
from selbench.methods.gradients.features import (GradMethodConfig, GradSelector, check_grad_config, feature_info,
                                            pool_target_features)
from selbench.methods.gradients.logdet_greedy import greedy_logdet, reference_alpha, selection_quality
from selbench.methods.registry import register_method


class Fisher(str, Enum):
    full = "full"   # exact log-det gains (Sherman–Morrison factor)
    diag = "diag"   # diagonal Fisher approximation (cheap)


@dataclass
class SpiceConfig(GradMethodConfig):
    lam: float = 0.1            # conflict penalty λ (paper: 0.1)
    tau: float = 0.01           # early stop once the best gain < τ × the first gain (0 = never)
    alpha_scale: float = 1.0    # α = alpha_scale / median ‖g‖² (α‖g‖² = O(1))
    fisher: Fisher = Fisher.full
    window: int = 0             # pool window for streaming selection (paper: 128); 0 = whole pool


def run_logdet_selector(method, ctx: RunContext, lam: float) -> Selection:
    cfg = method.cfg
    feats = pool_target_features(ctx, cfg)
    G = feats["pool"]
    alpha = float(cfg.alpha_scale) * reference_alpha(G)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(ctx.seed) * 7919 + 3)
    r = greedy_logdet(G, ctx.k_budget, alpha, lam=lam, tau=float(cfg.tau), diag=Fisher(cfg.fisher) is Fisher.diag,
                      window=int(cfg.window), generator=gen)
    greedy_s = time.perf_counter() - t0
    if r.n_greedy < ctx.k_budget and r.stopped_early:
        ctx.warn(f"{cfg.name}: greedy stopped early at {r.n_greedy} of {ctx.k_budget} (tau={cfg.tau}); "
                 f"the rest filled by the highest remaining score")
    info = {**feature_info(feats), "greedy_seconds": greedy_s, "n_greedy": r.n_greedy,
            "stopped_early": r.stopped_early, "alpha": alpha, **selection_quality(G, r.indices)}
    return Selection(r.indices.sort().values, target_repeats=int(cfg.include_target), scores=r.scores, info=info)


def check_logdet_config(cfg) -> None:
    check_grad_config(cfg)
    if float(cfg.alpha_scale) <= 0:
        raise ConfigError(f"method.alpha_scale={cfg.alpha_scale} must be > 0")
    if not 0.0 <= float(cfg.tau) < 1.0:
        raise ConfigError(f"method.tau={cfg.tau} must be in [0, 1)")
    if int(cfg.window) < 0:
        raise ConfigError(f"method.window={cfg.window} must be >= 0")


@register_method("spice", config=SpiceConfig)
class Spice(GradSelector):

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_logdet_config(cfg)
        if float(cfg.lam) < 0:
            raise ConfigError(f"method.lam={cfg.lam} must be >= 0")

    def select(self, ctx: RunContext) -> Selection:
        return run_logdet_selector(self, ctx, float(self.cfg.lam))
