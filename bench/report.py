"""The suite's outputs: one CSV per section and Markdown tables on stdout."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def _rows(section) -> list[dict]:
    return section if isinstance(section, list) else [section]


def write_csv(path: Path, section) -> None:
    rows = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items() if k != "traceback"}
            for r in _rows(section)]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def fmt(v) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "—" if v is None else str(v)


def table(rows: list[dict], cols: list[str], title: str) -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def print_tables(res: dict) -> None:
    from bench.methods import claim_column
    m = res["meta"]
    print(f"# selbench bench — size {m['size']}, {m['device']}, {m['threads']} threads, git {m['git']}, "
          f"load {m['loadavg_start'][0]:.1f} on {m['cpu_count']} cores")
    if "overhead" in res:
        print(table([res["overhead"]], ["status", "model", "batch", "harness_ms_per_step", "bare_ms_per_step",
                                        "speed_ratio", "sync_every_step_ms", "sync_ratio"],
                    "harness erm step vs a bare PyTorch loop (speed_ratio = bare time / harness time)"))
    if "methods" in res:
        rows = [dict(r, claim=claim_column(r)) for r in res["methods"]]
        print(table(rows, ["method", "kind", "status", "examples_per_step", "ms_per_step", "ms_per_example",
                           "time_ratio", "mem_mb", "state_mb", "mem_ratio", "footprint_ratio", "forward_per_step", "backward_per_step", "claim"],
                    "step cost relative to erm at equal examples per step"))
        sel = [r for r in rows if r.get("kind") in ("selector", "synthesizer") and r["status"] == "ok"]
        print(table(sel, ["method", "kind", "setup_s", "effective_budget", "select_in_erm_steps", "payback_epochs"],
                    "selection cost and payback (setup_s = offline phase; payback in full-pool epochs)"))
    if "grads" in res:
        cols = list(dict.fromkeys(k for r in res["grads"] for k in r))
        print(table(res["grads"], cols, "per-example gradient throughput (examples/s; ×loop)"))
    if "scaling" in res:
        cols = ["method", "status", "pool_setup_s", "slope_pool_setup_s", "pool_step_ms", "slope_pool_step_ms",
                "slope_pool_mem_mb", "pool_state_mb", "slope_pool_state_mb", "model_step_ms", "slope_params_step_ms", "slope_params_mem_mb"]
        rows = [{k: ("/".join(fmt(x) for x in v) if isinstance(v, list) else v) for k, v in r.items()}
                for r in res["scaling"]]
        print(table(rows, cols, "scaling: log-log slopes against pool size and parameter count"))
