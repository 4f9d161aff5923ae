"""MNIST, CIFAR-10 and CIFAR-100 from the user's own copy (``dataset.root``), read in each
dataset's published on-disk format, in the folder layout torchvision's downloads leave:

- MNIST: the four IDX files (gzipped or not) in ``root/MNIST/raw/`` (or ``root/MNIST/``, or ``root/``);
- CIFAR-10: the pickled python batches ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` in
  ``root/cifar-10-batches-py/`` (or ``root/``);
- CIFAR-100: ``train``, ``test`` and ``meta`` in ``root/cifar-100-python/`` (or ``root/``).

Nothing is downloaded.  The files are read here rather than through ``torchvision.datasets``
so that a copy's contents, not its checksum, decide whether it loads (torchvision refuses any
file whose MD5 differs from the release's); the arrays are checked instead, and every
problem is a one-line ``DataError`` naming the file.  The batches are unpickled with only
numpy's array constructors allowed, so a pickle in a data folder cannot run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from selbench.core.data import Split
from selbench.core.errors import DataError
from selbench.datasets.base import Source, register_source, standardise
from selbench.datasets.idx import read_idx

STATS = {  # the usual per-channel train statistics
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _root(name: str, root: str | None) -> Path:
    if not root:
        raise DataError(f"dataset {name} needs dataset.root=<dir holding its files>; nothing is downloaded at run time")
    if not Path(root).is_dir():
        raise DataError(f"dataset.root={root!r} is not a directory (needed for {name})")
    return Path(root)


def _first_dir(candidates: list[Path], has: str, what: str, root: Path) -> Path:
    for d in candidates:
        if (d / has).exists() or (d / f"{has}.gz").exists():
            return d
    raise DataError(f"{what} not found under dataset.root={str(root)!r}: expected {has} in "
                    f"{' or '.join(str(c) for c in candidates)}")


def _source(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, name: str,
            classes: list[str]) -> Source:
    mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in STATS[name])
    to = (lambda x, y: Split(standardise(torch.from_numpy(np.require(x, requirements=["C", "W"])), mean, std),
                             torch.from_numpy(np.asarray(y, dtype=np.int64))))
    return Source(to(xtr, ytr), to(xte, yte), len(classes), classes)


@register_source("mnist", needs_root=True)
def mnist(root: str | None = None, **_) -> Source:
    r = _root("mnist", root)
    d = _first_dir([r / "MNIST" / "raw", r / "MNIST", r], "train-images-idx3-ubyte", "MNIST", r)
    arrays = {}
    for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        path = d / part if (d / part).exists() else d / f"{part}.gz"
        if not path.exists():
            raise DataError(f"MNIST file {d / part} is missing (from dataset.root={root!r})")
        arrays[part] = (read_idx(path), path)
    for split in ("train", "t10k"):
        (x, px), (y, py) = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{px} holds {x.shape} images and {py} {y.shape} labels; expected [N, H, W] and [N]")
        if len(y) and int(y.max()) > 9:
            raise DataError(f"{py} has label {int(y.max())}; MNIST labels are 0..9")
    (xtr, _), (ytr, _) = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    (xte, _), (yte, _) = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    return _source(xtr[:, None], ytr, xte[:, None], yte, "mnist", [str(i) for i in range(10)])


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; anything else is refused."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
               ("_codecs", "encode")}  # how a protocol-2 pickle written by Python 3 stores bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"CIFAR file {path} is missing")
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError) as e:
        raise DataError(f"cannot read {path} as a CIFAR python batch: {e}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR python batch (a {type(entry).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _batches(paths: list[Path], label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        entry = _unpickle(p)
        if "data" not in entry or label_key not in entry:
            raise DataError(f"{p} has no 'data' / '{label_key}' entries (keys: {sorted(entry)})")
        x, y = np.asarray(entry["data"]), np.asarray(entry[label_key])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise DataError(f"{p} holds data {x.dtype}{list(x.shape)} and {len(y)} labels; expected uint8 "
                            f"[N, 3072] (32×32 RGB, channel-major) and N labels")
        if len(y) and not (0 <= int(y.min()) and int(y.max()) < n_classes):
            raise DataError(f"{p} has labels in [{int(y.min())}, {int(y.max())}]; expected 0..{n_classes - 1}")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(name: str, root: str | None, folder: str, train: list[str], test: str, meta: str, label_key: str,
           names_key: str, n_classes: int) -> Source:
    r = _root(name, root)
    d = _first_dir([r / folder, r], meta, name.upper(), r)
    classes = [str(c) for c in _unpickle(d / meta).get(names_key, [])]
    if len(classes) != n_classes:
        raise DataError(f"{d / meta} lists {len(classes)} '{names_key}'; {name} has {n_classes}")
    xtr, ytr = _batches([d / b for b in train], label_key, n_classes)
    xte, yte = _batches([d / test], label_key, n_classes)
    return _source(xtr, ytr, xte, yte, name, classes)


@register_source("cifar10", needs_root=True)
def cifar10(root: str | None = None, **_) -> Source:
    return _cifar("cifar10", root, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                  "batches.meta", "labels", "label_names", 10)


@register_source("cifar100", needs_root=True)
def cifar100(root: str | None = None, **_) -> Source:
    return _cifar("cifar100", root, "cifar-100-python", ["train"], "test", "meta", "fine_labels",
                  "fine_label_names", 100)
