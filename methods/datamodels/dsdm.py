"""DsDm (Engstrom, Feldmann, Mądry, *DsDm: Model-Aware Dataset Selection with Datamodels*, ICML
2024): pick the size-k subset that minimises the target loss under a linear datamodel.

``S* = argmin_{|S|=k} E_{x∈target} l(x; A(S))`` with ``l(x; A(S)) ≈ −Σ_{i∈S} τ_{x,i} + b_x``
(a TRAK datamodel, ``methods/datamodels/trak.py``: ``τ_{x,i}`` is the estimated rise of target ``x``'s
output — margin / LM log-odds — from training on pool example ``i``).  The minimiser of a
linear model over size-k subsets is the top-k of ``s_i = Σ_x w_x τ_{x,i}``: the target weights
``w`` are equal per target *task* (``target_weighting=task``, the paper's mix of target tasks,
when the target set carries task ids) or per example.

Departures: the TRAK settings are scaled to the problem (``methods/datamodels/trak.py``); the selection
is trained on together with the target set (``include_target``, as ``random`` and the other
selectors here; the paper's target examples are not in its training data).
docs/methods/dsdm.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

import torch

from selbench.methods.base import RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.datamodels.trak import TrakConfig, check_trak_config, datamodel


class TargetWeighting(str, Enum):
    task = "task"         # each target task (domain) weighs the same
    example = "example"   # each target example weighs the same


@dataclass
class DsdmConfig(TrakConfig):
    target_weighting: TargetWeighting = TargetWeighting.task
    include_target: bool = True   # train on the selection + the target set (as `random`)


def target_weights(target, how: TargetWeighting) -> torch.Tensor:
    """``w`` over the target set, summing to 1."""
    n = len(target)
    dom = getattr(target, "domain", None)
    if how is TargetWeighting.example or dom is None or n == 0:
        return torch.full((n,), 1.0 / max(n, 1), dtype=torch.float64)
    dom = dom.long().cpu()
    _, inv, counts = torch.unique(dom, return_inverse=True, return_counts=True)
    return (1.0 / (len(counts) * counts[inv])).double()


@register_method("dsdm", config=DsdmConfig)
class DsDm(Selector):
    budget_use = "hard"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_trak_config(cfg)

    def select(self, ctx: RunContext) -> Selection:
        dm = datamodel(ctx, self.cfg)
        t0 = time.perf_counter()
        if len(ctx.target) == 0:
            ctx.warn("dsdm: empty target set; the datamodel has nothing to lower (random top-k)")
            scores = torch.rand(ctx.n_pool, generator=ctx.generator, dtype=torch.float64)
        else:
            scores = dm["scores"] @ target_weights(ctx.target, TargetWeighting(self.cfg.target_weighting))
        idx = scores.topk(ctx.k_budget).indices
        info = {**dm["info"], "select_seconds": time.perf_counter() - t0,
                "predicted_gain_selected": float(scores[idx].sum()), "predicted_gain_mean": float(scores.mean())}
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=scores.float(),
                         info=info)
