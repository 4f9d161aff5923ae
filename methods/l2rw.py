"""L2RW: Learning to Reweight Examples (Ren et al., ICML 2018) — a one-step-lookahead
bilevel baseline; the shared lookahead machinery is in :mod:`selbench.methods.lookahead`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selbench.methods.base import MethodConfig, weighted_step
from selbench.methods.lookahead import LookaheadReweighter, meta_gradient, one_step_lookahead, param_dtype
from selbench.methods.registry import register_method


def l2rw_normalise(w_tilde: Tensor) -> Tensor:
    """Ren et al. eq. (12): ``w = w̃ / (Σ w̃ + δ(Σ w̃))``, δ(a) = 1 iff a = 0.

    An all-zero batch (no example's gradient agrees with the target's) gives all-zero
    weights instead of 0/0.
    """
    s = w_tilde.sum()
    return w_tilde / (s + (s == 0).to(w_tilde.dtype))


@dataclass
class L2RWConfig(MethodConfig):
    #: α of the virtual step; null = the main optimiser's current lr (Ren et al. use the
    #: training lr). Only the scale of ∂L_m/∂ε depends on it, and w is normalised.
    inner_lr: Optional[float] = None
    #: parameters the virtual step moves: all | head | last:<k> (paper: all)
    lookahead_params: str = "all"
    #: all-zero batch: the paper's guard gives w = 0 and its code still runs the
    #: optimiser (momentum / weight decay move θ); true skips that step instead.
    skip_all_zero: bool = False


@register_method("l2rw", config=L2RWConfig)
class L2RW(LookaheadReweighter):
    """Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018), Algorithm 1.

    Per iteration, pool batch ``B`` and target batch ``M``:

    1. ``ε = 0 ∈ R^B`` (requires grad); ``θ' = θ − α ∇_θ Σ_i ε_i l_i(θ)`` (graph kept);
    2. ``∇ε = ∂/∂ε [ (1/M) Σ_j l_j^m(θ') ]`` at ``ε = 0``
       (``= −α ∇_θ L_m(θ)·∇_θ l_i(θ)``: gradient alignment with the target);
    3. ``w̃ = max(−∇ε, 0)``; ``w = w̃ / (Σ w̃ + δ(Σ w̃))`` (all-zero guard, eq. 12);
    4. real step of the runner's optimiser on ``Σ_i w_i l_i(θ)`` (a fresh forward at θ,
       which also updates BatchNorm's running statistics once).

    Nothing persists between steps in the algorithm. ``pool_weights`` (for scoring
    only) is the *last* weight each pool example received, rescaled by the batch size
    (``B · w_i``, so a batch of equal weights reads 1 and batches are comparable);
    examples not yet drawn read 1.

    Departures: none in the update. The official code's real step also runs on an all-
    zero batch (zero gradient, but momentum/weight decay still act); ``skip_all_zero``
    switches to skipping it.
    """
    budget_use = "none"


    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        self.last_w = torch.ones(ctx.n_pool)
        self.n_zero_batches = 0

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        dtype = param_dtype(ctx.model)
        eps = torch.zeros(len(pool_idx), device=ctx.device, dtype=dtype, requires_grad=True)
        lr = self._inner_lr()
        la = one_step_lookahead(ctx.adapter, x, y, xt, yt, lambda _l: eps, lr, reduction="sum",
                                params=cfg.lookahead_params)
        (g_eps,) = meta_gradient(ctx.adapter, la, [eps])
        w = l2rw_normalise(torch.clamp(-g_eps.detach(), min=0))
        zero = bool(w.sum() == 0)
        self.n_zero_batches += int(zero)
        self.last_w[pool_idx] = (w * len(w)).float().cpu()
        if zero and cfg.skip_all_zero:
            loss = la.pool_losses.mean()
        else:  # weighted_step minimises mean(w'·l): w' = B·w gives the paper's Σ w_i l_i
            loss = weighted_step(ctx, self.optimizer, x, y, w * len(w))
        return {"loss": float(loss.detach()), "target_loss_lookahead": float(la.target_loss.detach()),
                "weight_nonzero": float((w > 0).float().mean()), "zero_batch": float(zero)}

    def pool_weights(self, ctx):
        return self.last_w.clone()


