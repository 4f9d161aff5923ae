"""What every task adapter shares: the model, its device, forward-pass accounting,
the generic parameter subsets and the per-example gradient driver.

The contract methods are written against is ``core.protocols.TaskAdapter``; the
vision and language adapters implement it on top of this base.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError
from selbench.core.modes import eval_mode


class TaskAdapter:
    modality = ""
    has_class_labels = False
    #: subsets beyond all / last:<k> that this task offers (name → description, for the error message)
    SUBSETS: tuple[str, ...] = ()

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

    # -- parameter subsets -----------------------------------------------------------------------
    def param_subset(self, which: str = "head") -> dict[str, Tensor]:
        """``all`` | ``trainable`` | ``last:<k>`` (the last k parameter tensors) | the task's own (``_subset``)."""
        named = dict(self.model.named_parameters())
        if which == "all":
            return named
        if which == "trainable":
            return {k: v for k, v in named.items() if v.requires_grad}
        if which.startswith("last:"):
            keys = list(named)[-int(which.split(":")[1]):]
            return {k: named[k] for k in keys}
        out = self._subset(which, named)
        if out is None:
            raise ConfigError(f"parameter subset {which!r} (choose from: "
                              f"{', '.join(('all', 'trainable', *self.SUBSETS, 'last:<k>'))})")
        return out

    def _subset(self, which: str, named: dict[str, Tensor]) -> dict[str, Tensor] | None:
        return None

    # -- per-example gradients -------------------------------------------------------------------
    def _prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.to_device(x), self.to_device(y)

    def _single_loss(self, params, x, y) -> Tensor:
        raise NotImplementedError

    def scalar_output(self, params, x, y) -> Tensor:
        raise NotImplementedError

    def per_example_grads(self, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss",
                          chunk: int = 256) -> Tensor:
        """Flattened per-example gradients ``[B, P]`` of the loss (``fn=loss``) or ``scalar_output``
        (``fn=output``) w.r.t. ``param_subset(which)``.

        The model is in eval mode (BatchNorm uses running statistics, dropout is off), so each
        example's gradient is its own; that is the usual choice in LESS / TRAK.  Models that
        ``vmap`` cannot trace (``model.vmap_ok = False``) fall back to an exact per-example loop.
        """
        params = {k: v.detach() for k, v in self.param_subset(which).items()}
        f = self._single_loss if fn == "loss" else self.scalar_output
        with eval_mode(self.model):
            x, y = self._prepare(x, y)
            if getattr(self.model, "vmap_ok", True):
                out = vmap(grad(f), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
                flat = torch.cat([out[k].reshape(len(x), -1) for k in params], dim=1)
            else:
                rows = []
                for i in range(len(x)):
                    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                    g = torch.autograd.grad(f(p, x[i], y[i]), list(p.values()), allow_unused=True)
                    rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(v)).reshape(-1)
                                           for gi, v in zip(g, p.values())]))
                flat = torch.stack(rows) if rows else torch.zeros(0, sum(v.numel() for v in params.values()))
        self.cost.count(forward=len(x), backward=len(x))
        return flat
