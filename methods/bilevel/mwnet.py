"""Meta-Weight-Net (Shu et al., NeurIPS 2019) — a one-step-lookahead bilevel baseline;
the shared lookahead machinery is in :mod:`selbench.methods.bilevel.lookahead`. Equation, knobs,
departures and measurements: ``docs/methods/mwnet.md``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from selbench.methods.base import MethodConfig
from selbench.methods.bilevel.lookahead import (Choice, LookaheadReweighter, MetaGrad, check_range, effective_sample_fraction,
                                        one_step_lookahead, param_dtype, reused_step, step_stats)
from selbench.methods.registry import register_method


class LossToWeight(nn.Module):
    """MW-Net's weighting function ``V(l; φ)``: Linear(1→h)–ReLU–Linear(h→1)–sigmoid."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.net(losses.unsqueeze(-1))).squeeze(-1)


def sum_normalise(w: Tensor) -> Tensor:
    """MW-Net code's ``w / Σw`` (left as is when ``Σw = 0``)."""
    s = w.sum()
    return w / torch.where(s != 0, s, torch.ones_like(s))


class MetaOptimizer(Choice):
    """V's optimiser, as in each of the authors' releases (docs/methods/mwnet.md)."""

    adam = "adam"  # MW-Net.py (2020): Adam
    sgd = "sgd"    # train_WRN-28-10_Meta_PGC.py (2019): SGD, momentum 0.9, Nesterov


@dataclass
class MWNetConfig(MethodConfig):
    hidden: int = 100               # 1 → 100 → 1 MLP (Shu et al.)
    #: normalise the batch's weights to sum 1 (official 2019 code, both steps); false = the
    #: later "code optimisation" release: unnormalised weights, batch mean
    normalize: bool = True
    #: V's optimiser: adam (the 2020 "stable" MW-Net.py) | sgd (the 2019 trainer: momentum 0.9, Nesterov)
    meta_optimizer: MetaOptimizer = MetaOptimizer.adam
    meta_lr: float = 1e-3           # lr on φ (both releases)
    meta_weight_decay: float = 1e-4  # 2020: 1e-4; the 2019 trainer: 5e-4
    #: α of the virtual step; null = the main optimiser's current lr (the official code's meta_lr = lr)
    inner_lr: Optional[float] = None
    lookahead_params: str = "all"
    #: examples per chunk when scoring the whole pool for pool_weights
    score_chunk: int = 1000
    #: the meta-gradient, exact either way: jvp (forward mode, first order) | double_backward
    #: (reverse over reverse, the papers') | auto (jvp when lookahead_params moves every parameter)
    meta_grad: MetaGrad = MetaGrad.auto


@register_method("mwnet", config=MWNetConfig)
class MWNet(LookaheadReweighter):
    """Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019), Algorithm 1.

    Per iteration, pool batch ``B``, target batch ``M``, weighting MLP ``V(·; φ)``:

    1. ``θ'(φ) = θ − α ∇_θ Σ_i w_i(φ) l_i(θ)``, ``w_i(φ) = V(l_i; φ) / Σ_k V(l_k; φ)``, with
       ``V``'s input the *detached* loss (the official code's ``vnet(cost.data)``) — eq. (5);
    2. ``φ ← Adam(φ, ∇_φ (1/M) Σ_j l_j^m(θ'(φ)))`` — eq. (6), lr 1e-3, weight decay 1e-4
       (``meta_optimizer=sgd``: the 2019 trainer's SGD, momentum 0.9, Nesterov);
    3. real step on ``Σ_i w_i l_i(θ)`` with ``V(·; φ_new)`` under no_grad — eq. (7).

    The batch normalisation ``V/ΣV`` is the official 2019 code's (guarded against 0);
    ``normalize=false`` gives the later release's unnormalised batch mean
    ``(1/B) Σ_i V(l_i) l_i``. Measured here (Fashion-MNIST, 50% symmetric noise, 300
    steps): without it the meta-gradient's dominant direction is "up-weight everything"
    (a larger effective step), which V realises by growing at high losses, so noisy
    examples ended up *above* clean ones (weight AUC 0.04); with it only the relative
    weights are learned.

    ``pool_weights``: ``V`` applied to the current per-example losses of the whole
    pool (model in eval mode, chunked, no_grad; the forwards are counted).

    Step diagnostics (curve ``train_<name>``): ``target_loss_lookahead`` (L_m(θ'(φ)) before
    the meta step), ``v_mean`` (mean raw ``V(l)`` ∈ (0, 1): near 0 or 1 = a saturated
    weighting function), ``weight_max`` (largest weight relative to the batch mean),
    ``weight_ess`` (effective sample fraction of the batch's weights: 1 = uniform, i.e.
    plain ERM).

    Departures: the virtual step is plain SGD at the main lr (as in the code's
    ``update_params``); the CIFAR lr decay of α follows the runner's schedule. The default pairs
    the 2019 trainer's normalisation with the 2020 release's Adam on φ, which neither release ran:
    ``meta_optimizer=sgd meta_weight_decay=5e-4`` is the 2019 trainer, ``normalize=false`` the 2020
    one (both checked side by side with the authors' code, docs/methods/mwnet.md).
    """
    budget_use = "none"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        check_range("method.hidden", cfg.hidden, 1)
        check_range("method.meta_lr", cfg.meta_lr, 0, open_lo=True)
        check_range("method.meta_weight_decay", cfg.meta_weight_decay, 0)

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        self.vnet = LossToWeight(self.cfg.hidden).to(ctx.device, param_dtype(ctx.model))
        cfg = self.cfg
        if cfg.meta_optimizer == MetaOptimizer.sgd:
            self.v_opt = torch.optim.SGD(self.vnet.parameters(), lr=cfg.meta_lr, momentum=0.9, nesterov=True,
                                         weight_decay=cfg.meta_weight_decay)
        else:
            self.v_opt = torch.optim.Adam(self.vnet.parameters(), lr=cfg.meta_lr, weight_decay=cfg.meta_weight_decay)

    def _weights(self, losses: Tensor) -> Tensor:
        w = self.vnet(losses)
        return sum_normalise(w) if self.cfg.normalize else w

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        lr = self._inner_lr()
        phi = list(self.vnet.parameters())
        la = one_step_lookahead(ctx.adapter, x, y, xt, yt, self._weights, lr,
                                reduction="sum" if cfg.normalize else "mean", params=cfg.lookahead_params, reuse=True,
                                meta_grad=self.meta_grad)
        self._meta_step(ctx, la, phi, self.v_opt)

        with torch.no_grad():  # the real step reuses the lookahead's forward at θ (same batch, same θ)
            v = self.vnet(la.pool_losses)
            w = sum_normalise(v) if cfg.normalize else v
        loss = reused_step(ctx, self.optimizer, la, w, "sum" if cfg.normalize else "mean")
        return step_stats(loss=loss, target_loss_lookahead=la.target_loss, v_mean=v.mean(),
                          weight_max=w.max() / w.mean().clamp_min(torch.finfo(w.dtype).tiny), weight_ess=effective_sample_fraction(w))

    def pool_weights(self, ctx):
        return self._score_pool(ctx, lambda x, y: self.vnet(ctx.adapter.per_example_loss(x, y))).float()


