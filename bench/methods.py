"""Per-method step cost against ``erm`` at equal examples per step, and each selector's
selection cost and payback.  One method per call of :func:`measure_method` (the suite runs it
in its own process by default).

Reported per method: ms per step and per training example (medians, measured round-robin with
an ``erm`` built in the same process, so ``time_ratio`` is a side-by-side ratio), peak tensor
memory of one round of steps above what was allocated before it (the CUDA allocator's peak on
GPU, the profiler's allocation events on CPU: :class:`bench.memory.Memory`; that round is not
timed; ``mem_mb``), the tensors the method keeps between steps beyond the model and the main
optimiser (``state_mb``: per-example weights, weight networks, caches; :func:`bench.memory.state_bytes`),
``footprint_ratio`` = (mem + state) / erm's (what the paper cost claims are checked on),
forward / backward passes and training examples per step, and the offline phase (``setup_s``: a selector's selection, a synthesizer's synthesis).

Payback of a selector's cost (training on the kept fraction ``f`` of the pool instead of the
whole pool saves ``(1 − f)`` of every epoch): ``select_in_erm_steps = setup_s / erm step``, and
``payback_epochs = setup_s / ((1 − f) · N / batch · erm step)``: the full-pool epochs of training
after which the selection has paid for itself.
"""
from __future__ import annotations

import traceback

from bench.common import build, median, overrides, ratio, time_steps
from bench.memory import method_state_mb, profiled_steps


def measure_method(name: str, sz: dict, device: str, results_dir: str, extra=(), erm=None) -> dict:
    """One method's row (``status`` ``ok`` or ``failed: <reason>``, never an exception)."""
    row: dict = {"method": name, "status": "ok"}
    try:
        steps, warm, rounds = sz["steps"], sz["warmup"], sz["rounds"]
        b = build(overrides(sz, name, device, extra, steps=warm + steps * (rounds + 1)), results_dir,
                  sz.get("synth_iters", 0))
        row.update(kind=b.kind, setup_s=b.setup_s, n_pool=b.n_pool,
                   effective_budget=b.summary.get("effective_budget"))
        mem, passes = profiled_steps(b, warm, steps)
        row.update(mem_mb=mem.mb, rss_mb=mem.rss_mb, cuda_mb=mem.cuda_mb, state_mb=method_state_mb(b), **passes)
        if erm is None:
            erm = build(overrides(sz, "erm", device, extra), results_dir)
            time_steps(erm.step_fn, warm, erm.device)
        mine, ref, s, se = [], [], warm + steps + 1, getattr(erm, "_next", warm + 1)
        for _ in range(rounds):  # side by side: the same load falls on both
            mine += time_steps(b.step_fn, steps, b.device, start=s)
            ref += time_steps(erm.step_fn, steps, erm.device, start=se)
            s, se = s + steps, se + steps
        erm._next = se
        row["ms_per_step"] = 1e3 * median(mine)
        row["erm_ms_per_step"] = 1e3 * median(ref)
        row["ms_per_example"] = ratio(row["ms_per_step"], row["examples_per_step"])
        row["time_ratio"] = ratio(row["ms_per_step"], row["erm_ms_per_step"])
    except Exception as e:  # noqa: BLE001 - a method that fails is a row, not a crash
        row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        row["traceback"] = traceback.format_exc()[-2000:]
    return row


def _footprint(r: dict) -> float:
    """The step's peak working memory plus the state the method keeps between steps (MB)."""
    return (r.get("mem_mb") or 0.0) + (r.get("state_mb") or 0.0)


def finish(rows: list[dict], sz: dict) -> list[dict]:
    """Ratios to ``erm``'s row (memory) and the payback columns, in place."""
    erm = next((r for r in rows if r["method"] == "erm" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] != "ok" or erm is None:
            continue
        r["mem_ratio"] = ratio(r.get("mem_mb"), erm.get("mem_mb"))
        r["footprint_ratio"] = ratio(_footprint(r), _footprint(erm))
        r["examples_ratio"] = ratio(r.get("examples_per_step"), erm.get("examples_per_step"))
        if r.get("kind") in ("selector", "synthesizer"):
            step_s = r["erm_ms_per_step"] / 1e3
            r["select_in_erm_steps"] = ratio(r["setup_s"], step_s)
            f = r.get("effective_budget")
            saved = (1 - f) if isinstance(f, (int, float)) else None
            epoch_s = r["n_pool"] / sz["batch"] * step_s
            r["payback_epochs"] = ratio(r["setup_s"], saved * epoch_s) if saved and saved > 0 else float("nan")
    return rows


#: the paper cost claims checked in the table (time ratio, memory ratio) at equal examples per step
CLAIMS = {"bads": (1.1, 1.5), "l2rw": (2.0, 2.5), "mwnet": (2.0, 2.5), "blo": (2.0, 2.5)}


def claim_column(r: dict) -> str:
    lim = CLAIMS.get(r["method"].partition(":")[0])
    if lim is None or r["status"] != "ok":
        return ""
    ok_t, ok_m = r["time_ratio"] <= lim[0], not (r.get("footprint_ratio", 0) > lim[1])
    return f"{'ok' if ok_t and ok_m else 'OVER'} (≤{lim[0]}×t, ≤{lim[1]}×m)"
