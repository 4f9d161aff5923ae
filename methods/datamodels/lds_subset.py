"""``lds_subset``: one retraining of the linear datamodeling score (LDS) check (Park et al., *TRAK*,
ICML 2023, §2): train on seeded random subset number ``subset`` of the pool (``⌊β·N_pool⌋``
examples, β = ``budget.fraction``; TRAK uses β = 0.5) and record, per target example ``t``,

- the datamodel's prediction ``g_t(S) = Σ_{i∈S} τ_{t,i}`` (``methods/datamodels/trak.py``; the same
  cached proxies and features as ``dsdm`` with the same TRAK settings): ``lds_predicted``;
- the trained model's actual output (margin / LM log-odds) and loss: ``lds_actual_output``,
  ``lds_actual_loss`` (``Method.after_training``, after the final evaluation).

``K × R`` such runs are one ordinary sweep (``method=lds_subset method.subset=0,…,K-1
method.retrain=0,…,R-1``, same seed so the scenario and the datamodel are the same), so they
parallelise and resume like any other.  Retraining ``r`` of a subset is the model trained on it
from another draw of the initialisation and another batch order (``r = 0``: the runner's own; ``r >
0``: a seeded within-tensor permutation of the initial trainable weights, as the TRAK proxies, and a
reseeded batch order and torch RNG).  TRAK (§2, App. C) and DsDm evaluate the LDS against the
*average* output of several such retrainings: one retraining's output carries training noise that
no datamodel of the subset can predict, which biases the LDS low.  ``analysis/lds.py`` averages
the retrainings of each subset and reports ``LDS = mean_t Spearman_k(g_t(S_k), mean_r
output_t(S_k, r))`` (and the loss version) in ``selbench-report``.

``lam_ablation``: further TRAK ridges ``λ`` whose predictions are recorded too
(``lds_predicted_by_lam``), solved from the same cached features, so one sweep's retrainings judge
every ``λ`` (sweeping ``method.lam`` instead would retrain for each).  The target set is not
trained on (it is what the datamodel predicts).  docs/methods/dsdm.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from selbench.core.errors import ConfigError
from selbench.core.modes import eval_mode
from selbench.methods.base import RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.datamodels.trak import TrakConfig, check_trak_config, datamodel, permuted_init


@dataclass
class LdsSubsetConfig(TrakConfig):
    subset: int = 0          # which seeded random subset (0 … K−1) this run trains on
    retrain: int = 0         # which retraining of that subset (0 … R−1): its own init and batch order
    lam_ablation: list[float] = field(default_factory=list)   # further λ whose predictions are recorded


def subset_indices(n_pool: int, k: int, subset: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1_000_003 * int(subset) + 7_919 * int(seed) + 12_345)
    return torch.randperm(n_pool, generator=g)[:k].sort().values


def lam_key(lam: float) -> str:
    """The JSON key of a ridge in ``lds_predicted_by_lam`` (``repr`` of the float: exact, round-trips)."""
    return repr(float(lam))


@torch.no_grad()
def reinit_for_retraining(ctx: RunContext, retrain: int) -> None:
    """Retraining ``retrain > 0``: a fresh draw of the trainable weights' i.i.d. initialisation (a seeded
    permutation within each tensor; frozen weights, e.g. a LoRA base, are kept) and a new batch order
    and torch RNG stream (dropout).  Called in ``select``, before the loop builds its sampler from
    ``ctx.generator``; a resumed run restores all three from its checkpoint."""
    seed = 15_485_863 * int(retrain) + 7_919 * int(ctx.seed) + 3
    trainable = {n for n, p in ctx.model.named_parameters() if p.requires_grad}
    state = {k: v for k, v in ctx.model.state_dict().items() if k in trainable}
    ctx.model.load_state_dict(permuted_init(state, seed), strict=False)
    ctx.generator.manual_seed(seed + 1)
    torch.manual_seed(seed + 2)


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
        if int(cfg.retrain) < 0:
            raise ConfigError(f"method.retrain={cfg.retrain} must be >= 0 (the index of the retraining)")
        bad = [lam for lam in cfg.lam_ablation if not float(lam) >= 0]
        if bad:
            raise ConfigError(f"method.lam_ablation has {bad[0]}: every ridge must be >= 0")

    def select(self, ctx: RunContext) -> Selection:
        cfg = self.cfg
        idx = subset_indices(ctx.n_pool, ctx.k_budget, int(cfg.subset), int(ctx.seed))
        info = {"lds_subset": int(cfg.subset), "lds_retrain": int(cfg.retrain), "n_target": len(ctx.target)}
        if len(ctx.target):
            dm = datamodel(ctx, cfg, extra_lams=[float(v) for v in cfg.lam_ablation])  # restores the model
            info.update(dm["info"])
            info["lds_predicted"] = dm["scores"][idx].sum(0).tolist()
            info["lds_predicted_by_lam"] = {lam_key(lam): s[idx].sum(0).tolist()
                                            for lam, s in dm["scores_by_lam"].items()}
        else:
            ctx.warn("lds_subset: empty target set; nothing to predict")
        if int(cfg.retrain):
            reinit_for_retraining(ctx, int(cfg.retrain))
        return Selection(idx, target_repeats=0, info=info)

    def after_training(self, ctx: RunContext) -> dict:
        if not len(ctx.target):
            return {}
        out, loss = target_values(ctx.adapter, ctx.target)
        return {"lds_actual_output": out, "lds_actual_loss": loss}
