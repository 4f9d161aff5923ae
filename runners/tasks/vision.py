"""The vision task: image scenarios, the classifier models and ``VisionAdapter``.

``VisionAdapter`` implements ``core.protocols.TaskAdapter`` for classifiers:

- ``per_example_loss(x, y, params=None)`` → ``[B]`` cross-entropy;
- ``embed(x)`` → ``[B, D]`` detached penultimate features (``model.features``); inside
  ``capture_embedding()`` a ``per_example_loss`` forward leaves them (the input of ``model.head``)
  in the box as well;
- ``scalar_output(params, x, y)`` → the margin of one example (TRAK's classification output);
- ``param_subset(which)``: ``all`` | ``trainable`` | ``head`` (final linear layer) | ``last:<k>``;
- ``per_example_grads(x, y, which, fn)`` → ``[B, P]`` and ``grad_features(x, y, spec)`` → ``[B, d]``
  (the engine in ``core/grads.py``); ``per_example_output(x, y)`` → ``[B]`` batched margins;
- ``evaluate(split)`` → accuracy, balanced accuracy, loss, per-class accuracy.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError
from selbench.core.data import Split
from selbench.core.modes import eval_mode
from selbench.datasets.scenarios import build_scenario as _build_image_scenario
from selbench.runners.models.vision import build_model
from selbench.runners.tasks.base import AdapterBase
from selbench.runners.tasks.metrics import classification_metrics

MODALITY = "vision"


def check_config(cfg) -> None:
    """Cheap checks run before anything is built (``runners/run/validate.py``)."""
    from selbench.datasets.sources import SOURCES
    from selbench.runners.models.vision import MODELS

    MODELS.lookup(cfg.model.name)
    source = SOURCES.lookup(cfg.dataset.name)
    root = cfg.dataset.get("root")
    if not root and source.needs_root:
        raise ConfigError(f"dataset={cfg.dataset.name} needs dataset.root=<dir holding its files> "
                          f"(nothing is downloaded)")
    if root and not Path(root).exists():
        raise ConfigError(f"dataset.root={root!r} does not exist")


def build_scenario(cfg, seed: int):
    return _build_image_scenario(cfg.dataset, cfg.scenario, seed=seed,
                                 max_pool=cfg.scale.get("max_pool"), max_test=cfg.scale.get("max_test"))


def build_adapter(cfg, scenario, cost, device: torch.device) -> "VisionAdapter":
    model_cfg = dict(cfg.model)
    name = model_cfg.pop("name")
    model = build_model(name, tuple(scenario.pool.x.shape[1:]), scenario.num_classes, **model_cfg).to(device)
    return VisionAdapter(model, scenario.num_classes, cost, device, eval_batch_size=int(cfg.runner.eval_batch_size))


class VisionAdapter(AdapterBase):
    modality = "vision"
    has_class_labels = True
    SUBSETS = ("head",)

    def __init__(self, model: nn.Module, num_classes: int, cost: CostTracker, device: torch.device,
                 eval_batch_size: int = 1000):
        super().__init__(model, num_classes, cost, device, eval_batch_size)

    def per_example_loss(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        box, head = self._capture, getattr(self.model, "head", None)
        if box is None or params is not None or not isinstance(head, nn.Module):
            return F.cross_entropy(self.forward(x, params), self.to_device(y), reduction="none")
        hook = head.register_forward_pre_hook(lambda _, i: setattr(box, "value", i[0].detach()))
        try:  # the head's input is model.features(x): embed's value, from this forward
            logits = self.forward(x)
        finally:
            hook.remove()
        return F.cross_entropy(logits, self.to_device(y), reduction="none")

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        x = self.to_device(x)
        self.cost.count(forward=len(x))
        return self.model.features(x)

    def _subset(self, which, named):
        if which == "head":
            return {k: v for k, v in named.items() if k.startswith("head.")}
        return None

    def scalar_output(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Margin ``logit_y − logsumexp_{j≠y} logit_j`` of one example (TRAK's classification output)."""
        logits = functional_call(self.model, params, (x.unsqueeze(0),))[0]
        correct = logits.gather(0, y.reshape(1))[0]  # vmap-safe (no indexing by a traced value)
        hit = torch.arange(logits.shape[-1], device=logits.device) == y
        others = logits.masked_fill(hit, float("-inf"))
        return correct - torch.logsumexp(others, dim=-1)

    def per_example_output(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B]`` margins (batched ``scalar_output``)."""
        logits = self.forward(x)
        y = self.to_device(y)
        correct = logits.gather(1, y[:, None])[:, 0]
        others = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf"))
        return correct - torch.logsumexp(others, dim=-1)

    def _single_loss(self, params, x, y):
        return F.cross_entropy(functional_call(self.model, params, (x.unsqueeze(0),)), y.unsqueeze(0))

    @torch.no_grad()
    def predict_logits(self, x: Tensor) -> Tensor:
        with eval_mode(self.model):
            return torch.cat([self.forward(x[i:i + self.eval_batch_size]).float().cpu()
                              for i in range(0, len(x), self.eval_batch_size)])

    def evaluate(self, split: Split) -> dict:
        logits = self.predict_logits(split.x)
        return classification_metrics(logits, split.y, self.num_classes)
