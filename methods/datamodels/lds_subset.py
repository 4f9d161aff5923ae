"""``lds_subset``: one retraining of the linear datamodeling score (LDS) check (Park et al., *TRAK*,
ICML 2023, §2): train on seeded random subset number ``subset`` of the pool (``⌊β·N_pool⌋``
examples, β = ``budget.fraction``; TRAK uses β = 0.5) and record, per target example ``t``,

- the datamodel's prediction ``g_t(S) = Σ_{i∈S} τ_{t,i}`` (``methods/datamodels/trak.py``; the same
  cached proxies and features as ``dsdm`` with the same TRAK settings): ``lds_predicted``;
- the trained model's actual output (margin / LM log-odds) and loss: ``lds_actual_output``,
  ``lds_actual_loss`` (``Method.after_training``, after the final evaluation).

``K`` such runs are one ordinary sweep (``method=lds_subset method.subset=0,1,…,K-1``, same
seed so the scenario is the same), so they parallelise and resume like any other;
``analysis/lds.py`` reads the records and reports ``LDS = mean_t Spearman_k(g_t(S_k),
output_t(S_k))`` (and the loss version) in ``selbench-report``.  The target set is not trained
on (it is what the datamodel predicts).  docs/methods/dsdm.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selbench.core.errors import ConfigError
from selbench.core.modes import eval_mode
from selbench.methods.base import RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.datamodels.trak import TrakConfig, check_trak_config, datamodel


@dataclass
class LdsSubsetConfig(TrakConfig):
    subset: int = 0          # which seeded random subset (0 … K−1) this run trains on


def subset_indices(n_pool: int, k: int, subset: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1_000_003 * int(subset) + 7_919 * int(seed) + 12_345)
    return torch.randperm(n_pool, generator=g)[:k].sort().values


@torch.no_grad()
def target_values(adapter, target, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per target example: (output, loss) of the current model."""
    outs, losses = [], []
    with eval_mode(adapter.model):
        for i in range(0, len(target), chunk):
            x, y = target.x[i:i + chunk], target.y[i:i + chunk]
            outs.append(adapter.per_example_output(x, y).float().cpu())
            losses.append(adapter.per_example_loss(x, y).float().cpu())
    cat = (lambda p: torch.cat(p).tolist() if p else [])
    return cat(outs), cat(losses)


@register_method("lds_subset", config=LdsSubsetConfig)
class LdsSubset(Selector):
    budget_use = "hard"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_trak_config(cfg)
        if int(cfg.subset) < 0:
            raise ConfigError(f"method.subset={cfg.subset} must be >= 0 (the index of the random subset)")

    def select(self, ctx: RunContext) -> Selection:
        idx = subset_indices(ctx.n_pool, ctx.k_budget, int(self.cfg.subset), int(ctx.seed))
        info = {"lds_subset": int(self.cfg.subset), "n_target": len(ctx.target)}
        if len(ctx.target):
            dm = datamodel(ctx, self.cfg)
            info.update(dm["info"])
            info["lds_predicted"] = dm["scores"][idx].sum(0).tolist()
        else:
            ctx.warn("lds_subset: empty target set; nothing to predict")
        return Selection(idx, target_repeats=0, info=info)

    def after_training(self, ctx: RunContext) -> dict:
        if not len(ctx.target):
            return {}
        out, loss = target_values(ctx.adapter, ctx.target)
        return {"lds_actual_output": out, "lds_actual_loss": loss}
