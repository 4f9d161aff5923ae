"""Language scenarios: pool / target / test of token sequences plus ground truth.

Examples are ``[seq_len]`` token rows: ``x`` the inputs, ``y`` the next-token
targets with ``-100`` wherever the loss does not count (prompt tokens of an
instruction pair, the context of a continuation task, right padding).

``kind`` picks the shape (``conf/scenario/*.yaml``):

- ``domain_mixture`` (BADS "efficient learning"): the pool mixes several domains
  (Shakespeare genres or plays, instruction sources, file domains); the target set is
  ``target_size`` examples of ``target_domain``; test is text of that domain from
  *held-out documents* (scenes / records never seen in pool or target).
- ``instruction_mixture`` (BADS-LLM / SPICE): instruction pairs from several sources;
  per-task target sets (``target_per_domain`` of each of ``target_domains``) and a
  held-out test set per task with a multiple-choice variant (the reference response
  among ``choices − 1`` responses of other test examples of the same task).
- ``pretrain_selection`` (DsDm): the pool is text chunks of every domain; targets are
  continuation tasks on held-out documents of ``target_tasks`` — a context and the
  loss of the correct ``cont_tokens``-token continuation (plus multiple choice).

Validation split (``Scenario.val``, a ``TextSplit`` shaped like test): ``val_fraction``
of every domain's documents (``group``) are held out *beside* the test documents — from
the same per-domain shuffle (seeded by ``split_seed``), right after the test documents,
so the test documents are the same whatever ``val_fraction`` is, and always at least one
document per domain stays for training.  Val documents are never in pool, target or
test.  Val is then built from them exactly as test is built from the test documents:
``domain_mixture`` takes ``val_size`` examples of ``target_domain``;
``instruction_mixture`` ``val_per_domain`` of each target domain (with multiple-choice
variants when ``choices`` > 1); ``pretrain_selection`` ``val_per_task`` continuation tasks
of each target task.  It is fixed by ``split_seed`` (the same across run seeds, like
test) and capped by the scale's ``max_test``.  ``val_fraction: 0`` (or absent) gives
``val=None``.  **The test set is never used for tuning**: objectives, sweeps and method
defaults read ``val``; ``test`` is only reported.

Corruptions (pool only; ground truth in ``truth``):

- ``noise: {kind: shuffle, rate}``: the loss-bearing tokens of ``rate`` of the pool
  are shuffled (garbled text / response); ``is_clean`` marks the rest.
- ``noise: {kind: swap_response, rate}`` (instruction pairs): the response is
  replaced by another pool example's response (a wrong answer).
- ``duplication: {rate}``: ``rate`` of the pool slots are overwritten with exact
  copies of other pool examples; ``is_duplicate`` marks the copies.

Over-long instruction pairs (``overlong``): ``truncate`` (default) keeps the first
``seq_len + 1 − min(len(prompt), (seq_len + 1) // 2)`` response tokens and then as
much of the prompt as fits, cut from the *left*; ``drop`` discards such pairs;
``error`` raises a one-line ``DataError``.  Documents are cut into ``seq_len``-token
chunks (no truncation); a final piece shorter than ``min_tokens`` is dropped.
"""
from __future__ import annotations

import math
import random
from typing import Any, Mapping

import torch
from torch import Tensor

from selbench.core.data import Scenario
from selbench.core.errors import ConfigError
from selbench.datasets.text_corruptions import _corrupt
from selbench.datasets.text_examples import IGNORE, Example, TextSplit, _choices, _encode_records, _pad_rows
from selbench.datasets.text_records import TextRecord
from selbench.datasets.text_sources import load_text_source
from selbench.datasets.text_splits import _draw_pool, _per_domain, _split_groups, _take
from selbench.datasets.text_tokenize import TextTokenizer

KINDS = ("domain_mixture", "instruction_mixture", "pretrain_selection")


def unigram_nll(train_y: Tensor, test_y: Tensor, vocab: int) -> float:
    """Mean NLL of ``test_y``'s targets under add-one-smoothed training token frequencies."""
    counts = torch.bincount(train_y[train_y != IGNORE].flatten(), minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    t = test_y[test_y != IGNORE]
    return float(-logp[t].mean()) if len(t) else float("nan")


# --------------------------------------------------------------------------- the scenario
def build_text_scenario(dataset_cfg: Mapping[str, Any], scenario_cfg: Mapping[str, Any], tok: TextTokenizer,
                        seed: int, max_pool: int | None = None, max_test: int | None = None) -> Scenario:
    ds, sc = dict(dataset_cfg), dict(scenario_cfg)
    kind = str(sc.get("kind", sc.get("name")))
    if kind not in KINDS:
        raise ConfigError(f"scenario.kind={kind!r} is not a language scenario (choose from: {', '.join(KINDS)})")
    seq_len = int(sc.get("seq_len", 128))
    if seq_len < 8:
        raise ConfigError(f"scenario.seq_len={seq_len} must be at least 8")
    overlong = str(sc.get("overlong", "truncate"))
    if overlong not in ("truncate", "drop", "error"):
        raise ConfigError(f"scenario.overlong={overlong!r} (choose from: truncate, drop, error)")
    records = load_text_source(ds.pop("name"), **ds)
    is_pairs = all(r.prompt is not None for r in records)
    if kind == "instruction_mixture" and not is_pairs:
        raise ConfigError("scenario=instruction_mixture needs instruction pairs: dataset=instructions or a "
                          "textfile whose records have 'prompt' and 'response'")
    if kind == "pretrain_selection" and not all(r.prompt is None for r in records):
        records = [TextRecord(r.text if r.prompt is None else f"{r.prompt}\n{r.text}", r.domain, r.group)
                   for r in records]
        is_pairs = False
    split_seed = int(sc.get("split_seed", 0))
    val_fraction = float(sc.get("val_fraction") or 0)
    held, val_groups = _split_groups(records, float(sc.get("heldout_fraction", 0.2)), split_seed, val_fraction)
    per_rec, stats = _encode_records(records, tok, seq_len, overlong, int(sc.get("min_tokens", 16)),
                              bool(sc.get("cache", True)))
    train_ex = [e for r, ex in zip(records, per_rec) if r.group not in held and r.group not in val_groups for e in ex]
    held_ex = [e for r, ex in zip(records, per_rec) if r.group in held for e in ex]
    val_ex = [e for r, ex in zip(records, per_rec) if r.group in val_groups for e in ex]
    domains = sorted({r.domain for r in records})
    # val has its own stream so that drawing it leaves the test draw (split_rng) untouched
    rng, split_rng, val_rng = random.Random(seed), random.Random(split_seed), random.Random(f"val/{split_seed}")
    n_choices = int(sc.get("choices", 0) or 0)

    pool_size = sc.get("pool_size")
    if max_pool is not None and pool_size is not None:
        pool_size = min(int(pool_size), int(max_pool))  # pool_size=null: _draw_pool caps "everything" at max_pool

    if kind == "domain_mixture":
        tdom = str(sc.get("target_domain"))
        if tdom not in domains:
            raise ConfigError(f"scenario.target_domain={tdom!r} is not a domain of this dataset "
                              f"(choose from: {', '.join(domains)})")
        target_domains = [tdom]
        cand_t = [e for e in train_ex if e.domain == tdom]
        k = int(sc.get("target_size", 32))
        if not 0 < k < len(cand_t):
            raise ConfigError(f"scenario.target_size={k} must be in [1, {len(cand_t)}) (the training examples of "
                              f"domain {tdom!r})")
        target, cand_t = _take(cand_t, k, rng)
        cand_o = [e for e in train_ex if e.domain != tdom]
        pool = _draw_pool(cand_t, cand_o, pool_size, sc.get("target_share"), rng, max_pool)
        test_items = [e for e in held_ex if e.domain == tdom]
        test_cap = sc.get("test_size")
        val_items = [e for e in val_ex if e.domain == tdom]
        val_cap = sc.get("val_size")
    elif kind == "instruction_mixture":
        target_domains = [str(d) for d in (sc.get("target_domains") or domains)]
        bad = [d for d in target_domains if d not in domains]
        if bad:
            raise ConfigError(f"scenario.target_domains has {bad} (choose from: {', '.join(domains)})")
        target, rest = [], []
        for d in domains:
            ex = [e for e in train_ex if e.domain == d]
            if d in target_domains:
                t, ex = _take(ex, int(sc.get("target_per_domain", 16)), rng)
                target += t
            rest += ex
        pool = _draw_pool([], rest, pool_size, None, rng, max_pool)
        test_items = _per_domain(held_ex, target_domains, sc.get("test_per_domain"), split_rng)
        test_cap = None
        val_items = _per_domain(val_ex, target_domains, sc.get("val_per_domain"), val_rng)
        val_cap = None
    else:  # pretrain_selection
        target_domains = [str(d) for d in (sc.get("target_tasks") or domains)]
        bad = [d for d in target_domains if d not in domains]
        if bad:
            raise ConfigError(f"scenario.target_tasks has {bad} (choose from: {', '.join(domains)})")
        cont = int(sc.get("cont_tokens", 8))
        if not 1 <= cont < seq_len:
            raise ConfigError(f"scenario.cont_tokens={cont} must be in [1, seq_len)")
        pool = _draw_pool([], train_ex, pool_size, None, rng, max_pool)
        tasks = [Example(e.ids, len(e.ids) - 1 - cont, e.domain, e.group) for e in held_ex
                 if e.domain in target_domains and len(e.ids) - 1 > cont]
        split_rng.shuffle(tasks)
        target, test_items = [], []
        for d in target_domains:
            ex = [e for e in tasks if e.domain == d]
            k = int(sc.get("target_per_task", 16))
            if len(ex) <= k:
                raise ConfigError(f"target task {d!r} has only {len(ex)} held-out continuation examples; "
                                  f"lower scenario.target_per_task={k} or raise scenario.heldout_fraction")
            target += ex[:k]
            test_items += ex[k:k + int(sc.get("test_per_task") or len(ex))]
        test_cap = None
        val_tasks = [Example(e.ids, len(e.ids) - 1 - cont, e.domain, e.group) for e in val_ex
                     if e.domain in target_domains and len(e.ids) - 1 > cont]
        val_rng.shuffle(val_tasks)
        per = sc.get("val_per_task")
        val_items = [e for d in target_domains for e in [t for t in val_tasks if t.domain == d][:int(per) if per else None]]
        val_cap = None

    if not target:
        raise ConfigError("the target set is empty (raise scenario.target_size / target_per_domain)")
    if not pool:
        raise ConfigError("the pool is empty (check scenario.pool_size and the dataset's domains)")
    if not test_items:
        raise ConfigError("the test set is empty: the target domain has no held-out documents "
                          "(raise scenario.heldout_fraction or use a larger dataset)")
    split_rng.shuffle(test_items)
    cap = min(int(test_cap) if test_cap else len(test_items), int(max_test) if max_test else len(test_items))
    test_items = test_items[:cap]
    if val_fraction > 0 and not val_items:
        raise ConfigError(f"the validation set is empty: the target domain(s) have no validation documents at "
                          f"scenario.val_fraction={val_fraction} (raise it, or set it to 0 for no validation split)")
    val_rng.shuffle(val_items)
    vcap = min(int(val_cap) if val_cap else len(val_items), int(max_test) if max_test else len(val_items))
    val_items = val_items[:vcap]

    pool, noisy, is_dup = _corrupt(pool, sc.get("noise"), sc.get("duplication"), tok, seq_len, is_pairs, rng)

    # Compact vocabularies are fitted on what training can see: pool + target.
    tok.fit([e.ids for e in pool + target])
    remap = (lambda e: Example(tok.remap(torch.tensor(e.ids)).tolist(), e.n_masked, e.domain, e.group, e.prompt_len))
    pool, target, test_items = [remap(e) for e in pool], [remap(e) for e in target], [remap(e) for e in test_items]
    val_items = [remap(e) for e in val_items]

    dom_id = {d: i for i, d in enumerate(domains)}
    dtensor = (lambda ex: torch.tensor([dom_id[e.domain] for e in ex], dtype=torch.long))
    pool_split = TextSplit(*_pad_rows(pool, seq_len, tok.pad_id), domain=dtensor(pool))
    target_split = TextSplit(*_pad_rows(target, seq_len, tok.pad_id), domain=dtensor(target))
    cx, cy, ans = _choices(test_items, n_choices, seq_len, split_rng, tok.pad_id)
    test_split = TextSplit(*_pad_rows(test_items, seq_len, tok.pad_id), domain=dtensor(test_items),
                           choice_x=cx, choice_y=cy, answer=ans)
    val_split = None
    if val_items:
        vx, vy, vans = _choices(val_items, n_choices, seq_len, val_rng, tok.pad_id)
        val_split = TextSplit(*_pad_rows(val_items, seq_len, tok.pad_id), domain=dtensor(val_items),
                              choice_x=vx, choice_y=vy, answer=vans)

    train_y = torch.cat([pool_split.y, target_split.y])
    uni = unigram_nll(train_y, test_split.y, tok.vocab_size)
    pool_dom = pool_split.domain
    info = {
        "kind": kind, "seq_len": seq_len, "tokenizer": tok.name, "vocab_size": tok.vocab_size,
        "domains": domains, "target_domains": target_domains,
        "pool_domain_counts": {d: int((pool_dom == i).sum()) for d, i in dom_id.items() if (pool_dom == i).any()},
        "pool_target_tokens": int((pool_split.y != IGNORE).sum()),
        "test_target_tokens": int((test_split.y != IGNORE).sum()),
        "test_unigram_nll": uni, "test_unigram_perplexity": math.exp(uni) if uni == uni else None,
        "pairs_truncated": stats["truncated"], "pairs_dropped": stats["dropped"],
        "test_choices": n_choices if cx is not None else 0,
        "val_target_tokens": int((val_split.y != IGNORE).sum()) if val_split is not None else 0,
    }
    if tok.unk_id is not None:
        info["pool_unk_fraction"] = float((pool_split.y == tok.unk_id).sum() / max(info["pool_target_tokens"], 1))
    scenario = Scenario(
        name=str(sc.get("name", kind)), pool=pool_split, target=target_split, test=test_split, val=val_split,
        num_classes=tok.vocab_size, modality="language", class_names=domains,
        truth={"is_clean": ~torch.tensor(noisy, dtype=torch.bool), "domain": pool_dom,
               "in_target_domain": torch.isin(pool_dom, torch.tensor([dom_id[d] for d in target_domains])),
               "is_duplicate": torch.tensor(is_dup, dtype=torch.bool)},
        info=info, tokenizer=tok,
    )
    return scenario
