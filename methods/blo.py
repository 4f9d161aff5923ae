"""Bilevel-optimisation reweighting baselines: L2RW, Meta-Weight-Net, online BLO.

All three approximate the bilevel problem BADS replaces,
``min_w Σ_j l(z_j^m; θ*(w))`` with ``θ*(w) = argmin_θ Σ_i w_i l(z_i^t; θ)``, by the
one-step-lookahead meta-gradient of :mod:`selbench.methods.lookahead` (see there for
the equations, the BatchNorm choice and how passes are counted). Every step is
``pool batch (runner's sampler) + target batch → meta-gradient → real step``.

Defaults are the papers' (METHODS.md §2); per-experiment values live in
``conf/method_preset/<experiment>/{l2rw,mwnet,blo}.yaml`` and every field can be
overridden from the command line (``method.inner_lr=0.01``). The main model's
optimiser (SGD/momentum/lr) is the runner's (``runner.optimizer``), shared by all
methods of a comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selbench.methods.base import MethodConfig, Reweighter, RunContext, weighted_step
from selbench.methods.lookahead import current_lr, meta_gradient, one_step_lookahead
from selbench.methods.registry import register_method
from selbench.runners.errors import ConfigError
from selbench.runners.train import CyclicSampler


def _param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def l2rw_normalise(w_tilde: Tensor) -> Tensor:
    """Ren et al. eq. (12): ``w = w̃ / (Σ w̃ + δ(Σ w̃))``, δ(a) = 1 iff a = 0.

    An all-zero batch (no example's gradient agrees with the target's) gives all-zero
    weights instead of 0/0.
    """
    s = w_tilde.sum()
    return w_tilde / (s + (s == 0).to(w_tilde.dtype))


def _batch(ctx: RunContext, idx: Tensor, split: str = "pool") -> tuple[Tensor, Tensor]:
    data = ctx.pool if split == "pool" else ctx.target
    return data.x[idx], data.y[idx]


class _LookaheadReweighter(Reweighter):
    """What the three one-step-lookahead methods share: batches, the virtual-step lr,
    and applying a meta-gradient to a weight model."""

    def _batches(self, ctx, pool_idx, target_idx):
        return (*_batch(ctx, pool_idx), *_batch(ctx, target_idx, "target"))

    def _inner_lr(self) -> float:
        """α of the virtual step: ``inner_lr``, or the main optimiser's current lr."""
        return current_lr(self.optimizer) if self.cfg.inner_lr is None else float(self.cfg.inner_lr)

    @torch.no_grad()
    def _score_pool(self, ctx, score) -> Tensor:
        """``score(x, y)`` over the whole pool in ``score_chunk`` chunks, model in eval mode
        (BatchNorm running statistics), concatenated on the CPU in float64."""
        model, chunk = ctx.model, self.cfg.score_chunk
        was = model.training
        model.eval()
        try:
            return torch.cat([score(ctx.pool.x[i:i + chunk], ctx.pool.y[i:i + chunk]).double().cpu()
                              for i in range(0, ctx.n_pool, chunk)] or [torch.zeros(0, dtype=torch.float64)])
        finally:
            model.train(was)

    @staticmethod
    def _meta_step(ctx, la, params: list, optimizer) -> None:
        grads = meta_gradient(ctx.adapter, la, params)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()


# --------------------------------------------------------------------------- L2RW


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
class L2RW(_LookaheadReweighter):
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

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        self.last_w = torch.ones(ctx.n_pool)
        self.n_zero_batches = 0

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        dtype = _param_dtype(ctx.model)
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


# --------------------------------------------------------------------------- MW-Net


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


@dataclass
class MWNetConfig(MethodConfig):
    hidden: int = 100               # 1 → 100 → 1 MLP (Shu et al.)
    #: normalise the batch's weights to sum 1 (official 2019 code, both steps); false = the
    #: later "code optimisation" release: unnormalised weights, batch mean
    normalize: bool = True
    meta_lr: float = 1e-3           # Adam on φ
    meta_weight_decay: float = 1e-4
    #: α of the virtual step; null = the main optimiser's current lr (the official code's meta_lr = lr)
    inner_lr: Optional[float] = None
    lookahead_params: str = "all"
    #: examples per chunk when scoring the whole pool for pool_weights
    score_chunk: int = 1000


@register_method("mwnet", config=MWNetConfig)
class MWNet(_LookaheadReweighter):
    """Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019), Algorithm 1.

    Per iteration, pool batch ``B``, target batch ``M``, weighting MLP ``V(·; φ)``:

    1. ``θ'(φ) = θ − α ∇_θ Σ_i w_i(φ) l_i(θ)``, ``w_i(φ) = V(l_i; φ) / Σ_k V(l_k; φ)``, with
       ``V``'s input the *detached* loss (the official code's ``vnet(cost.data)``) — eq. (5);
    2. ``φ ← Adam(φ, ∇_φ (1/M) Σ_j l_j^m(θ'(φ)))`` — eq. (6), lr 1e-3, weight decay 1e-4;
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

    Departures: the virtual step is plain SGD at the main lr (as in the code's
    ``update_params``); the CIFAR lr decay of α follows the runner's schedule.
    """

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        self.vnet = LossToWeight(self.cfg.hidden).to(ctx.device, _param_dtype(ctx.model))
        self.v_opt = torch.optim.Adam(self.vnet.parameters(), lr=self.cfg.meta_lr,
                                      weight_decay=self.cfg.meta_weight_decay)

    def _weights(self, losses: Tensor) -> Tensor:
        w = self.vnet(losses)
        return sum_normalise(w) if self.cfg.normalize else w

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        lr = self._inner_lr()
        phi = list(self.vnet.parameters())
        la = one_step_lookahead(ctx.adapter, x, y, xt, yt, self._weights, lr,
                                reduction="sum" if cfg.normalize else "mean", params=cfg.lookahead_params)
        self._meta_step(ctx, la, phi, self.v_opt)

        self.optimizer.zero_grad(set_to_none=True)
        losses = ctx.adapter.per_example_loss(x, y)
        with torch.no_grad():
            w = self._weights(losses.detach())
        loss = (w * losses).sum() if cfg.normalize else (w * losses).mean()
        loss.backward()
        ctx.cost.count(backward=len(x))
        self.optimizer.step()
        return {"loss": float(loss.detach()), "target_loss_lookahead": float(la.target_loss.detach()),
                "weight_max": float(w.max())}

    def pool_weights(self, ctx):
        return self._score_pool(ctx, lambda x, y: self.vnet(ctx.adapter.per_example_loss(x, y))).float()


# --------------------------------------------------------------------------- online BLO


def _embed_keep_stats(ctx: RunContext, x: Tensor) -> Tensor:
    """Detached embeddings in the model's current mode, without moving BatchNorm's running statistics.

    Scoring passes are not training passes: in train mode they would otherwise fold
    extra batches into the running statistics that evaluation uses.
    """
    bufs = [b for b in ctx.model.buffers() if b.is_floating_point() or b.dtype == torch.long]
    saved = [b.clone() for b in bufs]
    try:
        return ctx.adapter.embed(x)
    finally:
        with torch.no_grad():
            for b, s in zip(bufs, saved):
                b.copy_(s)


class EmbeddingScorer(nn.Module):
    """Weight model ``s(z; φ)`` on a detached embedding ``e`` and the (possibly noisy) label ``y``.

    ``features``:
    - ``embed``: ``s = v·e + b`` (no label);
    - ``embed_label``: ``s = v·[e ⊕ onehot(y)] + b`` (BADS's weight-net input). The label
      enters additively, so it can shift a class up or down but cannot express whether
      the label *agrees* with the content;
    - ``embed_x_label``: ``s = v_y·e + b_y`` (linear on ``e ⊗ onehot(y)``: one linear
      scorer per label), which can.
    ``hidden > 0`` puts a ReLU MLP on the chosen input instead of the linear map. The
    output layer starts at zero, so selection starts uniform at random.
    """

    FEATURES = ("embed", "embed_label", "embed_x_label")

    def __init__(self, embed_dim: int, num_classes: int, features: str = "embed_label", hidden: int = 0):
        super().__init__()
        if features not in self.FEATURES:
            raise ConfigError(f"method.features={features!r} (choose from: {', '.join(self.FEATURES)})")
        self.num_classes, self.features = num_classes, features
        d = {"embed": embed_dim, "embed_label": embed_dim + num_classes,
             "embed_x_label": embed_dim * num_classes + num_classes}[features]
        last = nn.Linear(d if hidden <= 0 else hidden, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = last if hidden <= 0 else nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), last)

    def forward(self, emb: Tensor, y: Tensor) -> Tensor:
        if self.features != "embed":
            onehot = F.one_hot(y.to(emb.device), self.num_classes).to(emb.dtype)
            if self.features == "embed_label":
                emb = torch.cat([emb, onehot], dim=1)
            else:
                emb = torch.cat([(onehot.unsqueeze(2) * emb.unsqueeze(1)).flatten(1), onehot], dim=1)
        return self.net(emb).squeeze(-1)


@dataclass
class BLOConfig(MethodConfig):
    weight_lr: float = 1e-3         # Adam on φ (BADS's weight-net lr for MNIST; 1e-4 in its CIFAR/NLG runs)
    weight_weight_decay: float = 0.0
    weight_hidden: int = 0          # 0 = linear scorer (as BADS's weight net)
    #: scorer input: embed | embed_label (BADS: embedding ⊕ one-hot) | embed_x_label (per-label linear)
    features: str = "embed_x_label"
    #: α of the virtual step; null = the main optimiser's current lr
    inner_lr: Optional[float] = None
    lookahead_params: str = "all"
    #: top: keep the β·L highest scores of the large batch; sample: draw β·L without
    #: replacement with probability ∝ softmax(scores) (Gumbel top-k)
    selection: str = "sample"
    #: size L of the scored pool batch; null = ⌈batch_size / β⌉ (so β·L = batch_size), capped
    large_batch: Optional[int] = None
    max_large_batch: int = 2048
    #: also put the target batch into the real step (Grangier et al. train on the filtered pool only)
    include_target_in_step: bool = False
    score_chunk: int = 2000


@register_method("blo", config=BLOConfig)
class OnlineBLO(_LookaheadReweighter):
    """Online bilevel data selection (Grangier, Ablin, Hannun, TMLR 2024; the BLO baseline of BADS).

    A weight model ``s(z; φ)`` scores pool examples from their detached embedding and
    label (:class:`EmbeddingScorer`). Per iteration:

    1. **Meta step** on the runner's uniformly drawn pool batch ``B`` and target batch
       ``M``: soft weights ``w_i = B · softmax_i(s(z_i; φ))`` (mean 1 over the batch),
       ``θ'(φ) = θ − α ∇_θ (1/B) Σ_i w_i l_i(θ)``, and
       ``φ ← Adam(φ, ∇_φ (1/M) Σ_j l_j^m(θ'(φ)))``. The meta-gradient reaches φ only
       through the soft weights of the virtual step: ``∂L_m/∂s_i = (∂L_m/∂w_i)·∂w_i/∂s_i``
       with ``∂L_m/∂w_i = −(α/B) ∇L_m(θ')·∇l_i(θ)`` — the same gradient-alignment signal as
       L2RW, pooled over examples by the shared weight model.
    2. **Selection**: a large pool batch of ``L`` examples (own seeded cyclic sampler)
       is scored under no_grad and ``k = round(β·L)`` are kept (``β`` = budget):
       ``selection=sample`` (default) draws them without replacement with probability
       ∝ softmax(s) (Gumbel top-k), ``selection=top`` keeps the ``k`` highest scores.
    3. **Real step** of the runner's optimiser on the uniform mean loss of the kept
       examples (+ the target batch if ``include_target_in_step``).

    ``pool_weights``: ``N · softmax(s)`` over the whole pool (mean 1; same ranking as
    the top-k rule), embeddings in eval mode, chunked, forwards counted.

    Departures (the paper's details are thin, METHODS.md §2): Grangier et al. solve the
    bilevel problem with SOBA (a running estimate of the inverse-Hessian–vector
    product) rather than a one-step lookahead; here the meta-gradient is the one-step
    lookahead shared with L2RW and MW-Net, as METHODS.md specifies. The weight model is
    trained on a *uniform* pool batch (unbiased, every example can receive signal),
    while the main model trains on the *filtered* large batch (our reading of the
    paper's big-batch filtering; no official code was found to confirm it). Soft
    weights are a batch softmax.
    Default ``selection=sample``: it keeps the distribution the meta step optimises
    (softmax weights); top-k is scale-free, so from the first update it turns tiny
    score differences into a hard half-space of the embedding — measured here
    (Fashion-MNIST 50% noise, β = 0.5, 300 steps) it collapsed onto one class (test
    accuracy 0.10, chance) at weight lr 1e-3 and 1e-4, where sampling reached 0.71.
    Default ``features=embed_x_label`` (see :class:`EmbeddingScorer`): with BADS's
    ``embedding ⊕ one-hot`` the label enters additively and cannot flag a flipped
    label (measured weight AUC clean-vs-noisy 0.48 vs 0.92 for the per-label scorer).
    """

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        cfg = self.cfg
        if cfg.selection not in ("top", "sample"):
            raise ConfigError(f"method.selection={cfg.selection!r} (choose from: top, sample)")
        # Label-conditioned features need class labels; text examples have none, so there the
        # scorer sees the sequence embedding alone (as in the BADS paper's NLG / LLM runs).
        features = cfg.features if ctx.modality == "vision" else "embed"
        self.scorer = EmbeddingScorer(ctx.adapter.embed_dim, ctx.num_classes, features, cfg.weight_hidden)
        self.scorer.to(ctx.device, _param_dtype(ctx.model))
        self.w_opt = torch.optim.Adam(self.scorer.parameters(), lr=cfg.weight_lr, weight_decay=cfg.weight_weight_decay)
        L = cfg.large_batch if cfg.large_batch is not None else math.ceil(ctx.batch_size / max(ctx.budget, 1e-12))
        self.L = int(max(1, min(L, cfg.max_large_batch, ctx.n_pool)))
        self.k = int(max(1, min(self.L, round(ctx.budget * self.L))))
        self.sampler = CyclicSampler(ctx.n_pool, ctx.generator)

    def _scores(self, ctx, x, y) -> Tensor:
        return self.scorer(_embed_keep_stats(ctx, x), y)

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        lr = self._inner_lr()

        # 1. meta step on φ through soft weights in the virtual step
        phi = list(self.scorer.parameters())
        s = self._scores(ctx, x, y)
        la = one_step_lookahead(ctx.adapter, x, y, xt, yt, lambda _l: len(s) * torch.softmax(s, 0), lr,
                                reduction="mean", params=cfg.lookahead_params)
        self._meta_step(ctx, la, phi, self.w_opt)

        # 2. score a large pool batch, keep k
        big = self.sampler.next(self.L)
        xb, yb = _batch(ctx, big)
        with torch.no_grad():
            sb = self._scores(ctx, xb, yb).float().cpu()
        if cfg.selection == "sample":
            u = torch.rand(len(sb), generator=ctx.generator).clamp_(1e-20, 1 - 1e-7)
            sb = sb - torch.log(-torch.log(u))  # Gumbel-top-k = sampling without replacement ∝ softmax
        keep = big[torch.topk(sb, self.k).indices]

        # 3. real step on the kept examples
        xk, yk = _batch(ctx, keep)
        if cfg.include_target_in_step:
            xk, yk = torch.cat([xk, xt]), torch.cat([yk, yt])
        loss = weighted_step(ctx, self.optimizer, xk, yk)
        return {"loss": float(loss.detach()), "target_loss_lookahead": float(la.target_loss.detach()), "n_kept": float(len(keep))}

    def pool_weights(self, ctx):
        s = self._score_pool(ctx, lambda x, y: self._scores(ctx, x, y))
        return (len(s) * torch.softmax(s, 0)).float()
