"""Gradient featurisation shared by the gradient selectors (``spice`` static, ``fisher_logdet``,
``grad_norm``): a warmed-up proxy, the engine's (projected) per-example gradients of the pool
and the target, cached, and the timings the record shows.

**Whose gradients.**  The runner's freshly initialised model is a poor proxy (its gradients
mostly reflect the random init).  The papers take gradients of a *warmed-up* model: LESS
trains on a random 5% of the pool first, SPICE uses a small pretrained proxy LM.  Here the
runner's model is warmed up in place for ``proxy_steps`` optimiser steps (the runner's
optimiser config, batch ``ctx.batch_size``, ``proxy.train_in_place``) on ``proxy_data`` —
``pool_random`` (default: a random ``proxy_fraction`` of the pool), ``both`` (that plus the
target set), ``target`` or ``none`` — then the features are taken, then the model's initial
state is restored exactly, so the selected set is trained from the same initialisation as
every other method.  The pool-only default follows the papers: a target-set warm-up is in
neither, and on a label-noisy pool it made mislabelled examples' gradients 42× the clean ones'
(median; 2× after a pool-only warm-up, issue 23).  The warm-up runs inside the runner's
``select`` phase, so its time is in the selection cost; its examples are counted through the
adapter.

**Cache.**  ``ctx.cache`` keys the features by the initial model's state hash, the pool and
target fingerprints, the gradient spec (subset, fn, projection, dim, seed, chunk) and the
proxy settings + run seed (which draw the warm-up subset).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from selbench.core.errors import ConfigError
from selbench.core.grads import GradSpec, data_fingerprint, grad_features, model_state_hash
from selbench.methods.base import MethodConfig, RunContext, Selector
from selbench.methods.common.grad_spec import GradFn, Projection
from selbench.methods.common.proxy import ProxyData, warm_up


@dataclass
class GradMethodConfig(MethodConfig):
    params: str = "linears:head"        # adapter.param_subset (head = last layer / last block / LoRA)
    grad_fn: GradFn = GradFn.loss
    projection: Projection = Projection.factored
    proj_dim: int = 1024
    proj_seed: int = 0
    chunk: int = 256
    proxy_steps: int = 100
    proxy_data: ProxyData = ProxyData.pool_random   # the pool only (LESS's warm-up); see the docstring
    proxy_fraction: float = 0.05
    include_target: bool = True          # train on the selection + the target set (as `random`)


def check_grad_config(cfg) -> None:
    if int(cfg.proj_dim) < 1 or int(cfg.chunk) < 1:
        raise ConfigError(f"method.proj_dim={cfg.proj_dim} and method.chunk={cfg.chunk} must be positive")
    if int(cfg.proxy_steps) < 0:
        raise ConfigError(f"method.proxy_steps={cfg.proxy_steps} must be >= 0")
    if not 0.0 < float(cfg.proxy_fraction) <= 1.0:
        raise ConfigError(f"method.proxy_fraction={cfg.proxy_fraction} must be in (0, 1]")


class GradSelector(Selector):
    """Base of the gradient selectors: a hard budget, and the shared config checks before launch."""

    budget_use = "hard"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_grad_config(cfg)


def spec_of(cfg) -> GradSpec:
    return GradSpec(params=str(cfg.params), fn=GradFn(cfg.grad_fn).value, proj=Projection(cfg.projection).value,
                    dim=int(cfg.proj_dim), seed=int(cfg.proj_seed), chunk=int(cfg.chunk))


def pool_target_features(ctx: RunContext, cfg) -> dict:
    """``{"pool": [N, d], "target": [M, d], "grad_seconds", "proxy_seconds", "features_per_second", "cached"}``."""
    spec = spec_of(cfg)
    model = ctx.model
    key = {"model": model_state_hash(model), "pool": data_fingerprint(ctx.pool.x, ctx.pool.y),
           "target": data_fingerprint(ctx.target.x, ctx.target.y), "spec": spec.key(),
           "proxy": [int(cfg.proxy_steps), ProxyData(cfg.proxy_data).value, float(cfg.proxy_fraction), int(ctx.seed)],
           "modality": ctx.modality}
    fresh = []

    def compute() -> dict:
        fresh.append(True)
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        gen = torch.Generator().manual_seed(10_007 * int(ctx.seed) + 1)
        try:
            proxy_s = warm_up(ctx, cfg, gen)
            t0 = time.perf_counter()
            gp = grad_features(ctx.adapter, ctx.pool.x, ctx.pool.y, spec)
            gt = grad_features(ctx.adapter, ctx.target.x, ctx.target.y, spec) if len(ctx.target) else \
                torch.zeros(0, gp.shape[1])
            grad_s = time.perf_counter() - t0
        finally:
            model.load_state_dict(saved)
        return {"pool": gp, "target": gt, "grad_seconds": grad_s, "proxy_seconds": proxy_s}

    out = ctx.cache.get_or_compute("grad_features", key, compute) if ctx.cache is not None else compute()
    n = len(out["pool"]) + len(out["target"])
    if not torch.isfinite(out["pool"]).all():
        ctx.warn("non-finite gradient features (zeroed); the proxy warm-up may have diverged")
        out["pool"] = torch.nan_to_num(out["pool"], nan=0.0, posinf=0.0, neginf=0.0)
    return {**out, "features_per_second": n / max(float(out["grad_seconds"]), 1e-9), "cached": not fresh,
            "dim": int(out["pool"].shape[1])}


def feature_info(feats: dict) -> dict:
    return {"grad_seconds": float(feats["grad_seconds"]), "proxy_seconds": float(feats["proxy_seconds"]),
            "features_per_second": float(feats["features_per_second"]), "grad_dim": feats["dim"],
            "features_cached": bool(feats["cached"]),
            # the gradients a selection's log-det / conflict are measured on (comparable only on one basis)
            "logdet_basis": "static_proxy"}
