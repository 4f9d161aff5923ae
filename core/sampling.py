"""Batch sampling shared by the training loop and by methods that draw their own batches."""
from __future__ import annotations

import torch
from torch import Tensor

from selbench.core.errors import ConfigError


class CyclicSampler:
    """Draws batches by walking through fresh seeded permutations (epochs without replacement)."""

    def __init__(self, n: int, generator: torch.Generator):
        if n <= 0:
            raise ConfigError("cannot sample batches from an empty training set")
        self.n, self.g = n, generator
        self._perm, self._pos = torch.randperm(n, generator=generator), 0

    def state_dict(self) -> dict:
        # the generator too: a sampler may own a stream of its own (a selector's training batches)
        return {"perm": self._perm.clone(), "pos": self._pos, "generator": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])
        if "generator" in state:
            self.g.set_state(state["generator"])

    def next(self, k: int) -> Tensor:
        out = []
        while k > 0:
            if self._pos >= self.n:
                self._perm, self._pos = torch.randperm(self.n, generator=self.g), 0
            take = self._perm[self._pos:self._pos + k]
            out.append(take)
            self._pos += len(take)
            k -= len(take)
        return torch.cat(out)
