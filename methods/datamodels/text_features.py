"""Text features shared by the text-only selectors (``dsir``, ``classifier``): the examples as text,
and hashed word n-gram counts (the feature space of DSIR and of fastText-style quality filters).

- ``texts_of(ctx, split)``: each example's input decoded with the scenario's tokenizer
  (``ctx.extra["tokenizer"]``; padding dropped).  Without a tokenizer the token ids themselves
  are the "words".
- ``hashed_ngrams(texts, buckets, n)``: a sparse ``[N, buckets]`` count matrix of the lower-cased
  word 1…n-grams, each hashed with a stable hash (crc32, not Python's salted ``hash``) into
  ``buckets`` bins, as DSIR (Xie et al. 2023) does with 10,000 bins and uni+bigrams.
"""
from __future__ import annotations

import re
import zlib

import torch
from torch import Tensor

from selbench.core.data import Split
from selbench.core.errors import ConfigError

_WORD = re.compile(r"\w+|[^\w\s]")


def texts_of(ctx, split: Split) -> list[str]:
    tok = (ctx.extra or {}).get("tokenizer")
    x = split.x
    if x.dim() != 2 or x.is_floating_point():
        raise ConfigError("text features need token-id inputs (a language scenario)")
    pad = getattr(tok, "pad_id", None)
    out = []
    for row in x.tolist():
        ids = [i for i in row if i != pad] if pad is not None else row
        out.append(tok.decode(ids) if tok is not None else " ".join(map(str, ids)))
    return out


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _bucket(gram: str, buckets: int) -> int:
    return zlib.crc32(gram.encode("utf-8")) % buckets


def hashed_ngrams(texts: list[str], buckets: int = 10_000, n: int = 2) -> Tensor:
    """Sparse (COO, coalesced) float32 ``[len(texts), buckets]`` hashed n-gram counts."""
    rows, cols = [], []
    for r, t in enumerate(texts):
        w = words(t)
        for k in range(1, n + 1):
            for j in range(len(w) - k + 1):
                rows.append(r)
                cols.append(_bucket(" ".join(w[j:j + k]), buckets))
    idx = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    return torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1]), (len(texts), buckets), check_invariants=False).coalesce()


def row_normalise(X: Tensor) -> Tensor:
    """Each row divided by its total count (a document's n-gram frequencies; fastText averages)."""
    tot = torch.sparse.sum(X, dim=1).to_dense().clamp_min(1.0)
    i = X.indices()
    return torch.sparse_coo_tensor(i, X.values() / tot[i[0]], X.shape, check_invariants=False).coalesce()
