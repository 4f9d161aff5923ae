"""SPICE (Chang, Zhang et al., ICLR 2026): greedy log-det information minus a gradient-conflict
penalty over (projected) per-example gradients of a proxy.

``score(i|S) = log(1 + α g_iᵀ(I + α Σ_S g gᵀ)⁻¹ g_i) − λ·max(0, −cos(g_i, ḡ_S))``, greedy argmax
with exact gains (``methods/gradients/logdet_greedy.py``), ``α = alpha_scale / median ‖g‖²``.

Default ``protocol=online``: the authors' streaming selection (``spice_online.py``: windows of
128 candidates, ≤ 64 picks each, early stop at ω = 0.5 per window with no fill, the proxy stepping
on its own picks every T = 10 windows).  Labelled variants: ``protocol=static`` (one warmed-up
proxy, the whole pool at once, stop at ``τ ×`` the first gain and fill by top score: this
harness's earlier default); ``fisher=diag`` (the released diagonal Fisher) and ``rule=top_k``
(the released run script's selection) reproduce the authors' code as released.  ``grad_norm`` is
the static top-k by norm.  docs/methods/spice.md.
"""
from __future__ import annotations

import time

from dataclasses import dataclass
from enum import Enum

from selbench.core.errors import ConfigError
from selbench.methods.base import RunContext, Selection
from selbench.methods.gradients.features import (GradMethodConfig, GradSelector, check_grad_config, feature_info,
                                            pool_target_features)
from selbench.methods.gradients.logdet_greedy import greedy_logdet, reference_alpha, selection_quality
from selbench.methods.gradients.spice_online import online_select
from selbench.methods.registry import register_method


class Fisher(str, Enum):
    full = "full"   # exact log-det gains (Sherman–Morrison factor)
    diag = "diag"   # the authors' released diagonal Fisher (D += α (|g|·g)²): close to top-k by norm


class Protocol(str, Enum):
    online = "online"   # the authors': windows stream past a proxy trained on its own picks
    static = "static"   # variant: one warmed-up proxy, whole-pool greedy, τ stop + top-score fill


class Rule(str, Enum):
    greedy = "greedy"   # SPICE's penalised log-det greedy (the paper)
    top_k = "top_k"     # variant: the released run script's top-k by first gain (gradient norm)


@dataclass
class SpiceConfig(GradMethodConfig):
    lam: float = 0.1            # conflict penalty λ (paper: 0.1)
    protocol: Protocol = Protocol.online
    rule: Rule = Rule.greedy
    fisher: Fisher = Fisher.full
    window: int = 128           # online: candidates per window (paper, configs/default.yaml: 128)
    per_window: int = 64        # online: at most this many picks per window (paper: 64)
    omega: float = 0.5          # online: stop a window once the pick's gain <= ω × its first (paper: 0.5)
    refresh_every: int = 10     # online: the proxy steps on its picks every T windows (run.sh: 10)
    tau: float = 0.01           # static: stop once the gain <= τ × the first gain, then fill (0 = never)
    alpha_scale: float = 1.0    # α = alpha_scale / median ‖g‖² (α‖g‖² = O(1))


def run_logdet_selector(method, ctx: RunContext, lam: float) -> Selection:
    cfg = method.cfg
    feats = pool_target_features(ctx, cfg)
    G = feats["pool"]
    alpha = float(cfg.alpha_scale) * reference_alpha(G)
    t0 = time.perf_counter()
    r = greedy_logdet(G, ctx.k_budget, alpha, lam=lam, tau=float(cfg.tau), diag=Fisher(cfg.fisher) is Fisher.diag)
    greedy_s = time.perf_counter() - t0
    if r.n_greedy < ctx.k_budget and r.stopped_early:
        ctx.warn(f"{cfg.name}: greedy stopped early at {r.n_greedy} of {ctx.k_budget} (tau={cfg.tau}); "
                 f"the rest filled by the highest remaining score")
    info = {"protocol": "static", **feature_info(feats), "greedy_seconds": greedy_s, "n_greedy": r.n_greedy,
            "stopped_early": r.stopped_early, "alpha": alpha, **selection_quality(G, r.indices)}
    return Selection(r.indices.sort().values, target_repeats=int(cfg.include_target), scores=r.scores, info=info)


def check_logdet_config(cfg) -> None:
    check_grad_config(cfg)
    if float(cfg.alpha_scale) <= 0:
        raise ConfigError(f"method.alpha_scale={cfg.alpha_scale} must be > 0")
    if not 0.0 <= float(cfg.tau) < 1.0:
        raise ConfigError(f"method.tau={cfg.tau} must be in [0, 1)")


@register_method("spice", config=SpiceConfig)
class Spice(GradSelector):

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_logdet_config(cfg)
        if float(cfg.lam) < 0:
            raise ConfigError(f"method.lam={cfg.lam} must be >= 0")
        for name in ("window", "per_window", "refresh_every"):
            if int(getattr(cfg, name)) < 1:
                raise ConfigError(f"method.{name}={getattr(cfg, name)} must be >= 1")
        if int(cfg.per_window) > int(cfg.window):
            raise ConfigError(f"method.per_window={cfg.per_window} must be <= method.window={cfg.window}")
        if not 0.0 <= float(cfg.omega) < 1.0:
            raise ConfigError(f"method.omega={cfg.omega} must be in [0, 1)")
        if Protocol(cfg.protocol) is Protocol.static and Rule(cfg.rule) is Rule.top_k:
            raise ConfigError("method.rule=top_k is the released online path; with method.protocol=static use "
                              "method=grad_norm (the same ranking on the whole pool)")

    def select(self, ctx: RunContext) -> Selection:
        if Protocol(self.cfg.protocol) is Protocol.online:
            return online_select(ctx, self.cfg, float(self.cfg.lam))
        return run_logdet_selector(self, ctx, float(self.cfg.lam))
