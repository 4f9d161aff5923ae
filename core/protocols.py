"""The contracts methods are written against (structural types; nothing to inherit).

A method sees the task only through a :class:`TaskAdapter` and reports what it spent
through a :class:`Cost`: ``methods.base.RunContext`` types its ``adapter`` and ``cost`` with
them.  The runner's ``VisionAdapter`` / ``LanguageAdapter`` (on ``runners.tasks.base.AdapterBase``)
and ``core.cost.CostTracker`` satisfy them (``tests/test_architecture.py`` checks it); a test
double only has to have these members.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from selbench.core.data import Split


@runtime_checkable
class Cost(Protocol):
    """Counts examples through the model and times named phases."""

    def count(self, forward: int = 0, backward: int = 0, train: int = 0) -> None:
        """``forward``: examples pushed through the model; ``backward``: examples whose loss was back-propagated;
        ``train``: examples whose loss entered the real update of the evaluated model (equal compute)."""

    def phase(self, name: str) -> AbstractContextManager:
        """Wall time and peak memory of the block go to phase ``name``."""


@runtime_checkable
class TaskAdapter(Protocol):
    """Everything a method may know about the task (and nothing more: no test set, no ground truth)."""

    model: nn.Module
    num_classes: int            #: classes (vision) or vocabulary size (language)
    device: torch.device
    cost: Cost
    modality: str               #: "vision" | "language"
    has_class_labels: bool      #: examples carry one class label each (label-conditioned features are possible)

    @property
    def embed_dim(self) -> int: ...

    def per_example_loss(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """``[B]`` losses; ``params`` swaps tensors in through ``torch.func.functional_call``."""

    def embed(self, x: Tensor) -> Tensor:
        """``[B, D]`` detached penultimate features."""

    def param_subset(self, which: str = "head") -> dict[str, Tensor]:
        """Named parameters spanning "the gradient space": ``all``, ``head``, ``last:<k>`` and task-specific ones."""

    def scalar_output(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """One scalar for a *single* example (margin / log-odds), for ``vmap(grad(...))``."""

    def per_example_output(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B]`` batched, differentiable ``scalar_output`` (the factored gradient path backpropagates its sum)."""

    def single_loss(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """The loss of a *single* example, for ``vmap(grad(...))``."""

    def prepare_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, y)`` on the device and trimmed as the task needs, before ``vmap`` over examples."""

    def per_example_grads(self, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss") -> Tensor:
        """``[B, P]`` flattened per-example gradients of the loss (or ``scalar_output``) w.r.t. ``param_subset(which)``."""

    def grad_features(self, x: Tensor, y: Tensor, spec=None) -> Tensor:
        """``[N, d]`` per-example gradient features (``core.grads.GradSpec``: subset, fn, projection none |
        dense (blockwise seeded Gaussian) | factored (LoGra, nn.Linear layers), dim, seed), streamed in chunks.
        The one gradient engine is ``core.grads``; adapters delegate to it."""

    def evaluate(self, split: Split) -> dict:
        """Metrics of the current model on ``split``."""
