"""Your own images, in two layouts (each a ``dataset=`` config; every scenario works on them):

- ``image_folder`` (``dataset.root=DIR``): one sub-folder per class, its name the class name —
  ``DIR/<class>/<image>`` — with the test split either in ``DIR/train/<class>/…`` and
  ``DIR/test/<class>/…`` or, without those two, a fixed stratified ``test_fraction`` held out
  (seeded by ``split_seed``, the same for every run seed).  Classes are numbered in sorted
  folder-name order (torchvision's ``ImageFolder`` order).  PNG, JPEG, BMP, GIF, TIFF, WebP and
  PPM/PGM files are read (with Pillow); ``channels`` is ``auto`` (grey if every image is, else
  RGB), ``1`` or ``3``; every image must have one size, or ``size: [H, W]`` resizes them.
- ``arrays`` (``dataset.path=FILE.npz``): ``images`` ``[N, H, W]``, ``[N, H, W, C]`` or
  ``[N, C, H, W]`` (C = 1 or 3; uint8 is read as 0..255, floats as given) and ``labels`` ``[N]``
  (integers 0..K-1, or strings: class names, numbered in sorted order); optionally
  ``test_images`` / ``test_labels`` (else ``test_fraction`` is held out as above) and
  ``class_names``.

Pixels are standardised per channel with the train split's own statistics.  The dataset's own
index of a train example (``Source.train_index``: what ``selection.npz`` records and
``method=from_selection`` reads) is its position in the file list sorted by class folder, then
file name (``image_folder``), or its row of ``images`` (``arrays``).  Every bad path or layout is
a one-line ``DataError`` naming the file and what is allowed; the scenario is built before
launch, so it exits 2 with nothing written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from selbench.core.data import Split
from selbench.core.errors import ConfigError, DataError
from selbench.datasets.base import Source, channel_stats, register_source, stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _from_u8_or_float(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.float().div_(255.0) if x.dtype == np.uint8 else t.float()


def _finish(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, names: list[str],
            train_index: torch.Tensor | None) -> Source:
    mean, std = channel_stats(xtr)
    return Source(Split((xtr - mean) / std, ytr), Split((xte - mean) / std, yte), len(names), names, train_index)


def _hold_out(x: torch.Tensor, y: torch.Tensor, test_fraction: float, split_seed: int, where: str):
    if not 0 < float(test_fraction) < 1:
        raise ConfigError(f"dataset.test_fraction={test_fraction} must be in (0, 1) ({where} has no test split)")
    tr, te = stratified_split(y, float(test_fraction), int(split_seed))
    if len(te) == 0:
        raise DataError(f"{where}: test_fraction={test_fraction} holds out no image; add a test split or raise it")
    return x[tr], y[tr], x[te], y[te], tr


# --------------------------------------------------------------------------- image folder
def _class_files(d: Path) -> dict[str, list[Path]]:
    out = {}
    for c in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in c.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[c.name] = files
    return out


def _read_images(files: list[Path], channels: int, size) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    arrs, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if size:
                    im = im.resize((int(size[1]), int(size[0])), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}") from None
        if first is None:
            first = (f, a.shape)
        elif a.shape != first[1]:
            raise DataError(f"image {f} is {a.shape[1]}×{a.shape[0]} but {first[0]} is {first[1][1]}×{first[1][0]}; "
                            f"every image must have one size (or set dataset.size=[H,W] to resize)")
        arrs.append(a)
    x = np.stack(arrs)
    return x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)


def _channels(files: list[Path], channels) -> int:
    if str(channels) in ("1", "3"):
        return int(channels)
    if str(channels) != "auto":
        raise ConfigError(f"dataset.channels={channels!r} (choose from: auto, 1, 3)")
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode not in ("L", "1", "I;16", "I", "F"):
                    return 3
        except OSError as e:
            raise DataError(f"cannot read image {f}: {e}") from None
    return 1


@register_source("image_folder", needs_root=True)
def image_folder(root: str | None = None, channels="auto", size=None, test_fraction: float = 0.2,
                 split_seed: int = 0, **_) -> Source:
    if not root:
        raise DataError("dataset=image_folder needs dataset.root=<dir with one sub-folder of images per class>")
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"dataset.root={root!r} does not exist or is not a directory (image_folder wants DIR/<class>/<image>)")
    if size is not None and (len(size) != 2 or min(int(v) for v in size) < 1):
        raise ConfigError(f"dataset.size={list(size)} must be [height, width] in pixels, or null")
    split = (r / "train").is_dir() and (r / "test").is_dir()
    train = _class_files(r / "train" if split else r)
    if len(train) < 2:
        where = r / "train" if split else r
        raise DataError(f"{where} has {len(train)} class folder(s) with images ({', '.join(IMAGE_SUFFIXES)}); "
                        f"image_folder wants DIR/<class>/<image> with at least 2 classes")
    names = list(train)
    test = _class_files(r / "test") if split else {}
    unknown = sorted(set(test) - set(names))
    if unknown:
        raise DataError(f"{r / 'test'} has class folders {unknown} that {r / 'train'} does not")
    files = [f for c in names for f in train[c]]
    ch = _channels(files, channels)
    ytr = torch.tensor([i for i, c in enumerate(names) for _ in train[c]], dtype=torch.int64)
    xtr = _from_u8_or_float(_read_images(files, ch, size))
    if not split:
        xtr, ytr, xte, yte, idx = _hold_out(xtr, ytr, test_fraction, split_seed, str(r))
        return _finish(xtr, ytr, xte, yte, names, idx)
    test_files = [f for c in names for f in test.get(c, [])]
    if not test_files:
        raise DataError(f"{r / 'test'} has no images in class folders")
    xte = _from_u8_or_float(_read_images(test_files, ch, size))
    if xte.shape[1:] != xtr.shape[1:]:
        raise DataError(f"test images are {list(xte.shape[1:])} but train images {list(xtr.shape[1:])}; "
                        f"set dataset.size=[H,W] to resize both")
    yte = torch.tensor([i for i, c in enumerate(names) for _ in test.get(c, [])], dtype=torch.int64)
    return _finish(xtr, ytr, xte, yte, names, None)


# --------------------------------------------------------------------------- arrays file
def _images(a: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if a.dtype.kind not in "uif" or a.ndim not in (3, 4) or len(a) == 0:
        raise DataError(f"{path}: '{key}' is {a.dtype}{list(a.shape)}; expected numbers shaped [N, H, W], "
                        f"[N, H, W, C] or [N, C, H, W] with C = 1 or 3")
    if a.ndim == 3:
        a = a[:, None]
    elif a.shape[1] not in (1, 3):
        if a.shape[3] not in (1, 3):
            raise DataError(f"{path}: '{key}' is {list(a.shape)}; neither axis 1 nor axis 3 is a channel axis "
                            f"of size 1 or 3")
        a = a.transpose(0, 3, 1, 2)
    if a.dtype.kind in "ui" and a.dtype != np.uint8:
        raise DataError(f"{path}: '{key}' is {a.dtype}; integer images must be uint8 (0..255), else floats")
    x = _from_u8_or_float(a)
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: '{key}' holds NaN or infinite pixels")
    return x


def _labels(y: np.ndarray, key: str, n: int, path: Path, names: list[str] | None) -> tuple[torch.Tensor, list[str]]:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: '{key}' is {list(y.shape)}; expected one label per image ([{n}])")
    if y.dtype.kind in "US":
        names = names or sorted({str(v) for v in y})
        lut = {c: i for i, c in enumerate(names)}
        missing = sorted({str(v) for v in y} - set(lut))
        if missing:
            raise DataError(f"{path}: '{key}' has classes {missing[:5]} that the training labels do not")
        return torch.tensor([lut[str(v)] for v in y], dtype=torch.int64), names
    if y.dtype.kind not in "ui" or (len(y) and int(y.min()) < 0):
        raise DataError(f"{path}: '{key}' must be non-negative integers 0..K-1 or class-name strings "
                        f"(it is {y.dtype}{', min ' + str(y.min()) if y.dtype.kind in 'ifu' else ''})")
    return torch.from_numpy(y.astype(np.int64)), names or [str(i) for i in range(int(y.max()) + 1)]


@register_source("arrays")
def arrays(path: str | None = None, test_fraction: float = 0.2, split_seed: int = 0, **_) -> Source:
    if not path:
        raise DataError("dataset=arrays needs dataset.path=<file.npz with 'images' and 'labels'>")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"dataset.path={path!r} does not exist (arrays wants an .npz with 'images' and 'labels')")
    try:
        z = np.load(p, allow_pickle=False)
        data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {p} as an .npz of arrays: {str(e).splitlines()[0]}") from None
    missing = [k for k in ("images", "labels") if k not in data]
    if missing or ("test_images" in data) != ("test_labels" in data):
        raise DataError(f"{p} has arrays {sorted(data)}; it needs 'images' and 'labels' (and optionally both "
                        f"'test_images' and 'test_labels')")
    names = [str(c) for c in data["class_names"]] if "class_names" in data else None
    x = _images(data["images"], "images", p)
    y, names = _labels(data["labels"], "labels", len(x), p, names)
    k = len(names)
    absent = sorted(set(range(k)) - set(y.unique().tolist()))
    if k < 2 or absent or int(y.max()) >= k:
        raise DataError(f"{p}: 'labels' must cover at least 2 classes numbered 0..K-1 with every class present "
                        f"(classes {absent[:5] or [int(y.max())]} break that; {k} class names)")
    if "test_images" not in data:
        xtr, ytr, xte, yte, idx = _hold_out(x, y, test_fraction, split_seed, str(p))
        return _finish(xtr, ytr, xte, yte, names, idx)
    xte = _images(data["test_images"], "test_images", p)
    if xte.shape[1:] != x.shape[1:]:
        raise DataError(f"{p}: 'test_images' are {list(xte.shape[1:])} but 'images' {list(x.shape[1:])}")
    yte, _ = _labels(data["test_labels"], "test_labels", len(xte), p, names)
    if len(yte) and int(yte.max()) >= k:
        raise DataError(f"{p}: 'test_labels' has class {int(yte.max())}; the training labels have 0..{k - 1}")
    return _finish(x, y, xte, yte, names, None)
