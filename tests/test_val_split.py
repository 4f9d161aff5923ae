"""The validation split: clean, disjoint from target / pool / test, class balanced (vision),
held-out documents (text), deterministic.  Test is for reporting only; val is for tuning."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY, compose_cfg
from selbench.core.errors import ConfigError
from selbench.datasets.scenarios import build_scenario
from selbench.datasets.sources import load_source
from selbench.datasets.text.examples import TextSplit
from selbench.datasets.text.records import TextRecord
from selbench.datasets.text.splits import split_groups


# --------------------------------------------------------------------------- vision
def _vision(*overrides, seed=0):
    from selbench.runners.tasks.vision import build_scenario as build

    return build(compose_cfg(TINY + list(overrides)), seed)


def _rows(split) -> list[bytes]:
    return [r.numpy().tobytes() for r in split.x.flatten(1)]


@pytest.fixture(scope="module")
def digits_rows():
    """Pixel row -> original label, for digits' train and test splits (all 1,797 images are distinct)."""
    src = load_source("digits", test_fraction=0.3, split_seed=0)
    train, test = _rows(src.train), _rows(src.test)
    assert len(set(train) | set(test)) == len(train) + len(test)
    return dict(zip(train, src.train.y.tolist())), dict(zip(test, src.test.y.tolist()))


@pytest.mark.parametrize("classes", [None, [8, 3, 5]])
def test_vision_val_is_clean_balanced_and_disjoint_from_target_pool_test(digits_rows, classes):
    train_label, test_label = digits_rows
    extra = [f"scenario.classes=[{','.join(map(str, classes))}]"] if classes else []
    s = _vision("scenario.val_per_class=20", "scenario.pool_size=250", "scenario.noise.rate=0.8", *extra)
    k = len(classes) if classes else 10
    relabel = {c: i for i, c in enumerate(classes or range(10))}
    val = _rows(s.val)
    assert len(s.val) == 20 * k and len(set(val)) == len(val)
    assert s.describe()["n_val"] == 20 * k
    assert torch.bincount(s.val.y, minlength=k).tolist() == [20] * k  # class balanced
    # disjoint from every other split, and drawn from the train split (never from test)
    assert not set(val) & set(_rows(s.pool))
    assert not set(val) & set(_rows(s.target))
    assert not set(val) & set(_rows(s.test))
    assert all(r in train_label and r not in test_label for r in val)
    # clean: every val label is its image's real label (in the scenario's relabelled ids),
    # even though 80% of the pool's labels are flipped
    assert s.val.y.tolist() == [relabel[train_label[r]] for r in val]
    assert float(s.truth["is_clean"].float().mean()) == pytest.approx(0.2)


def test_vision_val_is_deterministic_per_seed_and_leaves_the_target_alone():
    a, b, c = _vision(seed=3), _vision(seed=3), _vision(seed=4)
    assert a.val is not None and len(a.val) == 200  # conf/scenario/sym_noise.yaml: val_per_class=20
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.val.x, c.val.x)
    # val is taken right after the target from the same per-class shuffle: the target is unchanged
    none = _vision("scenario.val_per_class=0", seed=3)
    assert none.val is None and none.describe()["n_val"] == 0
    assert torch.equal(none.target.x, a.target.x)


def test_vision_val_too_large_is_a_one_line_config_error():
    sc = {"name": "t", "classes": [4, 9], "pool_size": 50, "target_per_class": 60, "val_per_class": 70,
          "imbalance": None, "noise": None}
    with pytest.raises(ConfigError) as e:
        build_scenario({"name": "digits"}, sc, seed=0)
    msg = str(e.value)
    assert "val_per_class=70" in msg and "class 4" in msg and "\n" not in msg  # original class id
    with pytest.raises(ConfigError, match="val_per_class=-1"):
        build_scenario({"name": "digits"}, {**sc, "val_per_class": -1}, seed=0)


# --------------------------------------------------------------------------- text
TEXT = ["runner=language", "dataset=shakespeare", "scenario=domain_mixture", "dataset.genres=[roman,problems]",
        "scenario.target_domain=roman", "scenario.pool_size=null", "scenario.target_size=8",
        "scenario.test_size=null", "scenario.val_size=null", "scenario.seq_len=32", "model.context=32",
        "model.tokenizer.max_vocab=null"]  # raw GPT-2 ids: no <unk> collisions, the same across seeds


def _text(*overrides, seed=0):
    from selbench.runners.tasks import language

    return language.build_scenario(compose_cfg(TEXT + list(overrides)), seed)


def _token_rows(split) -> set[tuple]:
    return {tuple(r.tolist()) for r in split.x}


@pytest.fixture(scope="module")
def text_scenario():
    return _text()


def test_text_val_is_held_out_documents_disjoint_from_pool_target_test(text_scenario):
    s = text_scenario
    assert isinstance(s.val, TextSplit) and isinstance(s.test, TextSplit)
    roman = s.info["domains"].index("roman")
    assert len(s.val) > 0 and (s.val.domain == roman).all()
    assert s.val.x.shape[1] == s.test.x.shape[1] and s.val.y.shape == s.val.x.shape
    assert s.describe()["n_val"] == len(s.val)
    # pool = every training chunk, test = every chunk of the test documents: a val chunk
    # drawn from either would show up here
    val = _token_rows(s.val)
    pool, target, test = _token_rows(s.pool), _token_rows(s.target), _token_rows(s.test)
    assert len(pool) > 0.95 * len(s.pool)  # rows are (nearly) unique: an overlap would be no accident
    assert not val & pool and not val & target and not val & test


def test_text_val_is_deterministic_and_leaves_the_test_documents_alone(text_scenario):
    a = text_scenario
    b = _text(seed=1)  # another run seed: val (like test) is fixed by split_seed
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.y, b.val.y)
    c = _text("scenario.split_seed=1")
    assert _token_rows(c.val) != _token_rows(a.val)
    none = _text("scenario.val_fraction=0")
    assert none.val is None and none.describe()["n_val"] == 0
    assert torch.equal(none.test.x, a.test.x)  # val documents come beside the test ones, not out of them


def test_split_groups_val_is_disjoint_and_keeps_a_training_document():
    recs = [TextRecord(f"t{d}{g}", d, f"{d}/{g}") for d in "ab" for g in range(10)] + [TextRecord("c", "c", "c/0")]
    held, val = split_groups(recs, 0.2, seed=0, val_fraction=0.3)
    assert not held & val
    for d in "ab":
        assert sum(g.startswith(d) for g in held) == 2 and sum(g.startswith(d) for g in val) == 3
    assert "c/0" not in held | val  # a one-document domain keeps its document for training
    assert split_groups(recs, 0.2, seed=0)[0] == held
    with pytest.raises(ConfigError, match="val_fraction=0.9"):
        split_groups(recs, 0.2, seed=0, val_fraction=0.9)
