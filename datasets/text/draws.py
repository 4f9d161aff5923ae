"""What each language scenario ``kind`` draws: its target set, pool and the (uncapped) test
and validation items, from the encoded training, held-out and validation examples.

One function per kind, registered in ``DRAWS``; ``build_text_scenario`` (``datasets/text/scenarios.py``)
then caps, corrupts, tokenizes and packs what they return.  The random streams are the
builder's: ``rng`` (the run seed: target and pool), ``split_rng`` (``split_seed``: test) and
``val_rng`` (validation), so that a draw never disturbs another split's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from selbench.core.errors import ConfigError
from selbench.datasets.text.examples import Example
from selbench.datasets.text.splits import draw_pool, per_domain, take


@dataclass
class Streams:
    rng: random.Random        #: the run seed's: target and pool draws, corruptions
    split_rng: random.Random  #: ``split_seed``'s: test (the same across run seeds)
    val_rng: random.Random    #: validation's own, so drawing it leaves the test draw untouched


@dataclass
class Candidates:
    """Encoded examples by the documents they come from, and the dataset's domains."""
    train: list[Example]
    held: list[Example]
    val: list[Example]
    domains: list[str]


@dataclass
class Drawn:
    target_domains: list[str]
    target: list[Example]
    pool: list[Example]
    test: list[Example]
    test_cap: Any             #: the kind's own test-size knob (None = every test item)
    val: list[Example]
    val_cap: Any


def _known(domains: list[str], wanted, key: str) -> list[str]:
    out = [str(d) for d in (wanted or domains)]
    bad = [d for d in out if d not in domains]
    if bad:
        raise ConfigError(f"scenario.{key} has {bad} (choose from: {', '.join(domains)})")
    return out


def domain_mixture(sc: Mapping[str, Any], c: Candidates, pool_size, max_pool, s: Streams, seq_len: int) -> Drawn:
    """Target: ``target_size`` examples of ``target_domain``; pool: the rest of every domain
    (``target_share`` of it from the target domain, or the natural mix); test / val: that
    domain's held-out / validation documents."""
    tdom = str(sc.get("target_domain"))
    if tdom not in c.domains:
        raise ConfigError(f"scenario.target_domain={tdom!r} is not a domain of this dataset "
                          f"(choose from: {', '.join(c.domains)})")
    cand_t = [e for e in c.train if e.domain == tdom]
    k = int(sc.get("target_size", 32))
    if not 0 < k < len(cand_t):
        raise ConfigError(f"scenario.target_size={k} must be in [1, {len(cand_t)}) (the training examples of "
                          f"domain {tdom!r})")
    target, cand_t = take(cand_t, k, s.rng)
    cand_o = [e for e in c.train if e.domain != tdom]
    pool = draw_pool(cand_t, cand_o, pool_size, sc.get("target_share"), s.rng, max_pool)
    return Drawn([tdom], target, pool, [e for e in c.held if e.domain == tdom], sc.get("test_size"),
                 [e for e in c.val if e.domain == tdom], sc.get("val_size"))


def instruction_mixture(sc: Mapping[str, Any], c: Candidates, pool_size, max_pool, s: Streams,
                        seq_len: int) -> Drawn:
    """Target: ``target_per_domain`` pairs of each target domain; pool: every other training
    pair; test / val: ``test_per_domain`` / ``val_per_domain`` held-out pairs of each task."""
    target_domains = _known(c.domains, sc.get("target_domains"), "target_domains")
    target, rest = [], []
    for d in c.domains:
        ex = [e for e in c.train if e.domain == d]
        if d in target_domains:
            t, ex = take(ex, int(sc.get("target_per_domain", 16)), s.rng)
            target += t
        rest += ex
    pool = draw_pool([], rest, pool_size, None, s.rng, max_pool)
    test = per_domain(c.held, target_domains, sc.get("test_per_domain"), s.split_rng)
    val = per_domain(c.val, target_domains, sc.get("val_per_domain"), s.val_rng)
    return Drawn(target_domains, target, pool, test, None, val, None)


def _continuations(examples: list[Example], target_domains: list[str], cont: int) -> list[Example]:
    """Each document chunk as a task: its context is masked, its last ``cont`` tokens scored."""
    return [Example(e.ids, len(e.ids) - 1 - cont, e.domain, e.group) for e in examples
            if e.domain in target_domains and len(e.ids) - 1 > cont]


def pretrain_selection(sc: Mapping[str, Any], c: Candidates, pool_size, max_pool, s: Streams,
                       seq_len: int) -> Drawn:
    """Pool: chunks of every domain's training documents; target and test: continuation tasks
    on held-out documents of the target tasks (``target_per_task`` then ``test_per_task`` each);
    val: ``val_per_task`` continuation tasks of each from the validation documents."""
    target_domains = _known(c.domains, sc.get("target_tasks"), "target_tasks")
    cont = int(sc.get("cont_tokens", 8))
    if not 1 <= cont < seq_len:
        raise ConfigError(f"scenario.cont_tokens={cont} must be in [1, seq_len)")
    pool = draw_pool([], c.train, pool_size, None, s.rng, max_pool)
    tasks = _continuations(c.held, target_domains, cont)
    s.split_rng.shuffle(tasks)
    target, test = [], []
    for d in target_domains:
        ex = [e for e in tasks if e.domain == d]
        k = int(sc.get("target_per_task", 16))
        if len(ex) <= k:
            raise ConfigError(f"target task {d!r} has only {len(ex)} held-out continuation examples; "
                              f"lower scenario.target_per_task={k} or raise scenario.heldout_fraction")
        target += ex[:k]
        test += ex[k:k + int(sc.get("test_per_task") or len(ex))]
    val_tasks = _continuations(c.val, target_domains, cont)
    s.val_rng.shuffle(val_tasks)
    per = sc.get("val_per_task")
    val = [e for d in target_domains for e in [t for t in val_tasks if t.domain == d][:int(per) if per else None]]
    return Drawn(target_domains, target, pool, test, None, val, None)


DRAWS: dict[str, Callable[..., Drawn]] = {
    "domain_mixture": domain_mixture,
    "instruction_mixture": instruction_mixture,
    "pretrain_selection": pretrain_selection,
}
