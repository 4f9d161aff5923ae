"""Harness overhead: a harness ``erm`` step (sampler, adapter, cost counters, the loop's stats
channel) against a hand-written PyTorch loop on the same model, data, batch and optimiser.

``speed_ratio = bare time / harness time`` (≥ 1: the harness is as fast as the bare loop; the
regression check asks ≥ 0.95).  ``sync_ratio``: the harness loop against the same loop reading
``float(loss)`` every step (the per-step host sync the loop no longer does; ≈ 1 on CPU).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from bench.common import build, median, overrides, ratio, sync


def _bare(model, x, y, batch: int, ocfg, device, seed: int = 0):
    model = copy.deepcopy(model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=float(ocfg.lr), momentum=float(ocfg.get("momentum", 0)),
                          weight_decay=float(ocfg.get("weight_decay", 0)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    pos = [0]

    def step(n: int) -> None:
        for _ in range(n):
            if pos[0] + batch > len(perm):
                perm[:] = torch.randperm(len(x), generator=g)
                pos[0] = 0
            idx = perm[pos[0]:pos[0] + batch]
            pos[0] += batch
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            loss.backward()
            opt.step()
    return step


def measure_overhead(sz: dict, device: str, results_dir: str) -> dict:
    from selbench.runners.run.loop import run_steps

    # one eval window per timed round, as in a run (whose windows are runner.eval_every = 250 steps long):
    # the loop's per-window work (cost phases, the one stats read) is amortised as it is there
    steps, rounds = max(4 * sz["steps"], 25), max(sz["rounds"], 3)
    b = build(overrides(sz, "erm", device, steps=10 ** 6), results_dir)
    cfg_opt = b.cfg.runner.optimizer
    if str(cfg_opt.name) != "sgd":
        return {"status": f"skipped: bare loop written for sgd, runner uses {cfg_opt.name}"}
    bare = _bare(b.model, b.ctx.pool.x, b.ctx.pool.y, sz["batch"], cfg_opt, b.device)
    state = {"step": 0}

    def harness(n: int, read_every_step: bool = False) -> None:
        fn = b.step_fn if not read_every_step else (lambda s: {**(o := b.step_fn(s)), "loss": float(o["loss"])})
        run_steps(state["step"] + n, n, fn, lambda s, d: None, b.cost, False, "bench", start_step=state["step"])
        state["step"] += n

    def timed(fn) -> float:
        import time
        sync(b.device)
        t0 = time.perf_counter()
        fn()
        sync(b.device)
        return (time.perf_counter() - t0) / steps

    harness(sz["warmup"])
    bare(sz["warmup"])
    t_h, t_b, t_s = [], [], []
    for _ in range(rounds):
        t_h.append(timed(lambda: harness(steps)))
        t_b.append(timed(lambda: bare(steps)))
        t_s.append(timed(lambda: harness(steps, read_every_step=True)))
    h, bb, s = median(t_h), median(t_b), median(t_s)
    return {"status": "ok", "model": sz["model"], "batch": sz["batch"], "device": str(b.device),
            "harness_ms_per_step": 1e3 * h, "bare_ms_per_step": 1e3 * bb, "speed_ratio": ratio(bb, h),
            "sync_every_step_ms": 1e3 * s, "sync_ratio": ratio(s, h), "threads": torch.get_num_threads()}
