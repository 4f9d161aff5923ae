"""Checkpoints: everything needed to continue a run bit-for-bit on the same machine.

A checkpoint holds the step, model / optimiser / schedule state, the method's state
(weights, weight models, running averages), the samplers' permutations and every RNG
(torch, the run's generator, numpy, python), the learning curve so far and the cost
counted so far.  It is written atomically and loaded with ``weights_only=True``:
only tensors and plain containers, never pickled code.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from selbench.core.errors import DataError
from selbench.core.io import atomic_torch_save

CHECKPOINT = "checkpoint.pt"


def rng_state(generator: torch.Generator) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save(path: Path, state: dict) -> None:
    atomic_torch_save(path, state)


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one clear error
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"checkpoint {path} is corrupt or truncated ({first}); delete it to restart this run") from None
