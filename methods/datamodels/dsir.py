"""DSIR (Xie, Santurkar, Ma, Liang, *Data Selection for Language Models via Importance
Resampling*, NeurIPS 2023): importance weights of pool examples towards the target text in a
hashed n-gram feature space, then resampling.

Bag-of-hashed-n-grams models of the target (``p``) and the raw pool (``q``), each a smoothed
multinomial over ``buckets`` bins: ``p_j ∝ α + Σ_{x∈target} c_{xj}`` (likewise ``q``);
the log importance weight of pool example ``i`` with counts ``c_i`` is
``log w_i = Σ_j c_{ij} (log p_j − log q_j)``.  Selection: sample ``k`` without replacement
with probability ∝ ``w_i`` by the Gumbel top-k trick (``top-k of log w_i + G_i``, ``G_i`` i.i.d.
Gumbel; ``gumbel=false`` takes the plain top-k).

Defaults are the paper's: word uni- and bigrams (lower-cased), 10,000 buckets.  Departure:
``α = 1`` pseudo-count smoothing (the paper's code adds a small constant as well); the "raw"
distribution is the pool itself.  Text only.  docs/methods/dsdm.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.datamodels.text_features import hashed_ngrams, texts_of


@dataclass
class DsirConfig(MethodConfig):
    buckets: int = 10_000      # hashed n-gram bins (paper: 10,000)
    ngrams: int = 2            # word 1…n-grams (paper: uni + bigrams)
    smoothing: float = 1.0     # pseudo-count α per bin
    gumbel: bool = True        # importance *resampling* (Gumbel top-k); false = deterministic top-k
    include_target: bool = True


def log_importance(pool_counts: torch.Tensor, target_counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log w_i = Σ_j c_ij (log p_j − log q_j)`` with α-smoothed multinomials ``p`` (target), ``q`` (pool)."""
    def logprob(C):
        tot = torch.sparse.sum(C, dim=0).to_dense().double() + alpha
        return (tot / tot.sum()).log()

    ratio = (logprob(target_counts) - logprob(pool_counts)).float()
    return torch.sparse.mm(pool_counts, ratio[:, None])[:, 0].double()


@register_method("dsir", config=DsirConfig)
class Dsir(Selector):
    budget_use = "hard"
    modalities = ("language",)

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.buckets) < 2 or int(cfg.ngrams) < 1:
            raise ConfigError(f"method.buckets={cfg.buckets} must be >= 2 and method.ngrams={cfg.ngrams} >= 1")
        if float(cfg.smoothing) <= 0:
            raise ConfigError(f"method.smoothing={cfg.smoothing} must be > 0")

    def select(self, ctx: RunContext) -> Selection:
        b, n = int(self.cfg.buckets), int(self.cfg.ngrams)
        P = hashed_ngrams(texts_of(ctx, ctx.pool), b, n)
        if len(ctx.target) == 0:
            ctx.warn("dsir: empty target set; importance weights are uniform")
            logw = torch.zeros(ctx.n_pool, dtype=torch.float64)
        else:
            logw = log_importance(P, hashed_ngrams(texts_of(ctx, ctx.target), b, n), float(self.cfg.smoothing))
        key = logw
        if self.cfg.gumbel:
            u = torch.rand(ctx.n_pool, generator=ctx.generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            key = logw - torch.log(-torch.log(u))
        idx = key.topk(ctx.k_budget).indices
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=logw.float(),
                         info={"log_weight_selected_mean": float(logw[idx].mean()),
                               "log_weight_pool_mean": float(logw.mean())})
