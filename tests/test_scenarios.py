"""Scenario builders: corruption rates, ground truth, target-set protocol, errors."""
import pytest
import torch

from conftest import TINY, compose_cfg, needs_fashion
from selbench.datasets.scenarios import build_scenario, corrupt_labels, relabel_asym_map
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


# --------------------------------------------------------------------------- corruptions x classes
DIGITS_ASYM = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}  # conf/dataset/digits.yaml (original ids)


def _vision(*overrides, seed=0):
    """The real composed config (conf/dataset/digits.yaml's asym_map included), built as the runner does."""
    from selbench.runners.tasks.vision import build_scenario as build

    return build(compose_cfg(TINY + list(overrides)), seed)


def _orig_label_of_rows():
    """Pixel row -> original digit label of sklearn digits' train split (its 1,797 images are all distinct)."""
    src = load_source("digits", **{k: v for k, v in DIGITS.items() if k != "name"})
    rows = [r.numpy().tobytes() for r in src.train.x.flatten(1)]
    assert len(set(rows)) == len(rows)
    return dict(zip(rows, src.train.y.tolist()))


def _check_classes_and_truth(s, classes):
    """Labels in range, true_label = the real (relabelled) label of each pool image, is_clean = (y == true)."""
    k = len(classes)
    relabel = {c: i for i, c in enumerate(classes)}
    assert s.num_classes == k
    for split in (s.pool, s.target, s.test, s.val):
        assert split.y.min() >= 0 and split.y.max() < k
    orig = _orig_label_of_rows()
    real = torch.tensor([relabel[orig[r.numpy().tobytes()]] for r in s.pool.x.flatten(1)])
    assert torch.equal(s.truth["true_label"], real)
    assert torch.equal(s.truth["is_clean"], s.pool.y == real)
    assert set(s.test.y.tolist()) == set(range(k))


def test_symmetric_noise_composes_with_classes():
    classes = [8, 3, 5]
    s = _vision("scenario.classes=[8,3,5]", "scenario.pool_size=240", "scenario.noise.rate=0.25")
    _check_classes_and_truth(s, classes)
    assert int((~s.truth["is_clean"]).sum()) == round(0.25 * 240)
    assert set(s.pool.y[~s.truth["is_clean"]].tolist()) == {0, 1, 2}  # flips spread over the kept classes only


def test_asymmetric_noise_composes_with_classes_and_drops_pairs_into_dropped_classes():
    # kept 2, 5, 6, 7 -> 0, 1, 2, 3: pairs 2->7, 5->6, 6->5 survive; 7->1 flips into a dropped class, so it is dropped
    classes = [2, 5, 6, 7]
    relabel = {c: i for i, c in enumerate(classes)}
    s = _vision("scenario=asym_noise", "scenario.classes=[2,5,6,7]", "scenario.pool_size=300",
                "scenario.noise.rate=0.4")
    _check_classes_and_truth(s, classes)
    true, y = s.truth["true_label"], s.pool.y
    expect = {relabel[a]: relabel[b] for a, b in {2: 7, 5: 6, 6: 5}.items()}
    eligible = torch.isin(true, torch.tensor(list(expect)))
    flipped = ~s.truth["is_clean"]
    assert int(flipped.sum()) == round(0.4 * int(eligible.sum())) > 0
    assert not (flipped & ~eligible).any()  # class 7 (-> 3) is never flipped
    assert all(int(y[i]) == expect[int(true[i])] for i in flipped.nonzero().flatten())
    assert s.info["asym_pairs"] == [[2, 7], [5, 6], [6, 5]]
    assert relabel_asym_map(DIGITS_ASYM, relabel, 10) == expect


def test_asymmetric_noise_with_no_surviving_pair_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        _vision("scenario=asym_noise", "scenario.classes=[4,9]", "scenario.pool_size=100")
    assert "scenario.classes=[4, 9]" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("classes", [[4, 9], [9, 4]])
def test_imbalance_composes_with_classes_in_original_ids(classes):
    s = _vision("scenario=imbalance", f"scenario.classes=[{classes[0]},{classes[1]}]", "scenario.pool_size=100",
                "scenario.imbalance.minority_fraction=0.1")
    _check_classes_and_truth(s, classes)
    four = classes.index(4)  # minority: [4] names the digit 4, whatever position it has in `classes`
    m = s.truth["is_minority"]
    assert int(m.sum()) == 10
    assert torch.equal(m, s.truth["true_label"] == four)
    assert s.truth["is_clean"].all()


def test_noise_and_imbalance_compose_with_classes():
    classes = [9, 3, 4]
    s = _vision("scenario=imbalance", "scenario.classes=[9,3,4]", "scenario.pool_size=150",
                "scenario.imbalance.minority_fraction=0.1", "scenario.noise={kind:symmetric,rate:0.3}")
    _check_classes_and_truth(s, classes)
    m = s.truth["is_minority"]
    assert int(m.sum()) == 15 and torch.equal(m, s.truth["true_label"] == 2)  # digit 4 is scenario class 2
    assert int((~s.truth["is_clean"]).sum()) == round(0.3 * 150)


@pytest.mark.parametrize("kw,msg", [
    ({"classes": [4, 9], "imbalance": {"minority": [3], "minority_fraction": 0.1}}, "minority=[3] not among"),
    ({"classes": None, "imbalance": {"minority": [12], "minority_fraction": 0.1}}, "minority has [12]"),
    ({"classes": [4, 4]}, "more than once"),
])
def test_class_ids_out_of_the_restriction_are_config_errors(kw, msg):
    with pytest.raises(ConfigError) as e:
        build_scenario(DIGITS, _sc(pool_size=100, **kw), seed=0)
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
