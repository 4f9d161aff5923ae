"""Your own vision data: an image folder (a class per sub-folder) and an ``.npz`` of arrays, each
a ``dataset=`` config that every scenario runs on; bad paths and layouts are one line, exit 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose_cfg, selbench
from selbench.core.errors import DataError
from selbench.datasets.scenarios import build_scenario
from selbench.datasets.sources import load_source
from selbench.runners.run.job import run_job

pytestmark = pytest.mark.usefixtures("one_thread")

PER_CLASS, SIDE, CLASSES = 40, 8, ("cat", "dog", "fox")


def _pixels(n_per_class: int, seed: int, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, H, W, 3]`` (or ``[N, H, W]``) images, a class template plus noise, and labels."""
    rng = np.random.default_rng(seed)
    shape = (SIDE, SIDE, 3) if rgb else (SIDE, SIDE)
    templates = rng.integers(30, 226, (len(CLASSES), *shape))
    y = np.repeat(np.arange(len(CLASSES)), n_per_class)
    x = templates[y] + rng.integers(-30, 31, (len(y), *shape))
    return np.clip(x, 0, 255).astype(np.uint8), y


def write_folder(root, split: bool = False, rgb: bool = True):
    from PIL import Image

    parts = {"train": _pixels(PER_CLASS, 0, rgb), "test": _pixels(10, 1, rgb)} if split else {"": _pixels(PER_CLASS, 0, rgb)}
    for part, (x, y) in parts.items():
        for i, (img, c) in enumerate(zip(x, y)):
            d = root / part / CLASSES[c]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def arrays_file(tmp_path_factory):
    x, y = _pixels(PER_CLASS, 0)
    path = tmp_path_factory.mktemp("arrays") / "mine.npz"
    np.savez(path, images=x, labels=np.array(CLASSES)[y])  # class-name labels, channels last
    return path


#: every scenario family, sized for 40 images of each of 3 classes (ids are the sorted class names)
SCENARIOS = {
    "sym_noise": ["scenario=sym_noise", "scenario.pool_size=60", "scenario.target_per_class=4",
                  "scenario.val_per_class=4"],
    "asym_noise": ["scenario=asym_noise", "scenario.pool_size=60", "scenario.target_per_class=4",
                   "scenario.val_per_class=4"],
    "imbalance": ["scenario=imbalance", "scenario.classes=[0,2]", "scenario.imbalance.minority=[0]",
                  "scenario.imbalance.minority_fraction=0.1", "scenario.pool_size=20", "scenario.target_per_class=4",
                  "scenario.val_per_class=4", "budget.fraction=0.5"],
    "clean": ["scenario=clean", "scenario.target_per_class=4", "scenario.val_per_class=4"],
}
RUN = ["model=mlp", "model.hidden=32", "runner.steps=6", "runner.eval_every=3", "runner.batch_size=16",
       "runner.target_batch_size=8", "runner.device=cpu", "runner.threads=1", "progress=false", "scale=debug"]


def _layout(kind, folder, arrays_file) -> list[str]:
    return [f"dataset=image_folder", f"dataset.root={folder}"] if kind == "image_folder" else \
        [f"dataset=arrays", f"dataset.path={arrays_file}"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kind", ["image_folder", "arrays"])
def test_every_scenario_trains_on_your_own_images(tmp_path, folder, arrays_file, kind, scenario):
    rec = run_job(compose_cfg(_layout(kind, folder, arrays_file) + SCENARIOS[scenario] + RUN + ["method=random"],
                              tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    info = rec["scenario_info"]
    assert info["n_pool"] > 0 and info["n_val"] > 0 and rec["steps"] == 6
    if scenario in ("sym_noise", "asym_noise"):
        assert info["pool_clean_fraction"] < 1.0
    if scenario == "imbalance":
        assert 0 < info["pool_minority_fraction"] < 0.5


def test_the_folder_and_the_arrays_file_read_the_same_images(folder, arrays_file):
    """Both layouts hold the same pixels: the sources agree (class names in sorted folder order,
    the same held-out split), and each train example's dataset index is its row / sorted file."""
    a, b = load_source("image_folder", root=str(folder)), load_source("arrays", path=str(arrays_file))
    assert a.class_names == b.class_names == list(CLASSES) and a.num_classes == 3
    assert a.train.x.shape == (len(a.train), 3, SIDE, SIDE)
    assert torch.equal(a.train.y, b.train.y) and torch.allclose(a.train.x, b.train.x, atol=1e-5)
    assert torch.equal(a.train_index, b.train_index)
    x, y = _pixels(PER_CLASS, 0)
    assert torch.equal(torch.from_numpy(y)[a.train_index], a.train.y)
    # standardised with the train split's own per-channel statistics
    assert a.train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert len(a.test) == round(PER_CLASS * 0.2) * 3


def test_train_and_test_folders_and_grey_images(tmp_path):
    src = load_source("image_folder", root=str(write_folder(tmp_path / "split", split=True, rgb=False)))
    assert src.train.x.shape[1] == 1 and len(src.train) == 3 * PER_CLASS and len(src.test) == 30
    three = load_source("image_folder", root=str(tmp_path / "split"), channels=3, size=[6, 5])
    assert three.train.x.shape[1:] == (3, 6, 5)


def test_pool_index_maps_pool_positions_to_the_datasets_own_rows(arrays_file):
    """``Scenario.pool_index`` survives the class restriction and every draw: each pool example
    is the dataset row it names (its true label is that row's label)."""
    z = np.load(arrays_file)
    names = sorted(set(z["labels"].tolist()))
    labels = torch.tensor([names.index(v) for v in z["labels"].tolist()])
    sc = build_scenario({"name": "arrays", "path": str(arrays_file)},
                        {"classes": [2, 1], "pool_size": 40, "target_per_class": 4, "val_per_class": 4,
                         "noise": {"kind": "symmetric", "rate": 0.5}}, seed=3)
    kept = torch.tensor([2, 1])
    assert torch.equal(kept[sc.truth["true_label"]], labels[sc.pool_index])
    assert len(set(sc.pool_index.tolist())) == len(sc.pool)


@pytest.mark.parametrize("make,msg", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "0 class folder(s)"),
    (lambda p: ((p / "a").mkdir(parents=True), (p / "a" / "x.png").write_bytes(b"not a png"),
                (p / "b").mkdir(), (p / "b" / "y.png").write_bytes(b"nor this")), "cannot read image"),
])
def test_a_bad_image_folder_is_one_data_error(tmp_path, make, msg):
    make(tmp_path / "d")
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        load_source("image_folder", root=str(tmp_path / "d"))
    assert "\n" not in str(e.value)


def test_images_of_different_sizes_name_the_file_and_the_fix(tmp_path):
    from PIL import Image

    for c, side in (("a", 8), ("b", 9)):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / c / "0.png")
    with pytest.raises(DataError, match=r"b/0.png is 9×9 .*dataset.size"):
        load_source("image_folder", root=str(tmp_path))


def test_arrays_without_a_path_names_the_key_to_set():
    with pytest.raises(DataError, match="needs dataset.path="):
        load_source("arrays")


@pytest.mark.parametrize("arrays,msg", [
    ({"images": np.zeros((4, 8, 8), np.uint8)}, "needs 'images' and 'labels'"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0, 1, 0])}, "one label per image"),
    ({"images": np.zeros((4, 5, 8, 8), np.uint8), "labels": np.array([0, 1, 0, 1])}, "channel axis"),
    ({"images": np.zeros((4, 8, 8), np.int32), "labels": np.array([0, 1, 0, 1])}, "must be uint8"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0, 2, 0, 2])}, "every class present"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.array([0.5, 1, 0, 1])}, "non-negative integers"),
    ({"images": np.full((4, 8, 8), np.nan), "labels": np.array([0, 1, 0, 1])}, "NaN"),
])
def test_a_bad_arrays_file_is_one_data_error(tmp_path, arrays, msg):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=msg) as e:
        load_source("arrays", path=str(tmp_path / "bad.npz"))
    assert "\n" not in str(e.value) and "bad.npz" in str(e.value)


@pytest.mark.parametrize("args", [
    ["dataset=arrays", "dataset.path=/no/such/file.npz"],
    ["dataset=image_folder", "dataset.root=NOTADIR"],
])
def test_bad_own_data_paths_exit_2_with_one_line_and_write_nothing(tmp_path, args):
    (tmp_path / "NOTADIR").write_text("a file, not a folder")
    out = selbench(*[a.replace("NOTADIR", str(tmp_path / "NOTADIR")) for a in args], "method=erm",
                   f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and ("dataset" in lines[0]), out.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("record.json"))
