"""Scenario builders: corruption rates, ground truth, target-set protocol, errors."""
import pytest
import torch

from conftest import needs_fashion
from selbench.datasets.scenarios import build_scenario, corrupt_labels
from selbench.datasets.sources import load_source
from selbench.core.errors import ConfigError, DataError

DIGITS = {"name": "digits", "test_fraction": 0.3, "split_seed": 0}


def _sc(**kw):
    base = {"name": "t", "classes": None, "pool_size": 800, "target_per_class": 10, "imbalance": None, "noise": None}
    base.update(kw)
    return base


def test_symmetric_noise_flips_exact_fraction_to_other_classes():
    s = build_scenario(DIGITS, _sc(noise={"kind": "symmetric", "rate": 0.4}), seed=1)
    clean = s.truth["is_clean"]
    assert abs((~clean).float().mean().item() - 0.4) < 1 / 800
    assert torch.equal(clean, s.pool.y == s.truth["true_label"])
    # flipped labels spread over all other classes
    flipped_to = s.pool.y[~clean]
    assert len(torch.unique(flipped_to)) == 10


def test_asymmetric_noise_follows_map():
    y = torch.arange(10).repeat(100)
    amap = {9: 1, 2: 0}
    out = corrupt_labels(y, 10, {"kind": "asymmetric", "rate": 0.4}, amap, torch.Generator().manual_seed(0))
    changed = out != y
    assert set(y[changed].tolist()) <= {9, 2}
    assert torch.all(out[changed & (y == 9)] == 1) and torch.all(out[changed & (y == 2)] == 0)
    assert changed.sum().item() == round(0.4 * 200)


def test_target_is_clean_balanced_and_disjoint_from_pool():
    s = build_scenario(DIGITS, _sc(noise={"kind": "symmetric", "rate": 0.8}), seed=0)
    assert torch.bincount(s.target.y, minlength=10).tolist() == [10] * 10
    # disjoint: no target image appears in the pool
    pool_flat, tgt_flat = s.pool.x.flatten(1), s.target.x.flatten(1)
    assert not any(torch.any(torch.all(pool_flat == t, dim=1)) for t in tgt_flat[:30])


def test_imbalance_protocol_counts_and_relabelling():
    src = {"name": "mnist5k", "test_fraction": 0.3, "split_seed": 0}
    s = build_scenario(src, _sc(classes=[4, 9], pool_size=300, target_per_class=5,
                                imbalance={"minority": [4], "minority_fraction": 0.05}), seed=0)
    assert s.num_classes == 2 and len(s.pool) == 300
    assert s.truth["is_minority"].sum().item() == 15
    assert torch.all(s.pool.y[s.truth["is_minority"]] == 0)  # 4 -> class 0
    assert torch.all(s.pool.y[~s.truth["is_minority"]] == 1)
    assert set(s.test.y.tolist()) == {0, 1}


def test_same_seed_same_scenario_other_seed_differs():
    a = build_scenario(DIGITS, _sc(noise={"kind": "symmetric", "rate": 0.5}), seed=3)
    b = build_scenario(DIGITS, _sc(noise={"kind": "symmetric", "rate": 0.5}), seed=3)
    c = build_scenario(DIGITS, _sc(noise={"kind": "symmetric", "rate": 0.5}), seed=4)
    assert torch.equal(a.pool.y, b.pool.y) and torch.equal(a.pool.x, b.pool.x)
    assert not torch.equal(a.truth["is_clean"], c.truth["is_clean"])


@pytest.mark.parametrize("kw,msg", [
    ({"target_per_class": 1000}, "target_per_class=1000"),
    ({"noise": {"kind": "weird", "rate": 0.1}}, "noise.kind='weird'"),
    ({"noise": {"kind": "symmetric", "rate": 1.5}}, "noise.rate=1.5"),
    ({"classes": [3, 12]}, "classes has [12]"),
    ({"pool_size": 5000, "classes": [1, 2], "imbalance": {"minority": [1], "minority_fraction": 0.5}}, "needs"),
])
def test_bad_scenarios_raise_one_line_config_errors(kw, msg):
    with pytest.raises(ConfigError) as e:
        build_scenario(DIGITS, _sc(**kw), seed=0)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_missing_fashion_root_says_which_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_source("fashion_mnist", root=str(tmp_path))


def test_truncated_idx_file_is_reported(tmp_path):
    import gzip
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(tmp_path / f"{stem}.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(DataError, match="truncated"):
        load_source("fashion_mnist", root=str(tmp_path))


@needs_fashion
def test_fashion_mnist_loads_real_data():
    src = load_source("fashion_mnist")
    assert src.train.x.shape == (60000, 1, 28, 28) and src.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(src.test.y).tolist() == [1000] * 10
    assert abs(src.train.x.mean().item()) < 0.05  # standardised
