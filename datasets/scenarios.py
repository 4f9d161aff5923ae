"""Scenario builders: turn a data source into pool / target / test plus ground truth.

A scenario config reads like the experiment (see ``conf/scenario/*.yaml``)::

    classes: [4, 9]             # keep these classes, relabelled 0..k-1 (null = all)
    pool_size: 5000             # pool examples drawn from the train split
    target_per_class: 25        # small clean target ("meta") set, disjoint from the pool
    imbalance: {minority: [4], minority_fraction: 0.005}
    noise: {kind: symmetric, rate: 0.5}

Corruptions compose: imbalance shapes the pool's class mix, then label noise flips
pool labels.  The target set is always clean and class-balanced (the BADS / MW-Net
protocol); the test set is the source's test split restricted to ``classes``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from selbench.core.data import Scenario, Split
from selbench.datasets.sources import Source, load_source
from selbench.core.errors import ConfigError


def build_scenario(dataset_cfg: Mapping[str, Any], scenario_cfg: Mapping[str, Any], seed: int,
                   max_pool: int | None = None, max_test: int | None = None) -> Scenario:
    ds = dict(dataset_cfg)
    sc = dict(scenario_cfg)
    source = load_source(ds.pop("name"), **{k: v for k, v in ds.items() if k != "asym_map"})
    g = torch.Generator().manual_seed(int(seed))

    classes = sc.get("classes")
    source = _restrict_classes(source, classes)
    k = source.num_classes

    target_idx, rest_idx = _take_per_class(source.train.y, int(sc.get("target_per_class", 0)), g)
    pool_size = sc.get("pool_size")
    pool_size = len(rest_idx) if pool_size is None else int(pool_size)
    if max_pool is not None:
        pool_size = min(pool_size, int(max_pool))
    if pool_size <= 0:
        raise ConfigError(f"scenario.pool_size={pool_size} must be positive")

    imb = sc.get("imbalance")
    if imb:
        pool_idx, is_minority = _imbalanced_pool(source.train.y, rest_idx, pool_size, imb, classes, g)
    else:
        pool_idx = rest_idx[torch.randperm(len(rest_idx), generator=g)[:pool_size]]
        is_minority = torch.zeros(len(pool_idx), dtype=torch.bool)

    pool = source.train.subset(pool_idx)
    true_label = pool.y.clone()
    noise = sc.get("noise")
    if noise and float(noise.get("rate", 0)) > 0:
        pool = Split(pool.x, corrupt_labels(true_label, k, noise, dataset_cfg.get("asym_map"), g))

    test = source.test
    if max_test is not None and len(test) > max_test:
        test = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:max_test])

    return Scenario(
        name=str(sc.get("name", "custom")),
        pool=pool,
        target=source.train.subset(target_idx),
        test=test,
        num_classes=k,
        class_names=source.class_names,
        truth={"is_clean": pool.y == true_label, "true_label": true_label, "is_minority": is_minority},
        info={"classes": list(classes) if classes else None},
    )


def _restrict_classes(source: Source, classes) -> Source:
    if not classes:
        return source
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < source.num_classes]
    if bad:
        raise ConfigError(f"scenario.classes has {bad}: classes must lie in 0..{source.num_classes - 1}")
    lut = torch.full((source.num_classes,), -1, dtype=torch.int64)
    lut[torch.tensor(classes)] = torch.arange(len(classes))

    def keep(split: Split) -> Split:
        m = lut[split.y] >= 0
        return Split(split.x[m], lut[split.y[m]])

    names = [source.class_names[c] for c in classes] if source.class_names else []
    return Source(keep(source.train), keep(source.test), len(classes), names)


def _take_per_class(y: torch.Tensor, per_class: int, g: torch.Generator):
    """Split indices into ``per_class`` examples of each class and the rest."""
    take, rest = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if per_class >= len(idx):
            raise ConfigError(f"scenario.target_per_class={per_class} leaves no pool examples of class {int(c)} "
                              f"(it has {len(idx)})")
        take.append(idx[:per_class])
        rest.append(idx[per_class:])
    return torch.cat(take), torch.cat(rest)


def _imbalanced_pool(y_all, rest_idx, pool_size, imb, classes, g):
    """Draw a pool where the ``minority`` classes make up ``minority_fraction`` of it.

    ``minority`` names original class ids (as in the paper: "25 fours among 5,000").
    """
    frac = float(imb["minority_fraction"])
    if not 0 <= frac < 1:
        raise ConfigError(f"scenario.imbalance.minority_fraction={frac} must be in [0, 1)")
    orig = [int(c) for c in imb["minority"]]
    relabel = {c: i for i, c in enumerate(classes)} if classes else {c: c for c in orig}
    missing = [c for c in orig if c not in relabel]
    if missing:
        raise ConfigError(f"scenario.imbalance.minority={missing} not among scenario.classes={list(classes)}")
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
    """
    kind, rate = str(noise.get("kind", "symmetric")), float(noise["rate"])
    if not 0 <= rate <= 1:
        raise ConfigError(f"scenario.noise.rate={rate} must be in [0, 1]")
    y = y.clone()
    if kind == "symmetric":
        eligible = torch.arange(len(y))
    elif kind == "asymmetric":
        mapping = {int(a): int(b) for a, b in (asym_map or {c: (c + 1) % num_classes for c in range(num_classes)}).items()}
        eligible = torch.nonzero(torch.isin(y, torch.tensor(list(mapping)))).flatten()
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
