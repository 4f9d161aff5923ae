"""ClassAct: learnability scores from proxy models trained on part of the pool, the
"ClassAct" baseline of the BADS paper (Xu et al., NeurIPS 2024), which names it without
defining it beyond "learnability". Docs: ``docs/methods/baselines.md`` (ClassAct).

**Score.**  The pool is split into ``F`` random folds. For each fold ``f`` a proxy is
trained (in place from the run's initialisation, ``score_filter.train_in_place``) on the
*other* folds for ``T`` steps; an early checkpoint is taken after ``T_e = ⌈early_fraction·T⌉``
steps. Each example ``z`` of fold ``f`` — which its proxy never trained on — gets

    learnability(z) = l(z; θ_{T_e}) − l(z; θ_T),

the drop of its loss between the early and the late checkpoint: large when what the
proxy learns from the rest of the pool transfers to ``z`` (a learnable, typical example),
small or negative when it does not (a wrong label: the proxy grows confident in the true
class, so the noisy label's loss rises; an off-distribution example). The top
``⌊β·N_pool⌋`` are selected, plus the target set (``include_target``, as ``random``).

Knobs derived from the problem: ``T`` = the run's own steps (default), or
``⌈proxy_epochs · |pool \\ fold| / B⌉`` (B = the runner's batch) capped at them, so a proxy
never costs more updates than the run; the runner's optimiser config. (Measured on
digits at 50% noise: proxies of 2 epochs (10 steps) gave a score AUC clean-vs-noisy of
0.61, proxies as long as the 60-step run 0.95.)

Departures: the paper gives no equation; this is the early-minus-late loss drop the
benchmark's method spec asks for. Scoring each fold with the proxy that did *not* train
on it (cross-fitting) is our choice: a proxy scoring its own training examples rewards
memorisation, which for a label-noise pool ranks memorised wrong labels high. Proxies
(their early and late checkpoints) and the scores are cached through ``ctx.cache`` per
fold, keyed by the initial model, the data, the fold split and the knobs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.grads import data_fingerprint, model_state_hash
from selbench.core.modes import eval_mode
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.common.proxy import epochs_to_steps, optimizer_key, restore, snapshot, train_in_place


@dataclass
class ClassActConfig(MethodConfig):
    #: pool folds; the proxy of fold f trains on the others and scores f (≥ 2)
    folds: int = 2
    #: passes of each proxy over its training folds (capped at the run's steps); null = as many
    #: steps as the run itself (a proxy as trained as the model it stands in for)
    proxy_epochs: Optional[float] = None
    #: the early checkpoint, as a fraction of the proxy's steps (0 < x < 1)
    early_fraction: float = 0.1
    #: train on the selection plus the target set (the BADS paper's Random_Select convention)
    include_target: bool = True


@register_method("classact", config=ClassActConfig)
class ClassAct(Selector):
    """Learnability top-β (module docstring)."""

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if cfg.folds is None or cfg.folds < 2:
            raise ConfigError(f"method.folds={cfg.folds!r} must be an integer ≥ 2 (each fold is scored by a "
                              f"proxy trained on the others)")
        if cfg.proxy_epochs is not None and not cfg.proxy_epochs > 0:
            raise ConfigError(f"method.proxy_epochs={cfg.proxy_epochs!r} must be > 0 (or null: the run's steps)")
        if cfg.early_fraction is None or not 0 < cfg.early_fraction < 1:
            raise ConfigError(f"method.early_fraction={cfg.early_fraction!r} must be in (0, 1)")

    def learnability(self, ctx: RunContext) -> tuple[Tensor, dict]:
        """``[N_pool]`` learnability scores and info for the record."""
        cfg = self.cfg
        n, folds = ctx.n_pool, int(cfg.folds)
        if n < folds:
            raise ConfigError(f"method.folds={folds} exceeds the pool size {n}")
        gen = torch.Generator().manual_seed(104_729 * int(ctx.seed) + 11)
        fold_of = torch.randperm(n, generator=gen) % folds
        batch = ctx.examples.train
        base = {"model": model_state_hash(ctx.model), "pool": data_fingerprint(ctx.pool.x, ctx.pool.y),
                "folds": data_fingerprint(fold_of), "epochs": cfg.proxy_epochs,
                "early": float(cfg.early_fraction), "batch": batch, "cap": ctx.steps, "optimizer": optimizer_key(ctx),
                "seed": ctx.seed}
        scores = torch.zeros(n, dtype=torch.float64)
        steps_used = []
        for f in range(folds):
            held = (fold_of == f).nonzero().flatten()
            train = (fold_of != f).nonzero().flatten()
            steps = ctx.steps if cfg.proxy_epochs is None else \
                epochs_to_steps(cfg.proxy_epochs, len(train), batch, ctx.steps)
            early = min(steps - 1, max(1, math.ceil(cfg.early_fraction * steps))) if steps > 1 else 0
            steps_used.append(steps)
            entry = ctx.cache.get_or_compute("classact_proxy", {**base, "fold": f},
                                             lambda: self._proxy(ctx, train, held, steps, early, batch, f)) \
                if ctx.cache is not None else self._proxy(ctx, train, held, steps, early, batch, f)
            scores[held] = entry["early_loss"].double() - entry["late_loss"].double()
        if not torch.isfinite(scores).all():
            ctx.warn("classact: non-finite learnability scores (set to the lowest); a proxy may have diverged")
            scores = torch.nan_to_num(scores, nan=-1e30, posinf=-1e30, neginf=-1e30)
        return scores, {"proxy_steps": steps_used, "folds": folds}

    @staticmethod
    def _proxy(ctx, train: Tensor, held: Tensor, steps: int, early: int, batch: int, fold: int) -> dict:
        """Train fold ``fold``'s proxy; its early / late checkpoints (trainable state) and the held-out losses."""
        saved = snapshot(ctx.model)
        gen = torch.Generator().manual_seed(7_919 * int(ctx.seed) + 17 * fold + 5)
        held_split = ctx.pool.subset(held)
        c = int(getattr(ctx.adapter, "eval_batch_size", 256))  # a pretrained LM's logits are large
        out: dict = {}

        def losses() -> Tensor:
            with torch.no_grad(), eval_mode(ctx.model):
                parts = [ctx.adapter.per_example_loss(held_split.x[i:i + c], held_split.y[i:i + c]).double().cpu()
                         for i in range(0, len(held_split), c)]
            return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

        def on_step(s: int) -> None:
            if s == early:
                out["early_loss"], out["early_state"] = losses(), snapshot(ctx.model)

        try:
            if early == 0:
                out["early_loss"], out["early_state"] = losses(), snapshot(ctx.model)
            train_in_place(ctx, ctx.pool.subset(train), steps, batch, gen, on_step)
            out["late_loss"], out["late_state"] = losses(), snapshot(ctx.model)
        finally:
            restore(ctx.model, saved)
        return out

    def select(self, ctx: RunContext) -> Selection:
        scores, info = self.learnability(ctx)
        idx = torch.topk(scores, ctx.k_budget).indices.sort().values
        return Selection(idx, target_repeats=int(self.cfg.include_target), scores=scores.float(), info=info)
