"""Model-mode helpers: the one way to score without training side effects.

Scoring passes (a method weighing the pool, an evaluation) are not training passes.
Two things must not leak from them:

- **the mode**: :func:`eval_mode` puts the model in eval mode (BatchNorm uses its
  running statistics, dropout is off) and restores whatever mode it was in;
- **the running statistics**: :func:`frozen_buffers` gives the model private copies of
  its buffers for a pass that has to run in train mode (a lookahead's virtual step on batch statistics,
  a scorer that must see the training-mode embedding), so only the real optimiser
  step moves BatchNorm's running mean and variance.

:func:`stochastic` says whether a forward in the model's current mode draws random numbers
(active dropout): then two forwards of one batch differ.
"""
from __future__ import annotations

from contextlib import contextmanager

from torch import nn
from torch.nn.modules.dropout import _DropoutNd


def stochastic(model: nn.Module) -> bool:
    """A forward in the model's current mode is random: a dropout module with ``p > 0`` in training
    mode (the from-scratch models', LoRA's), or a wrapped transformers model whose config has
    non-zero dropout rates."""
    if not model.training:
        return False
    if any(isinstance(m, _DropoutNd) and m.p > 0 and m.training for m in model.modules()):
        return True
    cfg = getattr(getattr(model, "lm", None), "config", None)
    return any(float(getattr(cfg, k, 0.0) or 0.0) > 0 for k in ("attention_dropout", "hidden_dropout", "dropout"))


@contextmanager
def eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@contextmanager
def frozen_buffers(model: nn.Module):
    """Inside the block every buffer (BatchNorm running stats, counters) is a private copy;
    on exit the module gets its original buffers back, untouched.

    Swapping tensors rather than copying values back keeps autograd graphs built inside
    the block valid after it (a lookahead differentiates through them later).
    """
    saved = [(m, name, b) for m in model.modules() for name, b in m._buffers.items() if b is not None]
    for m, name, b in saved:
        m._buffers[name] = b.clone()
    try:
        yield model
    finally:
        for m, name, b in saved:
            m._buffers[name] = b
