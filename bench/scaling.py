"""How time and memory grow with the pool size and the model size, per method, with log-log slopes.

Pool sizes: each method is built on pools of the given sizes (default model): its offline phase
(``setup_s``: selection / synthesis, grows with the pool for selectors) and its training step.
Model sizes: ``model=mlp`` at the given widths (base pool): step time and memory against the
parameter count; ``state_mb``: what the method keeps between steps (per-example weights, caches),
which grows with the pool where the step's working memory does not.  ``slope_*`` = least-squares slope of log(cost) on log(size): 1 = linear.
"""
from __future__ import annotations

import traceback

from bench.common import build, loglog_slope, median, overrides, time_steps
from bench.memory import method_state_mb, profiled_steps


def _point(sz, results_dir, **kw) -> dict:
    warm, steps = sz["warmup"], sz["steps"]
    b = build(overrides(sz, **kw, steps=warm + 2 * steps), results_dir, sz.get("synth_iters", 0))
    mem, _ = profiled_steps(b, warm, steps)
    t = time_steps(b.step_fn, steps, b.device, start=warm + steps + 1)
    params = sum(p.numel() for p in b.model.parameters())
    return {"setup_s": b.setup_s, "step_ms": 1e3 * median(t), "mem_mb": mem.mb, "params": params,
            "state_mb": method_state_mb(b)}


def measure_scaling(name: str, sz: dict, device: str, results_dir: str) -> dict:
    row: dict = {"method": name, "status": "ok", "pools": sz["pools"], "widths": sz["widths"]}
    try:
        by_pool = [_point(sz, results_dir, method=name, device=device, pool=n) for n in sz["pools"]]
        by_width = [_point(sz, results_dir, method=name, device=device, extra=("model=mlp", f"model.hidden={w}"))
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
