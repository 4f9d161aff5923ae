"""In-memory data containers shared by every scenario, runner and method.

Data at these sizes (≤ 70k images, ≤ a few MB of tokens) lives in tensors; a
DataLoader with workers would only add start-up cost on 2 cores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Split:
    """One set of examples: inputs ``x`` and targets ``y`` indexed along dim 0.

    Vision: ``x`` is ``[N, C, H, W]`` float, ``y`` is ``[N]`` long class labels.
    Language: ``x`` is ``[N, T]`` token ids, ``y`` is ``[N, T]`` next-token targets with
    ``-100`` on positions that do not count towards the loss.
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"inputs and targets differ in length: {len(self.x)} vs {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: Tensor) -> "Split":
        return Split(self.x[idx], self.y[idx])

    @staticmethod
    def concat(*parts: "Split") -> "Split":
        return Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))


@dataclass
class Scenario:
    """A selection problem: the pool to choose from, a small clean target set, a test set,
    and optionally a clean validation set.

    ``val`` is disjoint from ``target``, ``pool`` and ``test`` and never touched by the
    scenario's corruptions.  It is the split for tuning (sweep objectives, method
    defaults); the test set is only ever reported, never used for tuning.  ``None`` when
    the scenario asks for no validation split (``val_per_class: 0`` / ``val_fraction: 0``).

    ``truth`` holds per-pool-example ground truth (``is_clean``, ``true_label``,
    ``is_minority``, ``domain`` …).  Methods never receive it; only the runner's
    selection-quality scoring and the analysis read it.
    """

    name: str
    pool: Split
    target: Split
    test: Split
    num_classes: int
    #: clean validation split (disjoint from target / pool / test); None = none requested
    val: Split | None = None
    modality: str = "vision"
    class_names: list[str] = field(default_factory=list)
    truth: dict[str, Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: text scenarios: the tokenizer the adapter needs (pad / eos ids); not part of the record
    tokenizer: Any = None
    #: image scenarios: the dataset's own index of each pool example (its row in the source's
    #: files), so a selection can be saved and read in the dataset's terms; None = not known
    pool_index: Tensor | None = None

    def describe(self) -> dict:
        d = {
            "name": self.name,
            "modality": self.modality,
            "n_pool": len(self.pool),
            "n_target": len(self.target),
            "n_test": len(self.test),
            "n_val": len(self.val) if self.val is not None else 0,
            "num_classes": self.num_classes,
        }
        if "is_clean" in self.truth:
            d["pool_clean_fraction"] = float(self.truth["is_clean"].float().mean())
        if "is_minority" in self.truth:
            d["pool_minority_fraction"] = float(self.truth["is_minority"].float().mean())
        d.update(self.info)
        return d
