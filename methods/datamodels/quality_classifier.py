"""``classifier``: a fastText-style quality classifier toward a reference set, top-k (the
"classifier" baseline of DsDm, Engstrom et al. 2024, after the GPT-3 / PaLM quality filters
(Brown et al. 2020): a linear classifier on hashed n-grams separating "high-quality" reference
text from the raw pool).

Features: a document's hashed word 1…n-gram frequencies (counts / total, as fastText averages
its n-gram embeddings; ``methods/datamodels/text_features.py``).  Model: logistic regression
``P(reference | x) = σ(wᵀx + b)``, the reference set (here the target set: the only
"high-quality" text a method sees) as positives and the pool as negatives, classes weighted
equally, L2 penalty ``l2`` (``‖w‖²``), full-batch L-BFGS.  Score = the logit; top-k.

Departures: logistic regression instead of fastText's low-rank softmax (for two classes a
rank-1 linear model is the same family); top-k instead of GPT-3's Pareto-sampled keep rule
(the issue's protocol).  Text only.  docs/methods/dsdm.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.datamodels.text_features import hashed_ngrams, row_normalise, texts_of


@dataclass
class ClassifierConfig(MethodConfig):
    buckets: int = 2 ** 16     # hashed n-gram bins (fastText: 2M; 65k is ample for pools of this size)
    ngrams: int = 2            # word 1…n-grams (fastText quality filters: uni + bigrams)
    l2: float = 1e-4           # L2 penalty on the weights
    iters: int = 100           # L-BFGS iterations
    include_target: bool = True


def fit_logistic(X: torch.Tensor, y: torch.Tensor, l2: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced L2 logistic regression on sparse ``X``; returns ``(w, b)``."""
    w = torch.zeros(X.shape[1], 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos = float(y.sum())
    sw = torch.where(y > 0, 0.5 / max(pos, 1.0), 0.5 / max(len(y) - pos, 1.0))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=int(iters), line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = torch.sparse.mm(X, w)[:, 0] + b
        loss = (sw * torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")).sum() \
            + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


@register_method("classifier", config=ClassifierConfig)
class QualityClassifier(Selector):
    budget_use = "hard"
    modalities = ("language",)

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.buckets) < 2 or int(cfg.ngrams) < 1 or int(cfg.iters) < 1:
            raise ConfigError(f"method.buckets={cfg.buckets} (>= 2), method.ngrams={cfg.ngrams} (>= 1) and "
                              f"method.iters={cfg.iters} (>= 1) out of range")
        if float(cfg.l2) < 0:
            raise ConfigError(f"method.l2={cfg.l2} must be >= 0")

    def select(self, ctx: RunContext) -> Selection:
        b, n = int(self.cfg.buckets), int(self.cfg.ngrams)
        P = row_normalise(hashed_ngrams(texts_of(ctx, ctx.pool), b, n))
        if len(ctx.target) == 0:
            ctx.warn("classifier: empty reference (target) set; random top-k")
            scores = torch.rand(ctx.n_pool, generator=ctx.generator)
        else:
            R = row_normalise(hashed_ngrams(texts_of(ctx, ctx.target), b, n))
            X = torch.cat([R, P]).coalesce()
            y = torch.cat([torch.ones(len(ctx.target)), torch.zeros(ctx.n_pool)])
            w, bias = fit_logistic(X, y, float(self.cfg.l2), int(self.cfg.iters))
            scores = torch.sparse.mm(P, w)[:, 0] + bias
        idx = scores.topk(ctx.k_budget).indices
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=scores.float(),
                         info={"score_selected_mean": float(scores[idx].mean()), "score_pool_mean": float(scores.mean())})
