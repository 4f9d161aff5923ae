"""CDS: contrastive data selection (Wang, Watanabe, Hughes, Chelba, Hashimoto, *Denoising
Neural Machine Translation Training with Trusted Data and Online Data Selection*, WMT 2018),
the "CDS" baseline of the BADS paper. Docs: ``docs/methods/baselines.md`` (CDS).

**Score.**  A *base* model ``θ_base`` is trained on the (noisy / mixed) pool, then
*adapted* on the small trusted set: ``θ_adapt`` = ``θ_base`` fine-tuned on the target set.
Each pool example ``z = (x, y)`` gets the log-likelihood difference

    s(z) = log p(y | x; θ_adapt) − log p(y | x; θ_base) = l(z; θ_base) − l(z; θ_adapt),

with ``l`` the per-example loss of the task: cross-entropy of the (possibly noisy) class
label for vision, mean token NLL (i.e. per-token log-likelihood, Wang et al.'s length
normalisation) for text. An example the trusted data makes *more* likely looks like the
target distribution.

**Online selection.**  Training draws pool batches and keeps the top fraction by ``s``
(``methods/bads/score_filter.py``: ``L = ⌈B/β⌉`` scored, the top ``k`` kept; ``k`` =
the runner's batch under equal compute (``ctx.examples``, the default), so every step trains
on as many examples as every other method's).

Knobs (derived from the problem, not fixed counts): the base model trains for
``base_epochs`` passes over the pool and the adaptation for ``adapt_epochs`` passes over
the target set, each capped at the run's steps (a proxy never takes more updates than
the run it serves), with the runner's optimiser config and batch sizes.

Departures: Wang et al. anneal the kept fraction over training (a curriculum from the
whole batch down to the top ``ρ``); here the fraction is β throughout, as the BADS
paper's minibatch-level CDS baseline. Their base model is a separately trained NMT
system; here both proxies are the run's model trained in place from the run's
initialisation and restored afterwards (``score_filter.snapshot``). Scores are computed
once (the proxies are fixed, as in the paper) and cached through ``ctx.cache`` by the
initial model, data and knobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.grads import data_fingerprint, model_state_hash
from selbench.methods.base import MethodConfig, RunContext, score_pool
from selbench.methods.registry import register_method
from selbench.methods.bads.score_filter import ScoreFilter
from selbench.methods.common.proxy import epochs_to_steps, optimizer_key, restore, snapshot, train_in_place


@dataclass
class CDSConfig(MethodConfig):
    #: passes of the base model over the pool (capped at the run's steps)
    base_epochs: float = 1.0
    #: passes of the adaptation over the target set, starting from the base model (capped likewise)
    adapt_epochs: float = 5.0
    #: size L of the scored batch; null = ⌈batch_size / β⌉ (so β·L = batch_size), capped
    large_batch: Optional[int] = None
    max_large_batch: int = 4096


@register_method("cds", config=CDSConfig)
class CDS(ScoreFilter):
    """Contrastive data selection (module docstring)."""

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        for key in ("base_epochs", "adapt_epochs"):
            v = getattr(cfg, key)
            if v is None or not v > 0:
                raise ConfigError(f"method.{key}={v!r} must be > 0")
        cls.check_batch_config(cfg, run_cfg)

    def pool_scores(self, ctx: RunContext) -> Tensor:
        cfg = self.cfg
        base_steps = epochs_to_steps(cfg.base_epochs, ctx.n_pool, ctx.examples.train, ctx.steps)
        adapt_steps = epochs_to_steps(cfg.adapt_epochs, len(ctx.target), ctx.target_batch_size, ctx.steps)
        key = {"model": model_state_hash(ctx.model), "pool": data_fingerprint(ctx.pool.x, ctx.pool.y),
               "target": data_fingerprint(ctx.target.x, ctx.target.y), "steps": [base_steps, adapt_steps],
               "batch": [ctx.examples.train, ctx.target_batch_size],
               "optimizer": optimizer_key(ctx), "seed": ctx.seed}

        chunk = int(getattr(ctx.adapter, "eval_batch_size", 256))  # a pretrained LM's logits are large

        def compute() -> dict:
            saved = snapshot(ctx.model)
            gen = torch.Generator().manual_seed(7919 * int(ctx.seed) + 3)
            try:
                train_in_place(ctx, ctx.pool, base_steps, ctx.examples.train, gen)
                base = score_pool(ctx, lambda x, y: ctx.adapter.per_example_loss(x, y), chunk)
                train_in_place(ctx, ctx.target, adapt_steps, ctx.target_batch_size, gen)
                adapted = score_pool(ctx, lambda x, y: ctx.adapter.per_example_loss(x, y), chunk)
            finally:
                restore(ctx.model, saved)
            return {"base_loss": base.double(), "adapted_loss": adapted.double()}

        out = ctx.cache.get_or_compute("cds_scores", key, compute) if ctx.cache is not None else compute()
        s = out["base_loss"] - out["adapted_loss"]
        if not torch.isfinite(s).all():
            ctx.warn("cds: non-finite scores (set to the lowest); a proxy may have diverged")
            s = torch.nan_to_num(s, nan=-torch.inf).clamp_min(float(s[torch.isfinite(s)].min()) if
                                                                  torch.isfinite(s).any() else 0.0)
        return s
