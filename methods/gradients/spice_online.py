"""SPICE's online protocol (the authors' ``train.py``; Chang, Zhang et al., ICLR 2026, §3 and
Alg. 1): the pool streams past a proxy that learns from its own picks.

- The pool is visited in a seeded permutation, ``window`` candidates at a time (128 in the
  paper and ``configs/default.yaml``; the run script uses 124).
- Each window's per-example gradients are taken from the proxy *as it is now*, and the window
  picks up to ``per_window`` (64) by the rule (the penalised log-det greedy; the released run
  script's top-k by first gain is ``rule=top_k``).  Each window starts a fresh log-det state and
  a fresh ``ḡ_S``, as the authors' code does (one selection call per window).
- Early stop per window at ``omega × `` that window's first gain (ω = 0.5, paper), no fill: a
  window may contribute fewer than ``per_window``.
- Every ``refresh_every`` windows (T = 10 in ``run.sh``) the proxy takes one optimiser step on
  the mean loss of the picks accumulated since its last step (the authors accumulate the picks
  and step once; they sum micro-batch means of 4, a learning-rate scale we do not copy), so the
  next windows' gradients come from the updated proxy.
- The stream stops when the run's budget ``k`` is spent (the last window's quota is what is
  left).  If a pass over the pool ends first, the next pass visits the not-yet-picked examples
  in a new permutation (the authors' next epoch reshuffles everything and can repeat picks;
  a budget of distinct examples cannot).

**Departures.**  The proxy here is the run's model warmed up on a random slice of the pool
(``proxy_data=pool_random``; the paper's proxy is a pretrained Qwen2-0.5B with LoRA, which the
harness's from-scratch models do not have), and it keeps the warm-up's optimiser for its
online steps (the authors' AdamW runs from the pretrained model with a linear schedule).
``α = alpha_scale / median ‖g‖²`` of each window (the authors use α = 1 on raw LoRA
gradients; scale-aware here so ω means the same whatever the gradients' scale).
The model is restored exactly afterwards: the selected set trains from the run's own init.
"""
from __future__ import annotations

import time

import torch

from selbench.core.grads import grad_features
from selbench.methods.base import RunContext, Selection
from selbench.methods.common.proxy import train_in_place, warm_up
from selbench.methods.gradients.features import spec_of
from selbench.methods.gradients.logdet_greedy import greedy_logdet, reference_alpha, selection_quality, top_k_gains


def pick_window(G: torch.Tensor, quota: int, cfg, lam: float):
    """One window's picks (local indices, greedy order) and its per-row scores."""
    alpha = float(cfg.alpha_scale) * reference_alpha(G)
    if str(getattr(cfg.rule, "value", cfg.rule)) == "top_k":
        return top_k_gains(G, quota, alpha, tau=float(cfg.omega)), alpha
    diag = str(getattr(cfg.fisher, "value", cfg.fisher)) == "diag"
    return greedy_logdet(G, quota, alpha, lam=lam, tau=float(cfg.omega), diag=diag, fill=False), alpha


def online_select(ctx: RunContext, cfg, lam: float) -> Selection:
    model, pool, k = ctx.model, ctx.pool, int(ctx.k_budget)
    spec = spec_of(cfg)
    saved = {n: v.detach().clone() for n, v in model.state_dict().items()}
    opt = ctx.make_optimizer([p for p in model.parameters() if p.requires_grad])
    gen = torch.Generator().manual_seed(10_007 * int(ctx.seed) + 1)  # the static proxy's warm-up draw
    order_gen = torch.Generator().manual_seed(10_007 * int(ctx.seed) + 2)
    scores = torch.full((ctx.n_pool,), float("nan"), dtype=torch.float64)
    picked = torch.zeros(ctx.n_pool, dtype=torch.bool)
    chosen, feats_sel, feats_seen, pending = [], [], [], []
    n_windows = updates = stopped = passes = 0
    grad_s = update_s = select_s = 0.0
    try:
        proxy_s = warm_up(ctx, cfg, gen, opt=opt)
        order, cursor = torch.randperm(ctx.n_pool, generator=order_gen), 0
        while len(chosen) < k:
            if cursor >= len(order):  # a pass ended before the budget: the not-yet-picked, reshuffled
                rest = (~picked).nonzero().squeeze(1)
                order, cursor = rest[torch.randperm(len(rest), generator=order_gen)], 0
                passes += 1
            win = order[cursor:cursor + int(cfg.window)]
            cursor += len(win)
            t0 = time.perf_counter()
            G = grad_features(ctx.adapter, pool.x[win], pool.y[win], spec).detach()
            t1 = time.perf_counter()
            r, _ = pick_window(G, min(int(cfg.per_window), k - len(chosen)), cfg, lam)
            select_s += time.perf_counter() - t1
            grad_s += t1 - t0
            glob = win[r.indices]
            chosen += glob.tolist()
            picked[glob] = True
            scores[win] = r.scores.double()
            feats_sel.append(G[r.indices])
            feats_seen.append(G)
            pending += glob.tolist()
            n_windows += 1
            stopped += int(r.stopped_early)
            if n_windows % int(cfg.refresh_every) == 0 and len(chosen) < k:
                # the proxy learns from its own picks: one step on the mean loss of the pending picks
                update_s += train_in_place(ctx, pool.subset(torch.tensor(pending)), 1, len(pending), gen, opt=opt)
                pending, updates = [], updates + 1
    finally:
        model.load_state_dict(saved)
    idx = torch.tensor(chosen, dtype=torch.long)
    if not feats_seen:  # a zero budget: nothing streamed
        return Selection(idx, target_repeats=int(cfg.include_target), info={"protocol": "online", "n_windows": 0})
    seen = torch.cat(feats_seen)
    scores = torch.nan_to_num(scores, nan=float(scores[~scores.isnan()].min()))
    info = {"protocol": "online", "n_windows": n_windows, "passes": passes + 1, "proxy_updates": updates,
            "windows_stopped_early": stopped, "picks_per_window": len(chosen) / max(n_windows, 1),
            "pool_seen": float(len(seen)) / ctx.n_pool, "n_greedy": len(chosen), "stopped_early": stopped > 0,
            "grad_seconds": grad_s, "proxy_seconds": proxy_s + update_s, "greedy_seconds": select_s,
            "features_per_second": len(seen) / max(grad_s, 1e-9), "grad_dim": int(seen.shape[1]),
            "features_cached": False, "logdet_basis": "pick_time",
            # log-det / conflict of the picks' features as each was picked (the proxy moves), with
            # the reference α of every feature the stream saw
            **quality(torch.cat(feats_sel), seen)}
    return Selection(idx.sort().values, target_repeats=int(cfg.include_target), scores=scores.float(), info=info)


def quality(G_sel: torch.Tensor, G_seen: torch.Tensor) -> dict:
    return selection_quality(G_sel, torch.arange(len(G_sel)), alpha=reference_alpha(G_seen))
