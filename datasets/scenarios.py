"""Scenario builders: turn a data source into pool / target / val / test plus ground truth.

A scenario config reads like the experiment (see ``conf/scenario/*.yaml``)::

    classes: [4, 9]             # keep these classes, relabelled 0..k-1 (null = all)
    pool_size: 5000             # pool examples drawn from the train split
    target_per_class: 25        # small clean target ("meta") set, disjoint from the pool
    val_per_class: 20           # clean validation set, disjoint from target, pool and test
    imbalance: {minority: [4], minority_fraction: 0.005}
    noise: {kind: symmetric, rate: 0.5}

**Class ids are original dataset ids, everywhere in the config.**  ``classes``,
``imbalance.minority`` and the dataset's ``asym_map`` (``conf/dataset/*.yaml``) all name
classes as the dataset numbers them (MNIST's digit 4 is ``4`` whatever ``classes`` says).
Restricting to ``classes`` relabels them ``0..k-1`` in the order listed (``[4, 9]``: 4 → 0,
9 → 1); the builders translate ``minority`` and ``asym_map`` into those ids themselves.
Under a restriction, an ``asym_map`` pair survives only if both its source and its
destination class are kept (a pair that would flip into a dropped class is dropped, not
redirected); if no pair survives, that is a one-line ``ConfigError``.  Without an
``asym_map`` (null), asymmetric noise flips each kept class to the next kept class
(``c → c+1 mod k`` in the relabelled ids).  ``imbalance.minority`` must name kept classes.

Corruptions compose: imbalance shapes the pool's class mix, then label noise flips
pool labels.  The target set is always clean and class-balanced (the BADS / MW-Net
protocol); the test set is the source's test split restricted to ``classes``.

The validation set (``Scenario.val``) is ``val_per_class`` examples of every kept class,
drawn with clean labels from the *train* split right after the target set (the same
per-class shuffle: positions ``[target_per_class, target_per_class + val_per_class)``), so it
is disjoint from target and pool and never touches the test split.  ``val_per_class: 0``
(or absent) gives ``val=None``.  Like target and pool it depends on the run seed.
**The test set is never used for tuning**: objectives, sweeps and method defaults read
``val``; ``test`` is only reported.

``Scenario.pool_index`` maps each pool position back to the dataset's own index of that
example (``Source.train_index``: its row in the user's files), through the class restriction
and every draw; the runner writes it to ``selection.npz`` and ``method=from_selection`` reads
selections made in those indices.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from selbench.core.data import Scenario, Split
from selbench.datasets.base import Source
from selbench.datasets.sources import load_source
from selbench.core.errors import ConfigError


def build_scenario(dataset_cfg: Mapping[str, Any], scenario_cfg: Mapping[str, Any], seed: int,
                   max_pool: int | None = None, max_test: int | None = None) -> Scenario:
    ds = dict(dataset_cfg)
    sc = dict(scenario_cfg)
    source = load_source(ds.pop("name"), **{k: v for k, v in ds.items() if k != "asym_map"})
    g = torch.Generator().manual_seed(int(seed))

    n_orig = source.num_classes
    classes = _check_classes(sc.get("classes"), n_orig)
    kept = classes if classes else list(range(n_orig))
    relabel = {c: i for i, c in enumerate(kept)}  # original id -> scenario id
    source, index = _restrict_classes(source, classes)
    k = source.num_classes

    noise = sc.get("noise")
    noisy = bool(noise) and float(noise.get("rate", 0)) > 0
    asym_map = None
    if noisy and str(noise.get("kind", "symmetric")) == "asymmetric" and dataset_cfg.get("asym_map") is not None:
        asym_map = relabel_asym_map(dataset_cfg.get("asym_map"), relabel, n_orig)

    per_class = _count(sc, "target_per_class")
    val_per_class = _count(sc, "val_per_class")
    target_idx, val_idx, rest_idx = _take_per_class(source.train.y, per_class, g, val_per_class, kept)
    pool_size = sc.get("pool_size")
    pool_size = len(rest_idx) if pool_size is None else int(pool_size)
    if max_pool is not None:
        pool_size = min(pool_size, int(max_pool))
    if pool_size <= 0:
        raise ConfigError(f"scenario.pool_size={pool_size} must be positive")

    imb = sc.get("imbalance")
    if imb:
        pool_idx, is_minority = _imbalanced_pool(source.train.y, rest_idx, pool_size, imb, relabel, n_orig, g)
    else:
        pool_idx = rest_idx[torch.randperm(len(rest_idx), generator=g)[:pool_size]]
        is_minority = torch.zeros(len(pool_idx), dtype=torch.bool)

    pool = source.train.subset(pool_idx)
    true_label = pool.y.clone()
    if noisy:
        pool = Split(pool.x, corrupt_labels(true_label, k, noise, asym_map, g))

    test = source.test
    if max_test is not None and len(test) > max_test:
        test = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:max_test])

    info: dict[str, Any] = {"classes": list(classes) if classes else None}
    if asym_map is not None:  # the pairs in force, in original ids
        orig = {i: c for c, i in relabel.items()}
        info["asym_pairs"] = [[orig[a], orig[b]] for a, b in sorted(asym_map.items())]
    return Scenario(
        name=str(sc.get("name", "custom")),
        pool=pool,
        target=source.train.subset(target_idx),
        test=test,
        val=source.train.subset(val_idx) if val_per_class > 0 else None,
        num_classes=k,
        class_names=source.class_names,
        truth={"is_clean": pool.y == true_label, "true_label": true_label, "is_minority": is_minority},
        info=info,
        pool_index=index[pool_idx],
    )


def _count(sc: Mapping[str, Any], key: str) -> int:
    v = sc.get(key) or 0
    if isinstance(v, bool) or int(v) != v or int(v) < 0:
        raise ConfigError(f"scenario.{key}={v!r} must be a non-negative integer")
    return int(v)


def _check_classes(classes, n_orig: int) -> list[int] | None:
    if not classes:
        return None
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < n_orig]
    if bad:
        raise ConfigError(f"scenario.classes has {bad}: classes must lie in 0..{n_orig - 1}")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ConfigError(f"scenario.classes lists {dup} more than once")
    return classes


def _restrict_classes(source: Source, classes: list[int] | None) -> tuple[Source, torch.Tensor]:
    """Keep ``classes`` (original ids, already checked) and relabel them ``0..k-1`` in that order.
    Also returns the dataset's own index of each kept train example."""
    index = source.dataset_index()
    if not classes:
        return source, index
    lut = torch.full((source.num_classes,), -1, dtype=torch.int64)
    lut[torch.tensor(classes)] = torch.arange(len(classes))

    def keep(split: Split) -> Split:
        m = lut[split.y] >= 0
        return Split(split.x[m], lut[split.y[m]])

    names = [source.class_names[c] for c in classes] if source.class_names else []
    return Source(keep(source.train), keep(source.test), len(classes), names), index[lut[source.train.y] >= 0]


def relabel_asym_map(asym_map: Mapping[Any, Any], relabel: Mapping[int, int], n_orig: int) -> dict[int, int]:
    """The dataset's ``asym_map`` (original ids) in scenario ids: only pairs whose source and
    destination are both kept survive; none surviving is a ``ConfigError``."""
    pairs = {int(a): int(b) for a, b in dict(asym_map).items()}
    bad = sorted({c for p in pairs.items() for c in p if not 0 <= c < n_orig})
    if bad:
        raise ConfigError(f"dataset.asym_map names classes {bad}: classes must lie in 0..{n_orig - 1}")
    out = {relabel[a]: relabel[b] for a, b in pairs.items() if a in relabel and b in relabel and a != b}
    if not out:
        raise ConfigError(f"asymmetric noise: no dataset.asym_map pair {sorted(pairs.items())} has both classes "
                          f"among scenario.classes={list(relabel)}; keep a confusable pair or use kind=symmetric")
    return out


def _take_per_class(y: torch.Tensor, per_class: int, g: torch.Generator, val_per_class: int = 0,
                    orig_ids: list[int] | None = None):
    """Split indices into ``per_class`` examples of each class (target), the next
    ``val_per_class`` of each class (validation) and the rest (pool candidates)."""
    take, val, rest = [], [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if per_class + val_per_class >= len(idx):
            name = orig_ids[int(c)] if orig_ids else int(c)
            extra = f" + val_per_class={val_per_class}" if val_per_class else ""
            raise ConfigError(f"scenario.target_per_class={per_class}{extra} leaves no pool examples of class "
                              f"{name} (it has {len(idx)})")
        take.append(idx[:per_class])
        val.append(idx[per_class:per_class + val_per_class])
        rest.append(idx[per_class + val_per_class:])
    return torch.cat(take), torch.cat(val), torch.cat(rest)


def _imbalanced_pool(y_all, rest_idx, pool_size, imb, relabel, n_orig, g):
    """Draw a pool where the ``minority`` classes make up ``minority_fraction`` of it.

    ``minority`` names original class ids (as in the paper: "25 fours among 5,000"),
    translated here through ``relabel`` (original id -> scenario id).
    """
    frac = float(imb["minority_fraction"])
    if not 0 <= frac < 1:
        raise ConfigError(f"scenario.imbalance.minority_fraction={frac} must be in [0, 1)")
    orig = [int(c) for c in imb["minority"]]
    bad = [c for c in orig if not 0 <= c < n_orig]
    if bad:
        raise ConfigError(f"scenario.imbalance.minority has {bad}: classes must lie in 0..{n_orig - 1} "
                          f"(original dataset ids)")
    missing = [c for c in orig if c not in relabel]
    if missing:
        raise ConfigError(f"scenario.imbalance.minority={missing} not among scenario.classes={list(relabel)} "
                          f"(original dataset ids)")
    minority = torch.tensor([relabel[c] for c in orig])
    y = y_all[rest_idx]
    is_min = torch.isin(y, minority)
    n_min = int(round(pool_size * frac))
    min_idx, maj_idx = rest_idx[is_min], rest_idx[~is_min]
    if n_min > len(min_idx) or pool_size - n_min > len(maj_idx):
        raise ConfigError(f"scenario.pool_size={pool_size} with minority_fraction={frac} needs {n_min} minority and "
                          f"{pool_size - n_min} majority examples; only {len(min_idx)} and {len(maj_idx)} exist")
    min_pick = min_idx[torch.randperm(len(min_idx), generator=g)[:n_min]]
    maj_pick = maj_idx[torch.randperm(len(maj_idx), generator=g)[:pool_size - n_min]]
    pool_idx = torch.cat([min_pick, maj_pick])
    order = torch.randperm(len(pool_idx), generator=g)
    is_minority = torch.cat([torch.ones(n_min, dtype=torch.bool), torch.zeros(pool_size - n_min, dtype=torch.bool)])
    return pool_idx[order], is_minority[order]


def corrupt_labels(y: torch.Tensor, num_classes: int, noise: Mapping[str, Any], asym_map, g) -> torch.Tensor:
    """Flip exactly ``round(rate · n_eligible)`` labels.

    - ``symmetric``: each chosen label becomes a uniformly random *other* class, so the
      corrupted fraction equals ``rate`` exactly (MW-Net's variant that may keep the
      true class is not used: it would blur ``is_clean``).
    - ``asymmetric``: class-dependent flips ``c → asym_map[c]`` (the dataset's
      confusable pairs, e.g. CIFAR-10 truck→automobile); only classes in the map
      are eligible, as in the usual protocol.  Without a map, ``c → c+1 mod K``.
      ``y`` and ``asym_map`` must use the same ids: ``build_scenario`` passes the map
      through ``relabel_asym_map`` first.
    """
    kind, rate = str(noise.get("kind", "symmetric")), float(noise["rate"])
    if not 0 <= rate <= 1:
        raise ConfigError(f"scenario.noise.rate={rate} must be in [0, 1]")
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes (scenario has {num_classes})")
    y = y.clone()
    if kind == "symmetric":
        eligible = torch.arange(len(y))
    elif kind == "asymmetric":
        mapping = {int(a): int(b) for a, b in (asym_map or {c: (c + 1) % num_classes for c in range(num_classes)}).items()}
        bad = sorted({c for p in mapping.items() for c in p if not 0 <= c < num_classes})
        if bad:
            raise ConfigError(f"asym_map names classes {bad} outside 0..{num_classes - 1} (translate it with "
                              f"relabel_asym_map after a class restriction)")
        eligible = torch.nonzero(torch.isin(y, torch.tensor(list(mapping), dtype=y.dtype))).flatten()
    else:
        raise ConfigError(f"scenario.noise.kind={kind!r} (choose from: symmetric, asymmetric)")
    n_flip = int(round(rate * len(eligible)))
    chosen = eligible[torch.randperm(len(eligible), generator=g)[:n_flip]]
    if kind == "symmetric":
        shift = torch.randint(1, num_classes, (n_flip,), generator=g)
        y[chosen] = (y[chosen] + shift) % num_classes
    else:
        y[chosen] = torch.tensor([mapping[int(c)] for c in y[chosen]], dtype=y.dtype)
    return y
