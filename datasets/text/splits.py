"""How a language scenario divides its data: held-out documents for test and validation
(by ``group``, per domain), and the draws of the pool and of per-domain sets."""
from __future__ import annotations

import random

from selbench.core.errors import ConfigError
from selbench.datasets.text.examples import Example
from selbench.datasets.text.records import TextRecord


def split_groups(records: list[TextRecord], heldout_fraction: float, seed: int,
                  val_fraction: float = 0.0) -> tuple[set[str], set[str]]:
    """Held-out documents (by ``group``): a fixed fraction of every domain's groups for
    test, and the next ``val_fraction`` of them for validation (at least one group of a
    domain always stays for training).  Returns (test groups, val groups), disjoint."""
    if not 0 < heldout_fraction < 1:
        raise ConfigError(f"scenario.heldout_fraction={heldout_fraction} must be in (0, 1)")
    if not 0 <= val_fraction < 1 or heldout_fraction + val_fraction >= 1:
        raise ConfigError(f"scenario.val_fraction={val_fraction} must be in [0, 1 - heldout_fraction)")
    by_dom: dict[str, list[str]] = {}
    for r in records:
        lst = by_dom.setdefault(r.domain, [])
        if not lst or lst[-1] != r.group:
            lst.append(r.group)
    rng = random.Random(seed)
    held, val = set(), set()
    for d in sorted(by_dom):
        groups = sorted(set(by_dom[d]))
        rng.shuffle(groups)
        k = max(1, int(round(heldout_fraction * len(groups)))) if len(groups) > 1 else 0
        held.update(groups[:k])
        if val_fraction > 0:
            kv = min(max(1, int(round(val_fraction * len(groups)))), len(groups) - k - 1)
            val.update(groups[k:k + max(kv, 0)])
    return held, val - held


def take(items: list, k: int, rng: random.Random) -> tuple[list, list]:
    items = list(items)
    rng.shuffle(items)
    return items[:k], items[k:]


def draw_pool(cand_t: list, cand_o: list, pool_size, target_share, rng: random.Random,
               cap: int | None = None) -> list:
    """``pool_size`` examples (null = every candidate, at most ``cap``: the scale's max_pool)."""
    everything = cand_t + cand_o
    if pool_size is None and cap is not None:
        pool_size = min(int(cap), len(everything))
    n = len(everything) if pool_size is None else int(pool_size)
    if n <= 0:
        raise ConfigError(f"scenario.pool_size={pool_size} must be positive")
    if target_share is None:
        if n > len(everything):
            raise ConfigError(f"scenario.pool_size={n} exceeds the {len(everything)} available training examples")
        return take(everything, n, rng)[0]
    share = float(target_share)
    if not 0 <= share <= 1:
        raise ConfigError(f"scenario.target_share={share} must be in [0, 1]")
    n_t = int(round(share * n))
    if n_t > len(cand_t) or n - n_t > len(cand_o):
        raise ConfigError(f"scenario.pool_size={n} with target_share={share} needs {n_t} target-domain and "
                          f"{n - n_t} other examples; only {len(cand_t)} and {len(cand_o)} exist")
    pool = take(cand_t, n_t, rng)[0] + take(cand_o, n - n_t, rng)[0]
    rng.shuffle(pool)
    return pool


def per_domain(items: list[Example], domains: list[str], per: int | None, rng: random.Random) -> list[Example]:
    out = []
    for d in domains:
        ex = [e for e in items if e.domain == d]
        rng.shuffle(ex)
        out += ex[:int(per)] if per else ex
    return out
