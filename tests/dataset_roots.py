"""Tiny dataset roots written in each dataset's own on-disk format, so that every preset that
needs ``dataset.root`` runs in the tests through the same reader a user's real copy goes
through (``datasets/roots.py``):

- MNIST: the four IDX files in ``root/MNIST/raw/`` (torchvision's layout; the test split gzipped);
- CIFAR-10: pickled python batches ``data_batch_1..5``, ``test_batch``, ``batches.meta`` in
  ``root/cifar-10-batches-py/``;
- CIFAR-100: ``train``, ``test``, ``meta`` in ``root/cifar-100-python/``.

Images are a class template plus noise (learnable, so no method meets a degenerate problem).
The per-class counts are the fewest that the presets' own scenarios need at ``scale=debug``:
``bads/denoise_cifar10`` keeps 1,000 clean targets + 20 val per class beside the pool, and
``bads/mnist_balance_paper`` draws a 600-example pool of 597 nines and 3 fours after 25 + 20 of each.
"""
from __future__ import annotations

import atexit
import gzip
import pickle
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from selbench.datasets.base import SOURCES

#: per-class train / test counts (a dict: class -> count, or one count for every class)
MNIST_TRAIN = {c: 10 for c in range(10)} | {4: 60, 9: 660}
MNIST_TEST = {c: 4 for c in range(10)} | {4: 30, 9: 30}
CIFAR10_TRAIN, CIFAR10_TEST = 1030, 20
CIFAR100_TRAIN, CIFAR100_TEST = 36, 4


def _images(counts: dict[int, int], shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, *shape]`` (class template + noise) and their labels, classes interleaved."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(40, 216, (max(counts) + 1, *shape), dtype=np.int16)
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in counts.items()])
    rng.shuffle(labels)
    x = templates[labels] + rng.integers(-40, 41, (len(labels), *shape), dtype=np.int16)
    return np.clip(x, 0, 255).astype(np.uint8), labels


def _idx_bytes(a: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (uint8), the rank, big-endian dims, the data."""
    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, train: dict[int, int] = MNIST_TRAIN, test: dict[int, int] = MNIST_TEST,
                side: int = 28) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, counts, seed, gz in (("train", train, 0, False), ("t10k", test, 1, True)):
        x, y = _images(counts, (side, side), seed)
        for name, a in ((f"{split}-images-idx3-ubyte", x), (f"{split}-labels-idx1-ubyte", y)):
            data = _idx_bytes(a)
            if gz:  # torchvision's download leaves both; a user's copy may hold either
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return root


def _batch(x: np.ndarray, y: np.ndarray, label_key: str) -> dict:
    # the published batches are Python-2 pickles of a dict with str keys and an [N, 3072] uint8 array
    return {"batch_label": "tiny", label_key: [int(v) for v in y], "data": x.reshape(len(x), -1),
            "filenames": [f"img_{i}.png" for i in range(len(x))]}


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class_train: int = CIFAR10_TRAIN, per_class_test: int = CIFAR10_TEST) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    x, y = _images({c: per_class_train for c in range(10)}, (3, 32, 32), 2)
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        _dump(_batch(x[part], y[part], "labels"), d / f"data_batch_{i}")
    xt, yt = _images({c: per_class_test for c in range(10)}, (3, 32, 32), 3)
    _dump(_batch(xt, yt, "labels"), d / "test_batch")
    _dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
           "num_cases_per_batch": len(y) // 5, "num_vis": 3072}, d / "batches.meta")
    return root


def write_cifar100(root: Path, per_class_train: int = CIFAR100_TRAIN, per_class_test: int = CIFAR100_TEST) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, per, seed in (("train", per_class_train, 4), ("test", per_class_test, 5)):
        x, y = _images({c: per for c in range(100)}, (3, 32, 32), seed)
        _dump(_batch(x, y, "fine_labels") | {"coarse_labels": [int(v) // 5 for v in y]}, d / name)
    _dump({"fine_label_names": [f"class_{i:02d}" for i in range(100)],
           "coarse_label_names": [f"super_{i:02d}" for i in range(20)]}, d / "meta")
    return root


WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10, "cifar100": write_cifar100}
_MADE: dict[str, Path] = {}


def tiny_root(name: str) -> Path:
    """A tiny root for dataset ``name`` (written once per test process, removed at exit)."""
    if name not in _MADE:
        base = Path(tempfile.mkdtemp(prefix=f"selbench-{name}-root-"))
        atexit.register(shutil.rmtree, base, True)
        _MADE[name] = WRITERS[name](base)
    return _MADE[name]


_DATASET = re.compile(r"override /dataset:\s*(\S+)")


def root_dataset(preset: Path) -> str | None:
    """The dataset an experiment preset overrides to, when that dataset exists only under ``dataset.root``."""
    m = _DATASET.search(preset.read_text())
    return m.group(1) if m and m.group(1) in SOURCES and getattr(SOURCES[m.group(1)], "needs_root", False) else None
