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
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from selbench.core.data import Scenario, Split
from selbench.datasets.text_sources import TextRecord, load_text_source
from selbench.datasets.text_tokenize import TextTokenizer, encode_cached
from selbench.core.errors import ConfigError, DataError

IGNORE = -100
KINDS = ("domain_mixture", "instruction_mixture", "pretrain_selection")


@dataclass
class TextSplit(Split):
    """A ``Split`` with optional per-example domain ids and multiple-choice variants.

    ``choice_x`` / ``choice_y`` are ``[N, C, T]``: row ``c`` is the prompt/context with
    candidate ``c`` as response/continuation; ``answer[n]`` is the correct ``c``.
    """

    domain: Tensor | None = None
    choice_x: Tensor | None = None
    choice_y: Tensor | None = None
    answer: Tensor | None = None

    def subset(self, idx: Tensor) -> "TextSplit":
        pick = (lambda t: None if t is None else t[idx])
        return TextSplit(self.x[idx], self.y[idx], pick(self.domain), pick(self.choice_x), pick(self.choice_y),
                         pick(self.answer))


@dataclass
class Example:
    ids: list[int]          # full token sequence (len ≤ seq_len + 1)
    n_masked: int           # leading targets that do not count (prompt / context)
    domain: str
    group: str
    prompt_len: int = 0     # for rebuilding instruction pairs (swap / multiple choice)


# --------------------------------------------------------------------------- building blocks
def _pad_rows(examples: list[Example], seq_len: int, pad_id: int) -> tuple[Tensor, Tensor]:
    n = len(examples)
    x = torch.full((n, seq_len), pad_id, dtype=torch.long)
    y = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        ids = torch.as_tensor(e.ids, dtype=torch.long)
        L = len(ids) - 1
        x[i, :L] = ids[:-1]
        y[i, :L] = ids[1:]
        y[i, :max(e.n_masked, 0)] = IGNORE
    return x, y


def _pair(p: list[int], r: list[int], seq_len: int, overlong: str, where: str) -> tuple[list[int], int] | None:
    """Prompt + response ids within ``seq_len + 1`` tokens; returns (ids, prompt length)."""
    cap = seq_len + 1
    if len(p) + len(r) > cap:
        if overlong == "error":
            raise DataError(f"{where}: prompt+response is {len(p) + len(r)} tokens, over scenario.seq_len+1={cap} "
                            f"(set scenario.overlong=truncate or drop)")
        if overlong == "drop":
            return None
        r = r[:cap - min(len(p), cap // 2)]
        p = p[len(p) - (cap - len(r)):] if cap - len(r) > 0 else []
    if not p:
        p = []
    return p + r, len(p)


def _encode_records(records: list[TextRecord], tok: TextTokenizer, seq_len: int, overlong: str,
                    min_tokens: int, use_cache: bool) -> tuple[list[list[Example]], dict]:
    """One list of examples per record (chunks of a document, or one instruction pair), and
    the counts of truncated and dropped pairs."""
    texts, kinds = [], []
    for r in records:
        if r.prompt is None:
            texts.append(r.text)
            kinds.append("doc")
        else:
            texts += [tok.format_prompt(r.prompt), r.text]
            kinds.append("pair")
    ids = encode_cached(tok, texts, use_cache)
    out, j, stats = [], 0, {"truncated": 0, "dropped": 0}
    for r, kind in zip(records, kinds):
        if kind == "doc":
            toks = ids[j].tolist() + [tok.eos_id]
            j += 1
            ex = []
            for s in range(0, len(toks) - 1, seq_len):
                piece = toks[s:s + seq_len + 1]
                if len(piece) - 1 >= min_tokens:
                    ex.append(Example(piece, 0, r.domain, r.group))
            out.append(ex)
        else:
            p, resp = ids[j].tolist(), ids[j + 1].tolist() + tok.response_suffix()
            j += 2
            made = _pair(p, resp, seq_len, overlong, f"record {r.group!r}")
            if made is None:
                stats["dropped"] += 1
                out.append([])
                continue
            stats["truncated"] += int(len(p) + len(resp) > seq_len + 1)
            full, plen = made
            out.append([Example(full, plen - 1, r.domain, r.group, plen)])
    return out, stats


def _split_groups(records: list[TextRecord], heldout_fraction: float, seed: int,
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


def _take(items: list, k: int, rng: random.Random) -> tuple[list, list]:
    items = list(items)
    rng.shuffle(items)
    return items[:k], items[k:]


def _corrupt(pool: list[Example], noise, dup, tok: TextTokenizer, seq_len: int, is_pairs: bool, rng: random.Random):
    n = len(pool)
    noisy = [False] * n
    if noise and float(noise.get("rate", 0)) > 0:
        kind, rate = str(noise.get("kind", "shuffle")), float(noise["rate"])
        if not 0 <= rate <= 1:
            raise ConfigError(f"scenario.noise.rate={rate} must be in [0, 1]")
        chosen = rng.sample(range(n), int(round(rate * n)))
        if kind == "shuffle":
            for i in chosen:
                e = pool[i]
                head, tail = e.ids[:e.n_masked + 1], e.ids[e.n_masked + 1:]
                rng.shuffle(tail)
                pool[i] = Example(head + tail, e.n_masked, e.domain, e.group, e.prompt_len)
                noisy[i] = True
        elif kind == "swap_response":
            if not is_pairs:
                raise ConfigError("scenario.noise.kind=swap_response needs instruction pairs (dataset=instructions "
                                  "or a textfile with prompt/response); use kind=shuffle for documents")
            responses = [pool[i].ids[pool[i].prompt_len:] for i in chosen]
            rotated = responses[1:] + responses[:1]  # a derangement of the chosen responses
            for i, r in zip(chosen, rotated):
                e = pool[i]
                if r == e.ids[e.prompt_len:]:
                    continue  # identical response text: not corrupted
                ids, plen = _pair(e.ids[:e.prompt_len], r, seq_len, "truncate", "")
                pool[i] = Example(ids, plen - 1, e.domain, e.group, plen)
                noisy[i] = True
        else:
            raise ConfigError(f"scenario.noise.kind={kind!r} (choose from: shuffle, swap_response)")
    is_dup = [False] * n
    if dup and float(dup.get("rate", 0)) > 0:
        rate = float(dup["rate"])
        if not 0 <= rate < 1:
            raise ConfigError(f"scenario.duplication.rate={rate} must be in [0, 1)")
        slots = rng.sample(range(n), int(round(rate * n)))
        slot_set = set(slots)
        sources = [i for i in range(n) if i not in slot_set]
        for i in slots:
            s = rng.choice(sources)
            pool[i], noisy[i], is_dup[i] = pool[s], noisy[s], True
    return pool, noisy, is_dup


def _choices(items: list[Example], n_choices: int, seq_len: int, rng: random.Random, pad_id: int):
    """Each item's correct continuation/response plus ``n_choices − 1`` from others of its domain."""
    if n_choices <= 1 or not items:
        return None, None, None
    by_dom: dict[str, list[int]] = {}
    for i, e in enumerate(items):
        by_dom.setdefault(e.domain, []).append(i)
    cx, cy, ans = [], [], []
    for i, e in enumerate(items):
        others = [j for j in by_dom[e.domain] if items[j].ids[e.n_masked + 1:] != e.ids[e.n_masked + 1:]]
        if len(others) < n_choices - 1:
            others = [j for j in range(len(items)) if items[j].ids[items[j].n_masked + 1:] != e.ids[e.n_masked + 1:]]
        picks = rng.sample(others, min(n_choices - 1, len(others)))
        while len(picks) < n_choices - 1:
            picks.append(picks[-1] if picks else i)
        head = e.ids[:e.n_masked + 1]
        cands = [e.ids[e.n_masked + 1:]] + [items[j].ids[items[j].n_masked + 1:] for j in picks]
        order = list(range(n_choices))
        rng.shuffle(order)
        rows = []
        for c in order:
            body = (head + cands[c])[-(seq_len + 1):]
            rows.append(Example(body, len(body) - len(cands[c]) - 1, e.domain, e.group))
        x, y = _pad_rows(rows, seq_len, pad_id)
        cx.append(x)
        cy.append(y)
        ans.append(order.index(0))
    return torch.stack(cx), torch.stack(cy), torch.tensor(ans)


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


def _draw_pool(cand_t: list, cand_o: list, pool_size, target_share, rng: random.Random,
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
        return _take(everything, n, rng)[0]
    share = float(target_share)
    if not 0 <= share <= 1:
        raise ConfigError(f"scenario.target_share={share} must be in [0, 1]")
    n_t = int(round(share * n))
    if n_t > len(cand_t) or n - n_t > len(cand_o):
        raise ConfigError(f"scenario.pool_size={n} with target_share={share} needs {n_t} target-domain and "
                          f"{n - n_t} other examples; only {len(cand_t)} and {len(cand_o)} exist")
    pool = _take(cand_t, n_t, rng)[0] + _take(cand_o, n - n_t, rng)[0]
    rng.shuffle(pool)
    return pool


def _per_domain(items: list[Example], domains: list[str], per: int | None, rng: random.Random) -> list[Example]:
    out = []
    for d in domains:
        ex = [e for e in items if e.domain == d]
        rng.shuffle(ex)
        out += ex[:int(per)] if per else ex
    return out
