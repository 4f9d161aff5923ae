"""Task adapters: everything a method may know about the task, and nothing more.

Methods are written only against this interface, so one method object runs in the
vision runner and (with ``LanguageAdapter``) in the language runner:

- ``per_example_loss(x, y, params=None)`` → ``[B]`` losses (``params`` swaps in
  tensors through ``torch.func.functional_call`` for lookahead methods);
- ``embed(x)`` → ``[B, D]`` detached penultimate features;
- ``scalar_output(params, x, y)`` → one scalar per *single* example (a margin), for
  ``vmap(grad(...))`` in gradient / datamodel methods;
- ``param_subset(which)`` → the parameters that span "the gradient space";
- ``per_example_grads(x, y, which, fn)`` → ``[B, P]`` flattened per-example gradients;
- ``evaluate(split)`` → test metrics.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from selbench.datasets.data import Split
from selbench.runners.cost import CostTracker
from selbench.runners.errors import ConfigError


class TaskAdapter:
    """What every adapter shares: the model, its device, forward-pass accounting."""

    modality = ""

    def __init__(self, model: nn.Module, num_classes: int, cost: CostTracker, device: torch.device,
                 eval_batch_size: int):
        self.model, self.num_classes, self.cost, self.device = model, num_classes, cost, device
        self.eval_batch_size = eval_batch_size

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def to_device(self, x: Tensor) -> Tensor:
        return x.to(self.device, non_blocking=True)

    def forward(self, x: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """Model outputs; ``params`` (a possibly partial name → tensor dict) swaps tensors in."""
        x = self.to_device(x)
        self.cost.count(forward=len(x))
        if params is None:
            return self.model(x)
        return functional_call(self.model, params, (x,))


class VisionAdapter(TaskAdapter):
    modality = "vision"

    def __init__(self, model: nn.Module, num_classes: int, cost: CostTracker, device: torch.device,
                 eval_batch_size: int = 1000):
        super().__init__(model, num_classes, cost, device, eval_batch_size)

    def per_example_loss(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        return F.cross_entropy(self.forward(x, params), self.to_device(y), reduction="none")

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        x = self.to_device(x)
        self.cost.count(forward=len(x))
        return self.model.features(x)

    def param_subset(self, which: str = "head") -> dict[str, Tensor]:
        """``all`` | ``head`` (final linear layer) | ``last:<k>`` (the last k parameter tensors)."""
        named = dict(self.model.named_parameters())
        if which == "all":
            return named
        if which == "head":
            return {k: v for k, v in named.items() if k.startswith("head.")}
        if which.startswith("last:"):
            keys = list(named)[-int(which.split(":")[1]):]
            return {k: named[k] for k in keys}
        raise ConfigError(f"parameter subset {which!r} (choose from: all, head, last:<k>)")

    def scalar_output(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Margin ``logit_y − logsumexp_{j≠y} logit_j`` of one example (TRAK's classification output)."""
        logits = functional_call(self.model, params, (x.unsqueeze(0),))[0]
        correct = logits[y]
        others = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf"))
        return correct - torch.logsumexp(others, dim=-1)

    def _single_loss(self, params, x, y):
        return F.cross_entropy(functional_call(self.model, params, (x.unsqueeze(0),)), y.unsqueeze(0))

    def per_example_grads(self, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss",
                          chunk: int = 256) -> Tensor:
        """Flattened per-example gradients ``[B, P]`` of the loss (or margin) w.r.t. ``param_subset(which)``.

        The model is put in eval mode (BatchNorm uses running statistics) so each
        example's gradient is its own; that is the usual choice in LESS / TRAK.
        """
        params = {k: v.detach() for k, v in self.param_subset(which).items()}
        f = self._single_loss if fn == "loss" else self.scalar_output
        g = vmap(grad(f), in_dims=(None, 0, 0), chunk_size=chunk)
        was_training = self.model.training
        self.model.eval()
        try:
            x, y = self.to_device(x), self.to_device(y)
            out = g(params, x, y)
        finally:
            self.model.train(was_training)
        self.cost.count(forward=len(x), backward=len(x))
        return torch.cat([out[k].reshape(len(x), -1) for k in params], dim=1)

    @torch.no_grad()
    def predict_logits(self, x: Tensor) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return torch.cat([self.forward(x[i:i + self.eval_batch_size]).float().cpu()
                              for i in range(0, len(x), self.eval_batch_size)])
        finally:
            self.model.train(was_training)

    def evaluate(self, split: Split) -> dict:
        logits = self.predict_logits(split.x)
        return classification_metrics(logits, split.y, self.num_classes)


def classification_metrics(logits: Tensor, y: Tensor, num_classes: int) -> dict:
    pred = logits.argmax(1)
    per_class = []
    for c in range(num_classes):
        m = y == c
        per_class.append(float((pred[m] == c).float().mean()) if m.any() else float("nan"))
    present = [a for a in per_class if a == a]
    return {
        "accuracy": float((pred == y).float().mean()),
        "balanced_accuracy": sum(present) / max(len(present), 1),
        "loss": float(F.cross_entropy(logits, y)),
        "per_class_accuracy": per_class,
    }
