"""Text records → token examples → padded ``[seq_len]`` rows.

Examples are ``[seq_len]`` token rows: ``x`` the inputs, ``y`` the next-token
targets with ``-100`` (``IGNORE``) wherever the loss does not count (prompt tokens of an
instruction pair, the context of a continuation task, right padding).  Documents are cut
into ``seq_len``-token chunks; an instruction pair is one example, an over-long one
truncated, dropped or refused (``scenario.overlong``, see ``datasets.text.scenarios``).
Multiple-choice variants (:func:`choice_sets`) put each candidate response/continuation
after the same prompt/context.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.core.errors import DataError
from selbench.datasets.text.records import TextRecord
from selbench.datasets.text.tokenizer import TextTokenizer, encode_cached

IGNORE = -100


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


def pad_rows(examples: list[Example], seq_len: int, pad_id: int) -> tuple[Tensor, Tensor]:
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


def pair_ids(p: list[int], r: list[int], seq_len: int, overlong: str, where: str) -> tuple[list[int], int] | None:
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


def encode_records(records: list[TextRecord], tok: TextTokenizer, seq_len: int, overlong: str,
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
            made = pair_ids(p, resp, seq_len, overlong, f"record {r.group!r}")
            if made is None:
                stats["dropped"] += 1
                out.append([])
                continue
            stats["truncated"] += int(len(p) + len(resp) > seq_len + 1)
            full, plen = made
            out.append([Example(full, plen - 1, r.domain, r.group, plen)])
    return out, stats


def choice_sets(items: list[Example], n_choices: int, seq_len: int, rng: random.Random, pad_id: int):
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
        x, y = pad_rows(rows, seq_len, pad_id)
        cx.append(x)
        cy.append(y)
        ans.append(order.index(0))
    return torch.stack(cx), torch.stack(cy), torch.tensor(ans)
