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
from selbench.datasets.text.corruptions import corrupt_pool
from selbench.datasets.text.draws import DRAWS, Candidates, Drawn, Streams
from selbench.datasets.text.examples import IGNORE, Example, TextSplit, choice_sets, encode_records, pad_rows
from selbench.datasets.text.records import TextRecord
from selbench.datasets.text.sources import load_text_source
from selbench.datasets.text.splits import split_groups
from selbench.datasets.text.tokenizer import TextTokenizer

KINDS = tuple(DRAWS)


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
    kind, seq_len, overlong = _shape(sc)
    records, is_pairs = _records(ds, kind)
    cands, stats = _encode_and_hold_out(records, sc, tok, seq_len, overlong)
    split_seed = int(sc.get("split_seed", 0))
    streams = Streams(random.Random(seed), random.Random(split_seed), random.Random(f"val/{split_seed}"))
    drawn = DRAWS[kind](sc, cands, _pool_size(sc, max_pool), max_pool, streams, seq_len)
    test_items, val_items = _capped_eval_sets(drawn, sc, max_test, streams)
    pool, noisy, is_dup = corrupt_pool(drawn.pool, sc.get("noise"), sc.get("duplication"), tok, seq_len, is_pairs,
                                       streams.rng)
    pool, target, test_items, val_items = _fit_vocabulary(tok, pool, drawn.target, test_items, val_items)
    n_choices = int(sc.get("choices", 0) or 0)
    dom_id = {d: i for i, d in enumerate(cands.domains)}
    pool_split, target_split = _pack(pool, seq_len, tok, dom_id), _pack(target, seq_len, tok, dom_id)
    test_split = _pack(test_items, seq_len, tok, dom_id, n_choices, streams.split_rng)
    val_split = _pack(val_items, seq_len, tok, dom_id, n_choices, streams.val_rng) if val_items else None
    info = _info(kind, seq_len, tok, cands.domains, drawn.target_domains, pool_split, target_split, test_split,
                 val_split, stats, n_choices)
    pool_dom = pool_split.domain
    return Scenario(
        name=str(sc.get("name", kind)), pool=pool_split, target=target_split, test=test_split, val=val_split,
        num_classes=tok.vocab_size, modality="language", class_names=cands.domains,
        truth={"is_clean": ~torch.tensor(noisy, dtype=torch.bool), "domain": pool_dom,
               "in_target_domain": torch.isin(pool_dom, torch.tensor([dom_id[d] for d in drawn.target_domains])),
               "is_duplicate": torch.tensor(is_dup, dtype=torch.bool)},
        info=info, tokenizer=tok,
    )


def _shape(sc: Mapping[str, Any]) -> tuple[str, int, str]:
    """The scenario's kind, sequence length and over-long-pair policy, checked."""
    kind = str(sc.get("kind", sc.get("name")))
    if kind not in KINDS:
        raise ConfigError(f"scenario.kind={kind!r} is not a language scenario (choose from: {', '.join(KINDS)})")
    seq_len = int(sc.get("seq_len", 128))
    if seq_len < 8:
        raise ConfigError(f"scenario.seq_len={seq_len} must be at least 8")
    overlong = str(sc.get("overlong", "truncate"))
    if overlong not in ("truncate", "drop", "error"):
        raise ConfigError(f"scenario.overlong={overlong!r} (choose from: truncate, drop, error)")
    return kind, seq_len, overlong


def _records(ds: dict, kind: str) -> tuple[list[TextRecord], bool]:
    """The source's records, and whether they are instruction pairs (``pretrain_selection``
    reads pairs as plain documents: prompt, newline, response)."""
    records = load_text_source(ds.pop("name"), **ds)
    is_pairs = all(r.prompt is not None for r in records)
    if kind == "instruction_mixture" and not is_pairs:
        raise ConfigError("scenario=instruction_mixture needs instruction pairs: dataset=instructions or a "
                          "textfile whose records have 'prompt' and 'response'")
    if kind == "pretrain_selection" and not all(r.prompt is None for r in records):
        records = [TextRecord(r.text if r.prompt is None else f"{r.prompt}\n{r.text}", r.domain, r.group)
                   for r in records]
        is_pairs = False
    return records, is_pairs


def _encode_and_hold_out(records: list[TextRecord], sc: Mapping[str, Any], tok: TextTokenizer, seq_len: int,
                         overlong: str) -> tuple[Candidates, dict]:
    """Encode every record into examples and sort them by their document's split (training,
    held out for test, held out for validation); returns them and the truncation counts."""
    val_fraction = float(sc.get("val_fraction") or 0)
    held, val_groups = split_groups(records, float(sc.get("heldout_fraction", 0.2)), int(sc.get("split_seed", 0)),
                                    val_fraction)
    per_rec, stats = encode_records(records, tok, seq_len, overlong, int(sc.get("min_tokens", 16)),
                                    bool(sc.get("cache", True)))
    train = [e for r, ex in zip(records, per_rec) if r.group not in held and r.group not in val_groups for e in ex]
    held_ex = [e for r, ex in zip(records, per_rec) if r.group in held for e in ex]
    val_ex = [e for r, ex in zip(records, per_rec) if r.group in val_groups for e in ex]
    return Candidates(train, held_ex, val_ex, sorted({r.domain for r in records})), stats


def _pool_size(sc: Mapping[str, Any], max_pool: int | None):
    pool_size = sc.get("pool_size")
    if max_pool is not None and pool_size is not None:
        pool_size = min(int(pool_size), int(max_pool))  # pool_size=null: draw_pool caps "everything" at max_pool
    return pool_size


def _capped_eval_sets(drawn: Drawn, sc: Mapping[str, Any], max_test: int | None,
                      s: Streams) -> tuple[list[Example], list[Example]]:
    """Refuse an empty target, pool or test set (or an empty val set that was asked for), then
    shuffle test and val and cut each to its size knob and the scale's ``max_test``."""
    if not drawn.target:
        raise ConfigError("the target set is empty (raise scenario.target_size / target_per_domain)")
    if not drawn.pool:
        raise ConfigError("the pool is empty (check scenario.pool_size and the dataset's domains)")
    if not drawn.test:
        raise ConfigError("the test set is empty: the target domain has no held-out documents "
                          "(raise scenario.heldout_fraction or use a larger dataset)")
    test = list(drawn.test)
    s.split_rng.shuffle(test)
    test = test[:_cap(drawn.test_cap, max_test, len(test))]
    val_fraction = float(sc.get("val_fraction") or 0)
    if val_fraction > 0 and not drawn.val:
        raise ConfigError(f"the validation set is empty: the target domain(s) have no validation documents at "
                          f"scenario.val_fraction={val_fraction} (raise it, or set it to 0 for no validation split)")
    val = list(drawn.val)
    s.val_rng.shuffle(val)
    return test, val[:_cap(drawn.val_cap, max_test, len(val))]


def _cap(own, max_test: int | None, n: int) -> int:
    return min(int(own) if own else n, int(max_test) if max_test else n)


def _fit_vocabulary(tok: TextTokenizer, pool, target, test, val):
    """Compact vocabularies are fitted on what training can see (pool + target); every split
    is then written in the fitted ids."""
    tok.fit([e.ids for e in pool + target])

    def remap(e: Example) -> Example:
        return Example(tok.remap(torch.tensor(e.ids)).tolist(), e.n_masked, e.domain, e.group, e.prompt_len)
    return ([remap(e) for e in pool], [remap(e) for e in target], [remap(e) for e in test],
            [remap(e) for e in val])


def _pack(items: list[Example], seq_len: int, tok: TextTokenizer, dom_id: dict[str, int], n_choices: int = 0,
          rng: random.Random | None = None) -> TextSplit:
    """Padded ``[n, seq_len]`` rows with their domain ids; an evaluation split also gets its
    multiple-choice variants (drawn from ``rng``) when ``n_choices`` > 1."""
    domain = torch.tensor([dom_id[e.domain] for e in items], dtype=torch.long)
    if rng is None:
        return TextSplit(*pad_rows(items, seq_len, tok.pad_id), domain=domain)
    cx, cy, ans = choice_sets(items, n_choices, seq_len, rng, tok.pad_id)
    return TextSplit(*pad_rows(items, seq_len, tok.pad_id), domain=domain, choice_x=cx, choice_y=cy, answer=ans)


def _info(kind, seq_len, tok, domains, target_domains, pool_split, target_split, test_split, val_split, stats,
          n_choices) -> dict[str, Any]:
    """What the record shows about the scenario: sizes, the domain mix, the unigram baseline."""
    uni = unigram_nll(torch.cat([pool_split.y, target_split.y]), test_split.y, tok.vocab_size)
    pool_dom = pool_split.domain
    info = {
        "kind": kind, "seq_len": seq_len, "tokenizer": tok.name, "vocab_size": tok.vocab_size,
        "domains": domains, "target_domains": target_domains,
        "pool_domain_counts": {d: int((pool_dom == i).sum()) for i, d in enumerate(domains) if (pool_dom == i).any()},
        "pool_target_tokens": int((pool_split.y != IGNORE).sum()),
        "test_target_tokens": int((test_split.y != IGNORE).sum()),
        "test_unigram_nll": uni, "test_unigram_perplexity": math.exp(uni) if uni == uni else None,
        "pairs_truncated": stats["truncated"], "pairs_dropped": stats["dropped"],
        "test_choices": n_choices if test_split.choice_x is not None else 0,
        "val_target_tokens": int((val_split.y != IGNORE).sum()) if val_split is not None else 0,
    }
    if tok.unk_id is not None:
        info["pool_unk_fraction"] = float((pool_split.y == tok.unk_id).sum() / max(info["pool_target_tokens"], 1))
    return info
