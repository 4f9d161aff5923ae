"""The one-step-lookahead meta-gradient shared by L2RW, MW-Net and online BLO.

All three bilevel baselines approximate ``min_w L_m(θ*(w))``, ``θ*(w) = argmin_θ Σ_i w_i l_i(θ)``
by differentiating the target loss through *one* virtual SGD step of the main model:

    L_tr(θ, w) = reduce_i( w_i · l_i(θ) )                  reduce = sum (L2RW) or mean (MW-Net, BLO)
    g          = ∇_θ L_tr(θ, w)                           autograd.grad(..., create_graph=True)
    θ'         = θ − α · g                                a plain SGD step (no momentum, no weight decay),
                                                          as in the papers' meta-models
    L_m(θ')    = mean_j l(z_j^m; θ')                      through torch.func.functional_call
    meta-grad  = ∂L_m(θ') / ∂(ε or φ)                     autograd.grad, second order through g

``w`` is whatever tensor the caller builds from the (detached) pool losses: per-batch
perturbations ε (L2RW), ``MLP_φ(l_i)`` (MW-Net) or a weight model's soft weights
on embeddings (BLO); the meta-gradient reaches ε / φ only through ``w``. The
model's own parameters are the leaves θ (their ``.grad`` is never touched, so the
caller's real optimiser step is unaffected); no meta-layers, no ``higher``.

**BatchNorm (and any other buffer).** Both virtual forward passes run in the model's
current mode (train: batch statistics, like the official L2RW/MW-Net meta-models)
inside ``core.modes.frozen_buffers``, so the running statistics that evaluation uses
are updated only by the real step, once per iteration. This is what MW-Net's
official code achieves by copying the model's state into a throwaway meta-model;
running statistics are not differentiated through.

**Two exact ways to the meta-gradient** (``method.meta_grad``, :class:`MetaGrad`):
``double_backward`` is the papers' (above, second order); ``jvp`` uses
``∂L_m(θ')/∂w_i = −α c ∇l_i(θ)·∇L_m(θ')`` (``c`` = 1 for sum, 1/B for mean): a first-order
inner gradient, the target gradient ``v`` at θ', one forward-mode JVP of the pool losses
along ``v`` and a backward through the weight function only (:mod:`selbench.methods.bilevel.metagrad`).
Both agree to float rounding (``tests/test_lookahead.py``). The default ``auto`` takes ``jvp``
when the virtual step moves every trainable parameter (faster there: LeNet5, ``docs/methods/l2rw.md``)
and ``double_backward`` for a subset (``head``, ``last:<k>``), whose second-order pass stops at
the subset while the JVP pass is a whole forward.

**Cost accounting** (``adapter.cost``, examples per lookahead + meta-gradient; the adapter counts
its forwards, the real step's backward is :func:`reused_step`'s). ``double_backward``: forwards
``B`` (pool at θ) + ``M`` (target at θ'); backwards ``B`` (inner gradient, ``create_graph``) +
``M + B`` (the meta-gradient back-propagates the target *and* runs the backward-of-backward
through the pool graph, ≈ 4 forwards of work on LeNet5). ``jvp``: forwards ``B + M`` + ``B``
for the JVP pass (a forward with tangents, counted as one forward: ≈ 2 forwards of work on
LeNet5, 12.9 vs 6.6 ms at B = 128), backwards ``B`` (first-order inner gradient) + ``M``
(target at θ'); the meta-gradient itself back-propagates the weight function only. With zero
weights (L2RW: θ' = θ) there is no inner gradient and, without active dropout, the JVP rides on
the pool batch's one forward: forwards ``B + M``, backwards ``M``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from selbench.core.errors import ConfigError
from selbench.core.modes import frozen_buffers
from selbench.methods.bilevel.metagrad import checked_weights, forward_ad_error, jvp_lookahead
from selbench.methods.base import Reweighter, RunContext, score_pool
from selbench.methods.common.choice import Choice, check_range


class MetaGrad(Choice):
    """How ∂L_m(θ')/∂w is computed; both are exact (module docstring)."""

    #: jvp where the virtual step moves every trainable parameter, else double_backward: the JVP pass
    #: costs a whole forward whatever the subset, the double backward only reaches the subset
    auto = "auto"
    jvp = "jvp"                          # forward-mode JVP of the pool losses, first order
    double_backward = "double_backward"  # reverse-over-reverse through the create_graph inner gradient


#: ``lookahead_params`` values per modality (mirrors ``param_subset`` of the task adapters):
#: fixed names, and prefixes that take a positive count (``last:<k>``)
LOOKAHEAD_FIXED = {"vision": ("all", "trainable", "head"), "language": ("all", "trainable", "head", "lora")}
LOOKAHEAD_COUNTED = {"vision": ("last",), "language": ("last", "layers")}


def check_lookahead_params(value: str, run_cfg: Any, key: str = "method.lookahead_params") -> None:
    """``lookahead_params`` is a fixed name or ``<prefix>:<k>``: checked before launch (one line)."""
    modality = str(run_cfg.dataset.get("modality", "vision")) if run_cfg is not None else "vision"
    fixed, counted = LOOKAHEAD_FIXED.get(modality, ()), LOOKAHEAD_COUNTED.get(modality, ())
    m = re.fullmatch(r"(\w+):(\d+)", str(value))
    if str(value) in fixed or (m and m.group(1) in counted and int(m.group(2)) >= 1):
        return
    allowed = ", ".join((*fixed, *(f"{c}:<k>" for c in counted)))
    raise ConfigError(f"{key}={value!r} (choose from: {allowed}; k ≥ 1)")


def check_lookahead_config(cfg: Any, run_cfg: Any) -> None:
    """The knobs every lookahead reweighter has (``inner_lr``, ``lookahead_params``)."""
    check_range("method.inner_lr", cfg.inner_lr, 0, optional=True)
    check_lookahead_params(cfg.lookahead_params, run_cfg)
    if getattr(cfg, "score_chunk", None) is not None:
        check_range("method.score_chunk", cfg.score_chunk, 1)


@dataclass
class Lookahead:
    """The result of one virtual step; ``target_loss`` is differentiable w.r.t. what ``weights`` used."""

    target_loss: Tensor      # L_m(θ'), scalar
    pool_losses: Tensor      # l_i(θ), detached, [B]
    weights: Tensor          # w_i as used in the virtual step, [B] (still in the graph)
    n_pool: int
    n_target: int
    #: with ``reuse=True``: the pool losses still in their forward graph at θ, for the real step
    live_losses: Tensor | None = None
    #: ``meta_grad=jvp``: ∂L_m(θ')/∂w, [B] (``target_loss`` is then detached)
    grad_w: Tensor | None = None


def lookahead_params(adapter, which: str = "all") -> dict[str, Tensor]:
    """The parameters the virtual step moves (``all`` | ``head`` | ``last:<k>``); the rest stay fixed."""
    return {k: v for k, v in adapter.param_subset(which).items() if v.requires_grad}


def one_step_lookahead(adapter, x: Tensor, y: Tensor, x_target: Tensor, y_target: Tensor,
                       weight_fn: Callable[[Tensor], Tensor], lr: float, *, reduction: str = "mean",
                       params: str | dict[str, Tensor] = "all", reuse: bool = False,
                       meta_grad: str = MetaGrad.double_backward, zero_weights: bool = False) -> Lookahead:
    """Virtual step ``θ' = θ − lr · ∇_θ reduce(w ⊙ l(θ))`` and the target loss at ``θ'``.

    ``weight_fn(losses)`` receives the pool losses *detached* (MW-Net feeds them to its
    MLP as ``cost.data``) and returns the weights ``[B]``, built from whatever is meta-learned.

    ``reuse=True`` (L2RW, MW-Net): the real step trains on the same pool batch at the same θ, so
    it reuses this forward instead of running its own (:func:`reused_step`; one forward of ``B``
    fewer per step). The pool forward then runs outside ``frozen_buffers``: it is the iteration's
    one forward of the batch at θ, so BatchNorm's running statistics are updated once, by it, as
    the real step's forward did before; the virtual forward at θ' stays frozen.

    ``meta_grad=jvp`` computes ``∂L_m/∂w`` here (``Lookahead.grad_w``, forward mode);
    ``zero_weights=True`` tells it the weights are 0 (L2RW's ε), so θ' = θ with no inner gradient
    (no host read to find out). ``double_backward`` keeps the graph for :func:`meta_gradient`.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r} (sum | mean)")
    theta = lookahead_params(adapter, params) if isinstance(params, str) else params
    # the model's own tensors: the pool forward at θ runs as a plain forward (an adapter's
    # capture_embedding can take the batch's embedding from it: online BLO)
    at = None if isinstance(params, str) else theta
    if str(meta_grad) == MetaGrad.jvp:
        target_loss, losses, w, grad_w = jvp_lookahead(adapter, x, y, x_target, y_target, weight_fn, lr, reduction,
                                                       theta, reuse, zero_weights, at)
        return Lookahead(target_loss, losses.detach(), w, len(x), len(x_target), losses if reuse else None, grad_w)
    names = list(theta)
    if reuse:
        losses = adapter.per_example_loss(x, y, params=at)
    with frozen_buffers(adapter.model):  # the virtual step never moves running statistics
        if not reuse:
            losses = adapter.per_example_loss(x, y, params=at)
        w = checked_weights(weight_fn(losses.detach()), losses)
        inner = (w * losses).sum()
        if reduction == "mean":
            inner = inner / len(losses)
        grads = torch.autograd.grad(inner, [theta[k] for k in names], create_graph=True, allow_unused=True)
        adapter.cost.count(backward=len(x))
        new = {k: (theta[k] if g is None else theta[k] - lr * g) for k, g in zip(names, grads)}
        target_loss = adapter.per_example_loss(x_target, y_target, params=new).mean()
    return Lookahead(target_loss, losses.detach(), w, len(x), len(x_target), losses if reuse else None)


def meta_gradient(adapter, la: Lookahead, wrt: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """``∂ L_m(θ') / ∂ wrt`` (zeros where ``wrt`` does not reach the target loss). With ``meta_grad=jvp``
    a backward of ``∂L_m/∂w`` through the weight function only (no model pass, nothing counted)."""
    if la.grad_w is not None:
        grads = torch.autograd.grad(la.weights, list(wrt), grad_outputs=la.grad_w, allow_unused=True)
        return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads))
    grads = torch.autograd.grad(la.target_loss, list(wrt), allow_unused=True, retain_graph=la.live_losses is not None)
    adapter.cost.count(backward=la.n_target + la.n_pool)
    return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads))


def reused_step(ctx: RunContext, optimizer: torch.optim.Optimizer, la: Lookahead, w: Tensor,
                reduction: str = "mean") -> Tensor:
    """The real step on ``reduce_i(w_i · l_i(θ))`` through the lookahead's own pool forward
    (``one_step_lookahead(..., reuse=True)``); ``w`` is detached. Returns the loss."""
    if la.live_losses is None:
        raise ValueError("reused_step needs one_step_lookahead(..., reuse=True)")
    optimizer.zero_grad(set_to_none=True)
    wl = w.detach().to(la.live_losses.dtype) * la.live_losses
    loss = wl.sum() if reduction == "sum" else wl.mean()
    loss.backward()
    ctx.cost.count(backward=la.n_pool, train=la.n_pool)
    optimizer.step()
    la.live_losses = None  # the graph is spent
    return loss.detach()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The main optimiser's current learning rate (after any schedule): the papers' default α."""
    return float(optimizer.param_groups[0]["lr"])


def param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def pool_batch(ctx: RunContext, idx: Tensor, split: str = "pool") -> tuple[Tensor, Tensor]:
    data = ctx.pool if split == "pool" else ctx.target
    return data.x[idx], data.y[idx]


def effective_sample_fraction(w: Tensor) -> Tensor:
    """``(Σw)² / (B Σw²)`` ∈ [1/B, 1]: 1 = uniform weights, 1/B = one example carries the batch
    (0 for an all-zero batch). A per-step diagnostic: how concentrated the weights are."""
    s2 = (w * w).sum()
    return torch.where(s2 > 0, w.sum() ** 2 / (len(w) * s2).clamp_min(torch.finfo(w.dtype).tiny),
                       torch.zeros_like(s2))


def step_stats(**values) -> dict:
    """The step's diagnostics for the runner's stats channel: tensors stay where they are
    (detached, 0-d; the loop sums them on the device and reads them once per eval point, so
    no host synchronisation per step), numbers become floats."""
    return {k: v.detach().reshape(()) if isinstance(v, Tensor) else float(v) for k, v in values.items()}


class LookaheadReweighter(Reweighter):
    """What the one-step-lookahead methods share: batches, the virtual-step lr, scoring
    the whole pool, and applying a meta-gradient to a weight model."""

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_lookahead_config(cfg, run_cfg)

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        if not lookahead_params(ctx.adapter, self.cfg.lookahead_params):
            raise ConfigError(f"method.lookahead_params={self.cfg.lookahead_params!r} selects no trainable "
                              f"parameter of this model: the meta-gradient would be 0")
        self.meta_grad = self._resolve_meta_grad(ctx)
        if self.cfg.inner_lr is not None and float(self.cfg.inner_lr) == 0:
            ctx.warn(f"{type(self).__name__}: method.inner_lr=0: the virtual step does not move θ, so the "
                     f"meta-gradient is 0 and the weights are never learned")

    def _resolve_meta_grad(self, ctx) -> str:
        """``cfg.meta_grad`` (``auto``: :class:`MetaGrad`), or ``double_backward`` where this model has an
        op without a forward-AD formula (probed once on two pool examples; the run says so through
        ``ctx.warn``). The path taken is ``record["selection"]["meta_grad"]``."""
        want = str(getattr(self.cfg, "meta_grad", MetaGrad.double_backward))
        theta = lookahead_params(ctx.adapter, self.cfg.lookahead_params)
        if want == MetaGrad.auto:
            every = {id(p) for p in ctx.model.parameters() if p.requires_grad} == {id(p) for p in theta.values()}
            want = str(MetaGrad.jvp if every else MetaGrad.double_backward)
        if want != MetaGrad.jvp:
            return want
        x, y = pool_batch(ctx, torch.arange(min(2, ctx.n_pool)))
        err = forward_ad_error(ctx.adapter, x, y, theta)
        if err is None:
            return want
        ctx.warn(f"{type(self).__name__}: method.meta_grad=jvp needs forward-mode AD, which this model does not "
                 f"support ({err}); using meta_grad=double_backward (same meta-gradient, slower)")
        return str(MetaGrad.double_backward)

    def after_training(self, ctx) -> dict:
        return {"meta_grad": self.meta_grad}

    def _batches(self, ctx, pool_idx, target_idx):
        return (*pool_batch(ctx, pool_idx), *pool_batch(ctx, target_idx, "target"))

    def _inner_lr(self) -> float:
        """α of the virtual step: ``inner_lr``, or the main optimiser's current lr."""
        return current_lr(self.optimizer) if self.cfg.inner_lr is None else float(self.cfg.inner_lr)

    def _score_pool(self, ctx, score) -> Tensor:
        return score_pool(ctx, score, self.cfg.score_chunk).double()

    @staticmethod
    def _meta_step(ctx, la, params: list, optimizer) -> None:
        grads = meta_gradient(ctx.adapter, la, params)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
