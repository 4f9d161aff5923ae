"""TRAK datamodels (Park, Georgiev, Ilyas, Leclerc, Mądry, *TRAK: Attributing Model Behavior at
Scale*, ICML 2023), the estimator behind ``dsdm`` and the LDS check (``lds_subset``).

For ``M`` proxy models ``θ_m``, each trained on a random ``subset_fraction`` of the pool:

- ``Φ_m = [P_mᵀ ∇_θ f(z_i; θ_m)]_i`` — per-example gradients of the model *output* ``f``
  (classification margin ``logit_y − logsumexp_{j≠y} logit_j``; LM: the sum of the target
  tokens' log-odds ``log p − log(1 − p)``, ``adapter.scalar_output``), projected by a seeded
  random ``P_m`` (``core/grads.py``: the factored LoGra projection for ``nn.Linear`` layers,
  or the blockwise dense Gaussian one); the targets' ``φ_m`` likewise;
- ``Q_m = diag(1 − p_i)``, the output-to-loss derivative (``p_i = exp(−loss_i)``: for a
  classifier exactly the softmax probability of the label, as in ``traker``; for an LM the
  geometric mean of the target tokens' probabilities);
- ``τ = mean_m[ Φ_m (Φ_mᵀΦ_m + λ_m I)⁻¹ φ_mᵀ ] ⊙ mean_m[Q_m]`` — ``[N_pool, N_target]``;
  ``τ[i, t]`` estimates how much training on pool example ``i`` raises target ``t``'s output
  (lowers its loss).

Departures / choices, each a config knob:

- ``λ_m = lam · tr(Φ_mᵀΦ_m) / d`` (a ridge relative to the kernel's mean eigenvalue, so one
  default holds at every scale; TRAK's default is ``λ = 0`` with ``d ≪ N``);
- like ``traker``'s ``BasicScoreComputer``, each model's inverse is divided by its mean
  absolute entry before the models are averaged (it equalises their scales);
- proxy ``m`` starts from a seeded within-tensor permutation of the runner's initial weights (a
  fresh draw from the same i.i.d. initialisation, whatever the model's init code) and trains
  ``proxy_steps`` (0 = the run's own steps) with the runner's optimiser and batch size;
- ``proj_dim = 0`` picks ``min(2048, max(64, N_pool // 2))``.

Proxy checkpoints and per-model features are cached (``ctx.cache``), keyed by everything that
determines them (initial weights, pool / target fingerprints, optimiser, steps, subset draw,
gradient spec), so a rerun and every method of a sweep that shares these settings reuse them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from selbench.core.errors import ConfigError
from selbench.core.grads import GradSpec, data_fingerprint, grad_features, model_state_hash
from selbench.core.modes import eval_mode
from selbench.methods.base import MethodConfig, RunContext
from selbench.methods.common.grad_spec import Projection
from selbench.methods.common.proxy import warm_up


@dataclass
class TrakConfig(MethodConfig):
    n_models: int = 4                 # M proxy models (DsDm: 4 reference models)
    subset_fraction: float = 0.5      # each proxy's random share of the pool (TRAK 0.5; DsDm ≈ 0.38)
    proxy_steps: int = 0              # optimiser steps per proxy (0 = the run's own steps)
    params: str = "linears:all"       # adapter.param_subset whose gradients are featurised
    projection: Projection = Projection.factored
    proj_dim: int = 0                 # 0 = min(2048, max(64, N_pool // 2))
    proj_seed: int = 0
    lam: float = 0.01                 # ridge, relative to the kernel's mean eigenvalue
    chunk: int = 256                  # examples per gradient pass


def check_trak_config(cfg) -> None:
    if int(cfg.n_models) < 1:
        raise ConfigError(f"method.n_models={cfg.n_models} must be >= 1")
    if not 0.0 < float(cfg.subset_fraction) <= 1.0:
        raise ConfigError(f"method.subset_fraction={cfg.subset_fraction} must be in (0, 1]")
    if int(cfg.proxy_steps) < 0:
        raise ConfigError(f"method.proxy_steps={cfg.proxy_steps} must be >= 0 (0 = the run's own steps)")
    if int(cfg.proj_dim) < 0 or int(cfg.chunk) < 1:
        raise ConfigError(f"method.proj_dim={cfg.proj_dim} must be >= 0 (0 = auto) and method.chunk={cfg.chunk} >= 1")
    if float(cfg.lam) < 0:
        raise ConfigError(f"method.lam={cfg.lam} must be >= 0")


def proj_dim_for(cfg, n_pool: int) -> int:
    return int(cfg.proj_dim) or min(2048, max(64, n_pool // 2))


def model_spec(cfg, m: int, n_pool: int) -> GradSpec:
    """The gradient spec of proxy ``m``: the output function, and a projection seeded per model."""
    return GradSpec(params=str(cfg.params), fn="output", proj=Projection(cfg.projection).value,
                    dim=proj_dim_for(cfg, n_pool), seed=int(cfg.proj_seed) + 10_007 * m, chunk=int(cfg.chunk))


def permuted_init(state: dict, seed: int) -> dict:
    """Each floating tensor's entries shuffled (seeded): a fresh draw of an i.i.d. initialisation."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() > 1:
            flat = v.detach().reshape(-1)
            out[k] = flat[torch.randperm(flat.numel(), generator=g).to(flat.device)].reshape(v.shape).clone()
        else:
            out[k] = v.detach().clone()
    return out


def _optimizer_key(ctx: RunContext) -> list:
    opt = ctx.make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    return [type(opt).__name__, {k: v for k, v in opt.defaults.items() if isinstance(v, (int, float, bool, str))}]


def proxy_key(ctx: RunContext, cfg, m: int, init_hash: str) -> dict:
    return {"init": init_hash, "pool": data_fingerprint(ctx.pool.x, ctx.pool.y), "m": m,
            "fraction": float(cfg.subset_fraction), "steps": proxy_steps(ctx, cfg), "batch": int(ctx.batch_size),
            "optimizer": _optimizer_key(ctx), "seed": int(ctx.seed), "modality": ctx.modality}


def proxy_steps(ctx: RunContext, cfg) -> int:
    return int(cfg.proxy_steps) or int(ctx.steps)


def train_proxy(ctx: RunContext, cfg, m: int, init: dict) -> dict:
    """Proxy ``m``'s trained state (the runner's model is used as scratch space; caller restores it)."""
    ctx.model.load_state_dict(permuted_init(init, 7919 * int(ctx.seed) + 104_729 * (m + 1)))
    gen = torch.Generator().manual_seed(1_000_003 * int(ctx.seed) + 31 * m + 17)
    spec = SimpleNamespace(proxy_data="pool_random", proxy_fraction=float(cfg.subset_fraction),
                           proxy_steps=proxy_steps(ctx, cfg))
    warm_up(ctx, spec, gen)
    return {k: v.detach().cpu().clone() for k, v in ctx.model.state_dict().items()}


@torch.no_grad()
def one_minus_p(adapter, x, y, chunk: int = 512) -> torch.Tensor:
    """``Q = 1 − exp(−loss)`` per example (TRAK's output-to-loss term)."""
    with eval_mode(adapter.model):
        parts = [adapter.per_example_loss(x[i:i + chunk], y[i:i + chunk]).float().cpu() for i in range(0, len(x), chunk)]
    loss = torch.cat(parts) if parts else torch.zeros(0)
    return -torch.expm1(-loss.clamp_min(0))


def model_features(ctx: RunContext, cfg) -> list[dict]:
    """Per proxy: ``{"pool": Φ [N, d], "target": φ [T, d], "q": Q [N], "proxy_seconds", "grad_seconds"}``."""
    model = ctx.model
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    init_hash = model_state_hash(model)
    tfp = data_fingerprint(ctx.target.x, ctx.target.y)
    out = []
    try:
        for m in range(int(cfg.n_models)):
            pkey = proxy_key(ctx, cfg, m, init_hash)
            spec = model_spec(cfg, m, ctx.n_pool)

            def features(m=m, pkey=pkey, spec=spec) -> dict:
                t0 = time.perf_counter()
                state = ctx.cache.get_or_compute("trak_proxy", pkey, lambda: train_proxy(ctx, cfg, m, init)) \
                    if ctx.cache is not None else train_proxy(ctx, cfg, m, init)
                model.load_state_dict(state)
                t1 = time.perf_counter()
                gp = grad_features(ctx.adapter, ctx.pool.x, ctx.pool.y, spec)
                gt = grad_features(ctx.adapter, ctx.target.x, ctx.target.y, spec) if len(ctx.target) else \
                    torch.zeros(0, gp.shape[1])
                q = one_minus_p(ctx.adapter, ctx.pool.x, ctx.pool.y)
                return {"pool": gp, "target": gt, "q": q, "proxy_seconds": t1 - t0,
                        "grad_seconds": time.perf_counter() - t1}

            key = {"proxy": pkey, "spec": spec.key(), "target": tfp}
            out.append(ctx.cache.get_or_compute("trak_features", key, features) if ctx.cache is not None
                       else features())
    finally:
        model.load_state_dict(init)
    return out


def kernel_scores(G: torch.Tensor, T: torch.Tensor, lam: float) -> torch.Tensor:
    """One model's ``Φ (ΦᵀΦ + λI)⁻¹ φᵀ`` (``[N, T]``), the inverse scaled to mean |entry| 1 as ``traker``."""
    G, T = G.double(), T.double()
    K = G.T @ G
    reg = float(lam) * float(K.diagonal().mean().clamp_min(1e-30))
    # pinv (= inv when K + λI is regular): with λ = 0 and d > N the kernel is singular
    inv = torch.linalg.pinv(K + reg * torch.eye(len(K), dtype=K.dtype), hermitian=True)
    inv = inv / inv.abs().mean().clamp_min(1e-300)
    return (G @ inv) @ T.T


def trak_scores(feats: list[dict], lam: float) -> torch.Tensor:
    """``τ = mean_m[Φ_m (Φ_mᵀΦ_m + λ_m I)⁻¹ φ_mᵀ] ⊙ mean_m[Q_m]``: ``[N_pool, N_target]`` float64."""
    acc = sum(kernel_scores(torch.nan_to_num(f["pool"]), torch.nan_to_num(f["target"]), lam) for f in feats)
    q = sum(f["q"].double() for f in feats) / len(feats)
    return acc / len(feats) * q[:, None]


def datamodel(ctx: RunContext, cfg, extra_lams=()) -> dict:
    """The TRAK datamodel of the run's pool for its target set, and its cost.  ``extra_lams``: further
    ridges solved from the same features (``scores_by_lam``, keyed by λ; the λ ablation of the LDS)."""
    feats = model_features(ctx, cfg)
    t0 = time.perf_counter()
    scores = trak_scores(feats, float(cfg.lam))
    by_lam = {float(cfg.lam): scores}
    for lam in extra_lams:
        if float(lam) not in by_lam:
            by_lam[float(lam)] = trak_scores(feats, float(lam))
    n = sum(len(f["pool"]) + len(f["target"]) for f in feats)
    grad_s = sum(float(f["grad_seconds"]) for f in feats)
    return {"scores": scores, "scores_by_lam": by_lam, "info": {
        "trak_models": len(feats), "trak_dim": int(feats[0]["pool"].shape[1]),
        "proxy_seconds": sum(float(f["proxy_seconds"]) for f in feats), "grad_seconds": grad_s,
        "features_per_second": n / max(grad_s, 1e-9), "solve_seconds": time.perf_counter() - t0}}
