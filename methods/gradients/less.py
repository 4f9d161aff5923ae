"""LESS (Xia et al., ICML 2024) as its authors run it (princeton-nlp/LESS:
``less/data_selection/collect_grad_reps.py``, ``matching.py``, ``scripts/train/*.sh``).

1. **Warm-up** on a random ``proxy_fraction`` (5%) of the pool, LESS's linear schedule (warm-up
   over ``⌈warmup_ratio · steps⌉`` steps, then linear decay to 0, as HF's
   ``get_linear_schedule_with_warmup``), the runner's optimiser and learning rate, cut into
   ``checkpoints`` equal segments (the authors: 4 epochs, one checkpoint after each).
2. At each checkpoint ``c``: **pool gradients Adam-preconditioned** with that checkpoint's
   optimiser state, ``m' = β₁m + (1−β₁)g``, ``v' = β₂v + (1−β₂)g²``, ``g̃ = m' / √(v' + ε)``
   (no bias correction, ε inside the root: ``obtain_gradients_with_adam``); target gradients
   plain (``gradient_type sgd``); both projected with one seeded projection and unit-normalised.
3. ``s_c = P̂_c T̂_cᵀ`` (cosines, ``[N, M]``), summed over checkpoints with weights = each
   segment's **mean learning rate**, renormalised to sum 1 (their ``--checkpoint_weights``).
4. **Mean within each target task, max over tasks** (``matching.py``: ``reshape(N, n_subtasks,
   -1).mean(-1).max(-1)``); tasks are the target set's ``domain`` (one task when it has none).
5. Top-k of the pool by that score.

The elementwise preconditioner needs each example's full gradient, so ``projection`` is ``dense``
(the blockwise Gaussian of ``core/grads.py``; the authors' TRAK projector is Rademacher) or
``none``; the factored projection is refused with ``preconditioner=adam``.  Labelled variants:
``preconditioner=sgd`` (plain pool gradients: what ``adam`` falls back to, with one warning and
``preconditioned: false`` in the record, when the runner's optimiser keeps no Adam moments),
``aggregate=mean`` (one mean over every target example: this harness's earlier form),
``checkpoints=1``.  docs/methods/spice.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.grads import BlockProjector, data_fingerprint, grad_features, model_state_hash, per_example_grads
from selbench.methods.base import RunContext, Selection
from selbench.methods.common.grad_spec import Projection
from selbench.methods.common.proxy import ProxyData, optimizer_key, proxy_set, train_in_place
from selbench.methods.gradients.features import GradMethodConfig, GradSelector, check_grad_config, spec_of
from selbench.methods.gradients.logdet_greedy import selection_quality
from selbench.methods.registry import register_method


class Preconditioner(str, Enum):
    adam = "adam"   # m'/√(v'+ε) from the checkpoint's optimiser state (the authors' pool gradients)
    sgd = "sgd"     # variant: plain gradients


class Aggregate(str, Enum):
    max = "max"     # mean within each target task, max over tasks (the authors)
    mean = "mean"   # variant: one mean over every target example


@dataclass
class LessConfig(GradMethodConfig):
    projection: Projection = Projection.dense
    checkpoints: int = 4
    preconditioner: Preconditioner = Preconditioner.adam
    aggregate: Aggregate = Aggregate.max
    warmup_ratio: float = 0.03


def lr_factors(steps: int, warmup_ratio: float) -> list[float]:
    """HF's linear schedule with warm-up: the learning-rate factor of each step (0-based)."""
    warm = math.ceil(steps * warmup_ratio)
    return [s / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)) for s in range(steps)]


def adam_precondition(g: Tensor, m: Tensor, v: Tensor, betas: tuple[float, float], eps: float) -> Tensor:
    """The authors' ``obtain_gradients_with_adam``: one Adam moment update with ``g``, no bias correction."""
    b1, b2 = betas
    return (b1 * m + (1 - b1) * g) / torch.sqrt(b2 * v + (1 - b2) * g * g + eps)


def task_scores(S: Tensor, tasks: Tensor | None, aggregate: Aggregate) -> Tensor:
    """``[N, M]`` pool × target scores → ``[N]``: the mean over each task's targets, then the max over
    tasks (``aggregate=max``), or one mean over all targets."""
    if aggregate is Aggregate.mean or tasks is None:
        return S.mean(1)
    _, inv = torch.unique(tasks.long().cpu(), return_inverse=True)
    onehot = torch.nn.functional.one_hot(inv).to(S.dtype)
    return (S @ (onehot / onehot.sum(0))).max(1).values


def features(adapter, x: Tensor, y: Tensor, spec, proj: BlockProjector | None, moments=None) -> Tensor:
    """Unit-normalised (projected) per-example gradients, Adam-preconditioned when ``moments`` is given."""
    if spec.proj == Projection.factored.value:  # plain gradients only (checked before launch)
        return torch.nn.functional.normalize(grad_features(adapter, x, y, spec), dim=1)
    parts = []
    for i in range(0, len(x), spec.chunk):
        g = per_example_grads(adapter, x[i:i + spec.chunk], y[i:i + spec.chunk], spec.params, spec.fn,
                              chunk=spec.chunk).detach().float()  # detached: a partial subset's graph
        if moments is not None:
            g = adam_precondition(g, *moments)
        parts.append((proj(g) if proj is not None else g).cpu())
    out = torch.cat(parts) if parts else torch.zeros(0, proj.d if proj is not None else 0)
    return torch.nn.functional.normalize(out, dim=1)


def moments_of(opt: torch.optim.Optimizer, subset: dict) -> tuple | None:
    """The checkpoint's Adam moments of ``subset`` (and betas, ε); None when the optimiser keeps none."""
    st = [opt.state.get(p, {}) for p in subset.values()]
    if not all("exp_avg" in s and "exp_avg_sq" in s for s in st):
        return None
    m = torch.cat([s["exp_avg"].reshape(-1) for s in st]).float()
    v = torch.cat([s["exp_avg_sq"].reshape(-1) for s in st]).float()
    group = opt.param_groups[0]
    return m, v, tuple(group["betas"]), float(group["eps"])


def checkpoint_features(ctx: RunContext, cfg) -> dict:
    """Warm up, and at each checkpoint take the pool's and the target's features."""
    model, spec = ctx.model, spec_of(cfg)
    subset = ctx.adapter.param_subset(spec.params)
    n_par = sum(v.numel() for v in subset.values())
    proj = BlockProjector(n_par, spec.dim, spec.seed) if spec.proj == Projection.dense.value else None
    saved = {n: v.detach().clone() for n, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(10_007 * int(ctx.seed) + 1)
    steps, C = int(cfg.proxy_steps), int(cfg.checkpoints)
    factors = lr_factors(steps, float(cfg.warmup_ratio))
    ends = [round(steps * (c + 1) / C) for c in range(C)]
    out = {"pool": [], "target": [], "weights": [], "grad_seconds": 0.0, "proxy_seconds": 0.0}
    try:
        data = proxy_set(ctx, cfg, gen)
        opt = ctx.make_optimizer([p for p in model.parameters() if p.requires_grad])
        base = [g["lr"] for g in opt.param_groups]

        def set_lr(s: int) -> None:  # s: the 0-based index of the next step
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * factors[min(s, steps - 1)]
        done = 0
        for end in ends:
            set_lr(done)
            out["proxy_seconds"] += train_in_place(ctx, data, end - done, ctx.batch_size, gen,
                                                   on_step=lambda s, d=done: set_lr(d + s), opt=opt)
            out["weights"].append(base[0] * sum(factors[done:end]) / max(end - done, 1))  # the segment's mean lr
            done = end
            t0 = time.perf_counter()
            mom = moments_of(opt, subset) if Preconditioner(cfg.preconditioner) is Preconditioner.adam else None
            if mom is None and Preconditioner(cfg.preconditioner) is Preconditioner.adam and end == ends[0]:
                ctx.warn(f"less: method.preconditioner=adam but the runner's optimiser ({type(opt).__name__}) keeps "
                         f"no Adam moments; plain pool gradients (method.preconditioner=sgd says so)")
            out["preconditioned"] = mom is not None
            out["pool"].append(features(ctx.adapter, ctx.pool.x, ctx.pool.y, spec, proj, mom))
            out["target"].append(features(ctx.adapter, ctx.target.x, ctx.target.y, spec, proj))
            out["grad_seconds"] += time.perf_counter() - t0
    finally:
        model.load_state_dict(saved)
    return out


@register_method("less", config=LessConfig)
class Less(GradSelector):

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_grad_config(cfg)
        if int(cfg.checkpoints) < 1:
            raise ConfigError(f"method.checkpoints={cfg.checkpoints} must be >= 1")
        if not 0.0 <= float(cfg.warmup_ratio) < 1.0:
            raise ConfigError(f"method.warmup_ratio={cfg.warmup_ratio} must be in [0, 1)")
        if ProxyData(cfg.proxy_data) is ProxyData.none or int(cfg.proxy_steps) < int(cfg.checkpoints):
            raise ConfigError(f"less needs a warm-up of at least one step per checkpoint (method.proxy_steps="
                              f"{cfg.proxy_steps}, method.checkpoints={cfg.checkpoints}, "
                              f"method.proxy_data={ProxyData(cfg.proxy_data).value})")
        if Preconditioner(cfg.preconditioner) is Preconditioner.adam and \
                Projection(cfg.projection) is Projection.factored:
            raise ConfigError("method.preconditioner=adam needs each example's full gradient: use "
                              "method.projection=dense or none (factored is allowed with preconditioner=sgd)")

    def select(self, ctx: RunContext) -> Selection:
        cfg = self.cfg
        if len(ctx.target) == 0:
            raise ConfigError("less scores the pool against the target set, and this scenario's is empty")
        key = {"model": model_state_hash(ctx.model), "pool": data_fingerprint(ctx.pool.x, ctx.pool.y),
               "target": data_fingerprint(ctx.target.x, ctx.target.y), "spec": spec_of(cfg).key(),
               "proxy": [int(cfg.proxy_steps), ProxyData(cfg.proxy_data).value, float(cfg.proxy_fraction),
                         int(ctx.seed), int(cfg.checkpoints), float(cfg.warmup_ratio), optimizer_key(ctx)],
               "preconditioner": Preconditioner(cfg.preconditioner).value, "modality": ctx.modality}
        fresh = []

        def compute() -> dict:
            fresh.append(True)
            return checkpoint_features(ctx, cfg)
        feats = ctx.cache.get_or_compute("less_features", key, compute) if ctx.cache is not None else compute()
        t0 = time.perf_counter()
        w = torch.tensor(feats["weights"], dtype=torch.float64)
        w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / len(w))
        S = sum(wc * (P.double() @ T.double().T) for wc, P, T in zip(w, feats["pool"], feats["target"]))
        scores = task_scores(S, getattr(ctx.target, "domain", None), Aggregate(cfg.aggregate))
        idx = scores.topk(ctx.k_budget).indices
        G = feats["pool"][-1]
        n_feat = (len(G) + len(feats["target"][-1])) * len(w)
        info = {"grad_seconds": float(feats["grad_seconds"]), "proxy_seconds": float(feats["proxy_seconds"]),
                "features_per_second": n_feat / max(float(feats["grad_seconds"]), 1e-9), "grad_dim": int(G.shape[1]),
                "features_cached": not fresh, "greedy_seconds": time.perf_counter() - t0,
                "checkpoint_weights": w.tolist(), "preconditioned": bool(feats["preconditioned"]),
                "logdet_basis": "last_checkpoint_normalised",
                **selection_quality(G, idx)}
        return Selection(idx.sort().values, target_repeats=int(cfg.include_target), scores=scores.float(), info=info)
