"""How time and memory grow with the pool size and the model size, per method, with log-log slopes.

Pool sizes: each method is built on pools of the given sizes (default model): its offline phase
(``setup_s``: selection / synthesis, grows with the pool for selectors) and its training step.
Model sizes: ``model=mlp`` at the given widths (base pool): step time and memory against the
parameter count; ``state_mb``: what the method keeps between steps (per-example weights, caches),
which grows with the pool where the step's working memory does not.  ``slope_*`` = least-squares slope of log(cost) on log(size): 1 = linear.
"""
from __future__ import annotations

import traceback

from bench.common import Memory, build, loglog_slope, median, overrides, state_bytes, time_steps


def _point(ovr, sz, results_dir) -> dict:
    warm, steps = sz["warmup"], sz["steps"]
    ovr = [o for o in ovr if not o.startswith("runner.steps=")] + [f"runner.steps={warm + 2 * steps}"]
    b = build(ovr, results_dir, sz.get("synth_iters", 0))
    time_steps(b.step_fn, warm - 1, b.device)
    with Memory(b.device) as mem:  # profiled on CPU: not timed
        time_steps(b.step_fn, 1, b.device, start=warm)
        with mem.window():
            time_steps(b.step_fn, steps, b.device, start=warm + 1)
    t = time_steps(b.step_fn, steps, b.device, start=warm + steps + 1)
    params = sum(p.numel() for p in b.model.parameters())
    shared = (b.model, b.ctx, b.ctx.adapter, getattr(b.method, "optimizer", None))
    return {"setup_s": b.setup_s, "step_ms": 1e3 * median(t), "mem_mb": mem.mb, "params": params,
            "state_mb": state_bytes(b.method, shared) / 2**20}


def measure_scaling(name: str, sz: dict, device: str, results_dir: str) -> dict:
    row: dict = {"method": name, "status": "ok", "pools": sz["pools"], "widths": sz["widths"]}
    try:
        by_pool = [_point(overrides(sz, name, device, pool=n), sz, results_dir) for n in sz["pools"]]
        by_width = [_point(overrides(sz, name, device, extra=("model=mlp", f"model.hidden={w}")), sz, results_dir)
                    for w in sz["widths"]]
    except Exception as e:  # noqa: BLE001 - reported, not raised
        row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        row["traceback"] = traceback.format_exc()[-2000:]
        return row
    for key in ("setup_s", "step_ms", "mem_mb", "state_mb"):
        row[f"pool_{key}"] = [p[key] for p in by_pool]
        row[f"slope_pool_{key}"] = loglog_slope(sz["pools"], row[f"pool_{key}"])
    params = [p["params"] for p in by_width]
    row["params"] = params
    for key in ("step_ms", "mem_mb"):
        row[f"model_{key}"] = [p[key] for p in by_width]
        row[f"slope_params_{key}"] = loglog_slope(params, row[f"model_{key}"])
    return row
