"""The lookahead meta-gradient in forward mode (``method.meta_grad=jvp``), exact and first order.

For ``θ' = θ − α c Σ_i w_i ∇l_i(θ)`` (``c = 1`` for ``reduction=sum``, ``1/B`` for ``mean``)
the chain rule gives, with ``w`` held at its value,

    ∂L_m(θ')/∂w_i = −α c · ∇l_i(θ)·v,        v = ∇_θ L_m(θ')  (evaluated at θ'),

and ``(∇l_i(θ)·v)_i`` is one Jacobian-vector product of the per-example pool losses at θ
along ``v``: a forward pass with tangents (``torch.autograd.forward_ad``, the primitive under
``torch.func.jvp``; as fast, without its transform layer). ``∂L_m/∂(ε or φ)`` is then a backward
through the weight function only (``lookahead.meta_gradient``). Nothing is differentiated
twice and no ``create_graph`` graph is kept: the double backward through every layer for
the ``B`` pool examples becomes one forward-mode pass of them.

**Same forward, same statistics.** The JVP pass sees the batch the lookahead's forward saw,
at the same θ and in the same mode, so BatchNorm normalises with the same batch statistics
(differentiated through, as the reverse path does) inside ``frozen_buffers``; random ops
(dropout) replay the masks of that forward: the RNG state taken before it is restored for
the JVP pass and the stream is put back afterwards (:func:`replay_rng`).

**θ' = θ (L2RW: ε = 0).** ``v = ∇L_m(θ)`` does not depend on the pool forward, so the target
is differentiated first and the pool batch's one forward runs *with* tangents
(:func:`dual_losses` with ``keep_graph``): its primal losses keep their graph for the real
step and its tangents are the JVP — no extra pass. Not with active dropout: there the target
batch would draw its masks first, so the general path (pool forward, then a replayed JVP
pass) keeps the random stream, and the run, as the double backward has them.

**Ops without a forward-AD formula** (CPU flash attention, custom autograd Functions without
``jvp``) are found once at setup by :func:`forward_ad_error` on two pool examples; the
method then falls back to the double backward and says so (``ctx.warn``).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from selbench.core.modes import frozen_buffers, stochastic


def checked_weights(w: Tensor, losses: Tensor) -> Tensor:
    """``weight_fn``'s output, which must be one weight per pool loss."""
    if w.shape != losses.shape:
        raise ValueError(f"weight_fn returned shape {tuple(w.shape)} for {tuple(losses.shape)} losses")
    return w


def rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@contextmanager
def replay_rng(state: tuple, device: torch.device):
    """Inside: the RNG as it was at ``state``; after: the stream continues where it was."""
    now = rng_state(device)
    _set_rng(state, device)
    try:
        yield
    finally:
        _set_rng(now, device)


def dual_losses(adapter, x: Tensor, y: Tensor, primals: dict[str, Tensor], tangents: dict[str, Tensor],
                keep_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Per-example losses at ``primals`` and their directional derivative along ``tangents``
    (one forward with tangents, counted as a forward of ``len(x)`` by the adapter).
    ``keep_graph``: the primal losses stay differentiable w.r.t. ``primals`` (reverse mode)."""
    with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()), fwAD.dual_level():
        dual = {k: fwAD.make_dual(p if keep_graph else p.detach(), tangents[k]) for k, p in primals.items()}
        primal, tangent = fwAD.unpack_dual(adapter.per_example_loss(x, y, params=dual))
    return primal, (torch.zeros_like(primal) if tangent is None else tangent.detach())


def target_grad(adapter, xt: Tensor, yt: Tensor, at: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``L_m`` (detached) and ``v = ∇ L_m`` w.r.t. the tensors of ``at`` (first order, ``M`` backward)."""
    leaves = {k: t.detach().requires_grad_(True) for k, t in at.items()}
    loss = adapter.per_example_loss(xt, yt, params=leaves).mean()
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    adapter.cost.count(backward=len(xt))
    return loss.detach(), {k: torch.zeros_like(t) if g is None else g for (k, t), g in zip(leaves.items(), grads)}


def jvp_lookahead(adapter, x, y, xt, yt, weight_fn, lr: float, reduction: str, theta: dict[str, Tensor],
                  reuse: bool, zero_weights: bool, at: dict[str, Tensor] | None = None):
    """``(L_m(θ'), losses, w, ∂L_m/∂w)`` of the one-step lookahead, in forward mode (module doc).

    ``losses`` are still in their graph at θ when ``reuse`` (the real step back-propagates them);
    ``zero_weights``: the caller's weights are 0 (L2RW's ε), so θ' = θ and no inner gradient is taken.
    ``at``: the params the pool forward at θ passes (None: ``theta`` is the model's own tensors).
    """
    c = 1.0 if reduction == "sum" else 1.0 / len(x)
    if zero_weights and reuse and not stochastic(adapter.model):  # v first; the pool forward carries the JVP
        with frozen_buffers(adapter.model):
            target_loss, v = target_grad(adapter, xt, yt, theta)
        losses, jv = dual_losses(adapter, x, y, theta, v, keep_graph=True)
        w = checked_weights(weight_fn(losses.detach()), losses)
        return target_loss, losses, w, (-lr * c) * jv
    dev = torch.device(adapter.device)
    state = rng_state(dev)
    if reuse:  # the iteration's forward of the batch at θ: BatchNorm's running statistics move once, here
        losses = adapter.per_example_loss(x, y, params=at)
    with frozen_buffers(adapter.model):
        if not reuse:
            losses = adapter.per_example_loss(x, y, params=at)
        w = checked_weights(weight_fn(losses.detach()), losses)
        new = {k: t.detach() for k, t in theta.items()}
        if not zero_weights:
            inner = (w.detach() * losses).sum() * c
            grads = torch.autograd.grad(inner, list(theta.values()), retain_graph=reuse, allow_unused=True)
            adapter.cost.count(backward=len(x))
            new = {k: t if g is None else t - lr * g for (k, t), g in zip(new.items(), grads)}
        target_loss, v = target_grad(adapter, xt, yt, new)
        with replay_rng(state, dev):
            _, jv = dual_losses(adapter, x, y, theta, v)
    return target_loss, losses, w, (-lr * c) * jv


def forward_ad_error(adapter, x: Tensor, y: Tensor, theta: dict[str, Tensor]) -> str | None:
    """None if a forward with tangents runs on this model (two examples, buffers and RNG left
    as they were), else the error's first line: the model needs ``meta_grad=double_backward``."""
    dev = torch.device(adapter.device)
    try:
        with frozen_buffers(adapter.model), replay_rng(rng_state(dev), dev):
            dual_losses(adapter, x, y, theta, {k: torch.ones_like(t) for k, t in theta.items()})
    except (RuntimeError, NotImplementedError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None
