"""How per-example gradients are taken (``core/grads.py``): the projection and the function
differentiated. Shared by the gradient selectors (``methods/gradients/``) and TRAK
(``methods/datamodels/trak.py``)."""
from __future__ import annotations

from enum import Enum


class Projection(str, Enum):
    factored = "factored"   # LoGra: nn.Linear layers only (params=linears:<subset>)
    dense = "dense"         # exact per-example gradients, blockwise seeded Gaussian projection
    none = "none"           # exact per-example gradients (small subsets only)


class GradFn(str, Enum):
    loss = "loss"
    output = "output"       # margin / LM log-odds (adapter.scalar_output)
