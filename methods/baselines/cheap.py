"""The cheap baselines every comparison needs (BADS paper's non-DPS baselines).

| name               | training set                                   | paper name     |
|--------------------|------------------------------------------------|----------------|
| ``erm``            | pool ∪ target                                  | Mixing         |
| ``pool_only``      | pool                                           | –              |
| ``target_only``    | target                                         | Meta_Only      |
| ``random``         | random ⌊β·N_pool⌋ of the pool (+ target)       | Random_Select  |
| ``duplicate_target`` | pool + target repeated to about |pool|       | Duplicate_Meta |

``erm``, ``pool_only``, ``target_only`` and ``duplicate_target`` ignore the budget
(``budget_use = "none"``): the record holds the pool fraction each one used, and tables
never rank them "at" a budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method


@register_method("erm")
class ERM(Selector):
    budget_use = "none"

    def select(self, ctx: RunContext) -> Selection:
        return Selection(torch.arange(ctx.n_pool), target_repeats=1)


@register_method("pool_only")
class PoolOnly(Selector):
    budget_use = "none"

    def select(self, ctx: RunContext) -> Selection:
        return Selection(torch.arange(ctx.n_pool), target_repeats=0)


@register_method("target_only")
class TargetOnly(Selector):
    budget_use = "none"

    def select(self, ctx: RunContext) -> Selection:
        return Selection(torch.zeros(0, dtype=torch.long), target_repeats=1)


@dataclass
class RandomConfig(MethodConfig):
    include_target: bool = True  # Random_Select in the BADS paper trains on target + random pool subset


@register_method("random", config=RandomConfig)
class RandomSubset(Selector):
    def select(self, ctx: RunContext) -> Selection:
        idx = torch.randperm(ctx.n_pool, generator=ctx.generator)[: ctx.k_budget]
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target))


@register_method("duplicate_target")
class DuplicateTarget(Selector):
    budget_use = "none"

    def select(self, ctx: RunContext) -> Selection:
        repeats = max(1, round(ctx.n_pool / max(len(ctx.target), 1)))
        return Selection(torch.arange(ctx.n_pool), target_repeats=repeats)
