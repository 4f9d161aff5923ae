"""What every task adapter shares: the model, its device, forward-pass accounting,
the generic parameter subsets and the per-example gradient driver.

The contract methods are written against is ``core.protocols.TaskAdapter`` (the one
definition); the vision and language adapters implement it on top of this base.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from selbench.core import grads as _grads
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError


class EmbeddingCapture:
    """What ``capture_embedding`` yields: after the block's ``per_example_loss`` forward, ``value`` is
    that batch's ``[B, D]`` detached embedding — what ``embed`` returns for those examples — or
    ``None`` where the adapter cannot take it from that forward (the caller then calls ``embed``)."""

    value: Tensor | None = None


class AdapterBase:
    """The shared implementation behind ``core.protocols.TaskAdapter`` (not a second contract)."""

    modality = ""
    has_class_labels = False
    #: subsets beyond all / last:<k> that this task offers (name → description, for the error message)
    SUBSETS: tuple[str, ...] = ()
    _capture: EmbeddingCapture | None = None  # set inside ``capture_embedding``

    def __init__(self, model: nn.Module, num_classes: int, cost: CostTracker, device: torch.device,
                 eval_batch_size: int):
        self.model, self.num_classes, self.cost, self.device = model, num_classes, cost, device
        self.eval_batch_size = eval_batch_size

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @contextmanager
    def capture_embedding(self) -> Iterator[EmbeddingCapture]:
        """Inside the block, a ``per_example_loss`` forward (without ``params``) also leaves the
        batch's embedding in the yielded box, so a method that needs both (BADS's weight net) does
        one forward, not two.  Each task says how (``_capture`` is the box while the block runs)."""
        box, prev = EmbeddingCapture(), self._capture
        self._capture = box
        try:
            yield box
        finally:
            self._capture = prev

    def to_device(self, x: Tensor) -> Tensor:
        return x.to(self.device, non_blocking=True)

    def forward(self, x: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """Model outputs; ``params`` (a possibly partial name → tensor dict) swaps tensors in."""
        x = self.to_device(x)
        self.cost.count(forward=len(x))
        if params is None:
            return self.model(x)
        return functional_call(self.model, params, (x,))

    # -- parameter subsets -----------------------------------------------------------------------
    def param_subset(self, which: str = "head") -> dict[str, Tensor]:
        """``all`` | ``trainable`` | ``last:<k>`` (the last k parameter tensors) | ``linears:<subset>``
        (the ``nn.Linear`` parameters of another subset: what the factored gradient path takes) |
        the task's own (``_subset``)."""
        named = dict(self.model.named_parameters())
        if which == "all":
            return named
        if which == "trainable":
            return {k: v for k, v in named.items() if v.requires_grad}
        if which.startswith("linears:"):  # the nn.Linear weights / biases (LoRA A/B included) of a subset
            inner = self.param_subset(which.split(":", 1)[1])
            owned = {id(t) for m in self.model.modules() if isinstance(m, nn.Linear)
                     for t in (m.weight, m.bias) if t is not None}
            return {k: v for k, v in inner.items() if id(v) in owned}
        if which.startswith("last:"):
            keys = list(named)[-int(which.split(":")[1]):]
            return {k: named[k] for k in keys}
        out = self._subset(which, named)
        if out is None:
            raise ConfigError(f"parameter subset {which!r} (choose from: "
                              f"{', '.join(('all', 'trainable', *self.SUBSETS, 'last:<k>', 'linears:<subset>'))})")
        return out

    def _subset(self, which: str, named: dict[str, Tensor]) -> dict[str, Tensor] | None:
        return None

    # -- per-example gradients (one engine: core/grads.py) --------------------------------------------
    def _prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.to_device(x), self.to_device(y)

    def prepare_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, y)`` on the device, trimmed as the task needs, for per-example ``vmap``."""
        return self._prepare(x, y)

    def _single_loss(self, params, x, y) -> Tensor:
        raise NotImplementedError

    def single_loss(self, params, x, y) -> Tensor:
        """The loss of one example (``params`` through ``functional_call``), for ``vmap(grad(...))``."""
        return self._single_loss(params, x, y)

    def scalar_output(self, params, x, y) -> Tensor:
        raise NotImplementedError

    def per_example_output(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B]`` batched ``scalar_output`` (differentiable), for the factored gradient path."""
        raise NotImplementedError

    def per_example_grads(self, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss",
                          chunk: int = 256) -> Tensor:
        """Flattened per-example gradients ``[B, P]`` of the loss (``fn=loss``) or ``scalar_output``
        (``fn=output``) w.r.t. ``param_subset(which)``: ``core.grads.per_example_grads``.

        The model is in eval mode (BatchNorm uses running statistics, dropout is off), so each
        example's gradient is its own; that is the usual choice in LESS / TRAK.  Models that
        ``vmap`` cannot trace (``model.vmap_ok = False``) fall back to an exact per-example loop.
        """
        return _grads.per_example_grads(self, x, y, which, fn, chunk)

    def grad_features(self, x: Tensor, y: Tensor, spec: "_grads.GradSpec | None" = None) -> Tensor:
        """``[N, d]`` (projected) per-example gradient features, streamed: ``core.grads.grad_features``."""
        return _grads.grad_features(self, x, y, spec)
