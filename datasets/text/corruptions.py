"""Pool corruptions of a language scenario (``scenario.noise``, ``scenario.duplication``):
shuffled loss-bearing tokens, swapped responses, exact duplicates — with the ground truth of
which pool examples were hit."""
from __future__ import annotations

import random

from selbench.core.errors import ConfigError
from selbench.datasets.text.examples import Example, pair_ids
from selbench.datasets.text.tokenizer import TextTokenizer


def corrupt_pool(pool: list[Example], noise, dup, tok: TextTokenizer, seq_len: int, is_pairs: bool, rng: random.Random):
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
                ids, plen = pair_ids(e.ids[:e.prompt_len], r, seq_len, "truncate", "")
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
