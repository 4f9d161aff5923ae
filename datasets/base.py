"""What every image data source returns (``Source``), the registry the sources join, and the
two steps they share: standardising pixels and holding out a fixed test split."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from selbench.core.data import Split
from selbench.core.registry import Registry


@dataclass
class Source:
    train: Split
    test: Split
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    #: the dataset's own index of each train example (its row in the files the user has), when
    #: the train split is not the file's rows in order (a held-out test split); None = 0..N-1
    train_index: torch.Tensor | None = None

    def dataset_index(self) -> torch.Tensor:
        return self.train_index if self.train_index is not None else torch.arange(len(self.train))


SOURCES = Registry("dataset")


def register_source(name: str, needs_root: bool = False):
    """``needs_root``: the data exists only where the user points ``dataset.root``."""
    return SOURCES.register(name, needs_root=needs_root)


def load_source(name: str, **kwargs) -> Source:
    return SOURCES.lookup(name)(**kwargs)


def standardise(x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Scale uint8 images to [0,1] and standardise with the train statistics."""
    x = x.float().div_(255.0)
    return (x - mean) / std


def channel_stats(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``[N, C, H, W]`` images in [0, 1] (a flat channel gets std 1)."""
    mean = x01.mean(dim=(0, 2, 3), keepdim=True)
    std = x01.std(dim=(0, 2, 3), keepdim=True)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int):
    """A fixed per-class hold-out (seeded by ``split_seed``, not the run seed, so every run
    sees the same test set): (train indices, test indices), each sorted."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values
