"""Colour image sources that install offline (no colour classification set ships in any
package; docs/methods/autopalette.md says what each can and cannot show).

| dataset | what | classes |
|---|---|---|
| ``photo_patches`` | 32×32 RGB patches of scikit-learn's two sample photos (``china.jpg``, ``flower.jpg``, real 8-bit JPEG pixels); train patches from the top 70% of each region, test patches from the bottom 30% (no shared pixels) | 8 = photo × image quadrant |
| ``colour_fashion`` | Fashion-MNIST recoloured: item intensity ``v`` blends a foreground colour over a random dark background, ``rgb = v·fg + (1 − v)·bg``, stored as 8-bit; the foreground hue is the class's hue (``c/10`` + N(0, ``hue_jitter``)) with probability ``class_hue_prob``, else uniform random; saturation U(0.5, 1); background hue uniform, saturation U(0, 0.5), value U(0, 0.3) | Fashion-MNIST's 10 |

Both are fixed datasets (derivation seeded by ``colour_seed``, not the run seed) and are
standardised per channel with their train statistics.  They join ``datasets.base.SOURCES``
when ``datasets.sources`` imports this module.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from selbench.core.data import Split
from selbench.core.errors import DataError
from selbench.datasets.base import Source, register_source
from selbench.datasets.idx import read_idx


def _standardised(train_u8: np.ndarray, test_u8: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    tr = torch.from_numpy(train_u8).float().div_(255.0)
    te = torch.from_numpy(test_u8).float().div_(255.0)
    mean = tr.mean((0, 2, 3), keepdim=True)
    std = tr.std((0, 2, 3), keepdim=True).clamp_min(1e-3)
    return (tr - mean) / std, (te - mean) / std


@register_source("photo_patches")
def photo_patches(patch: int = 32, stride: int = 8, test_rows: float = 0.3, **_) -> Source:
    """8 classes: (photo, quadrant) of scikit-learn's ``load_sample_images``."""
    xtr, ytr, xte, yte, names = _patches(int(patch), int(stride), float(test_rows))
    tr, te = _standardised(xtr, xte)
    return Source(Split(tr, torch.from_numpy(ytr)), Split(te, torch.from_numpy(yte)), len(names), list(names))


@functools.lru_cache(maxsize=2)  # decoding the JPEGs takes seconds; a sweep in one process reads them once
def _patches(patch: int, stride: int, test_rows: float):
    try:
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
    except Exception as e:  # noqa: BLE001 - PIL missing, files missing: one line
        raise DataError(f"photo_patches needs scikit-learn's sample images (and Pillow): {e}") from None
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    names = []
    for img, fname in zip(images.images, images.filenames):
        stem = Path(fname).stem
        h, w, _ = img.shape
        for qi, (r0, c0) in enumerate([(0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2)]):
            label = len(names)
            names.append(f"{stem}-q{qi}")
            region = img[r0:r0 + h // 2, c0:c0 + w // 2]
            cut = int(round(region.shape[0] * (1 - test_rows)))
            for part, rows in (("train", region[:cut]), ("test", region[cut:])):
                for r in range(0, rows.shape[0] - patch + 1, stride):
                    for c in range(0, rows.shape[1] - patch + 1, stride):
                        xs[part].append(rows[r:r + patch, c:c + patch].transpose(2, 0, 1))
                        ys[part].append(label)
    return (np.stack(xs["train"]), np.array(ys["train"], dtype=np.int64), np.stack(xs["test"]),
            np.array(ys["test"], dtype=np.int64), tuple(names))


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _idx(root: Path, stem: str) -> np.ndarray:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return read_idx(root / name)
    raise DataError(f"Fashion-MNIST not found ({root / stem}.gz missing): `apt-get install dataset-fashion-mnist` "
                    f"or dataset.root=<dir with the IDX files>")


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB, all in [0, 1]; returns ``[..., 3]``."""
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        out[m] = np.stack([r[m], g[m], b[m]], -1)
    return out


def recolour(grey: np.ndarray, labels: np.ndarray, rng: np.random.Generator, class_hue_prob: float,
             hue_jitter: float, num_classes: int = 10) -> np.ndarray:
    """``grey`` ``[N, H, W]`` uint8 → ``[N, 3, H, W]`` uint8 (the derivation in the module docstring)."""
    n = len(grey)
    class_hue = labels / num_classes + rng.normal(0, hue_jitter, n)
    hue = np.where(rng.random(n) < class_hue_prob, class_hue, rng.random(n))
    fg = hsv_to_rgb(hue, rng.uniform(0.5, 1.0, n), np.ones(n))
    bg = hsv_to_rgb(rng.random(n), rng.uniform(0, 0.5, n), rng.uniform(0, 0.3, n))
    v = grey.astype(np.float64)[:, None] / 255.0
    rgb = v * fg[:, :, None, None] + (1 - v) * bg[:, :, None, None]
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


@register_source("colour_fashion")
def colour_fashion(root: str | None = None, train_size: int = 10000, test_size: int = 2000,
                   class_hue_prob: float = 0.7, hue_jitter: float = 0.03, colour_seed: int = 0, **_) -> Source:
    """Fashion-MNIST with class-dependent and random hues (a fixed subset: 3×28×28 floats are 12× the grey set)."""
    (xtr, ytr), (xte, yte) = _colour_fashion(str(root or "/usr/share/datasets/fashion-mnist"), int(train_size),
                                             int(test_size), float(class_hue_prob), float(hue_jitter), int(colour_seed))
    tr, te = _standardised(xtr, xte)
    return Source(Split(tr, torch.from_numpy(ytr)), Split(te, torch.from_numpy(yte)), 10, FASHION_CLASSES)


@functools.lru_cache(maxsize=2)
def _colour_fashion(root: str, train_size: int, test_size: int, class_hue_prob: float, hue_jitter: float,
                    colour_seed: int):
    root_p = Path(root)
    rng = np.random.default_rng(colour_seed)
    parts = []
    for img, lab, size in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte", train_size),
                           ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test_size)):
        x, y = _idx(root_p, img), _idx(root_p, lab).astype(np.int64)
        keep = np.sort(rng.permutation(len(y))[:size]) if size and size < len(y) else np.arange(len(y))
        parts.append((recolour(x[keep], y[keep], rng, class_hue_prob, hue_jitter), y[keep]))
    return tuple(parts)
