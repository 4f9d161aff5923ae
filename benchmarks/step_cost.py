#!/usr/bin/env python
"""Time per training step and peak memory of reweighters against plain training (erm).

    python benchmarks/step_cost.py                       # erm, bads and any of l2rw mwnet blo registered
    python benchmarks/step_cost.py erm bads l2rw --steps 50 --dataset fashion_mnist --model lenet5
    python benchmarks/step_cost.py erm bads --set experiment=bads/denoise --device cuda

Equal work per step: every method runs under ``runner.match_examples=true``, so its real
update trains on ``--batch`` examples per step (a reweighter that also trains on the target
batch gets pool + target = ``--batch``, in the ratio ``--batch`` : ``--target-batch``); the
meta-steps' extra passes show in the forward / backward columns.  Every method is built by
the real selbench pieces (the Hydra config, the runner's scenario / adapter / optimiser,
the registry, the job's per-kind preparation), so any registered method works, and
each runs in its own subprocess so memory figures do not leak from one to the next.

Reported per method: ms per step (median over ``--steps`` after ``--warmup``), the RSS
growth from just before the first step to the peak during the steps (what the step
itself allocates: activations, gradients, optimiser state, weight models), and on GPU
the CUDA peak during the steps (total and above the pre-step allocation).  Ratios are
to the first method named (``erm`` by default).  CPU RSS is coarse (allocator caching,
a 20 ms sampler); on GPU the CUDA figures are the ones to quote.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DEFAULT_OTHERS = ("l2rw", "mwnet", "blo")


def _parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("methods", nargs="*", help="registered method names (default: erm bads + l2rw/mwnet/blo if registered)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--scenario", default="sym_noise")
    ap.add_argument("--pool", type=int, default=5000, help="pool size")
    ap.add_argument("--target-per-class", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128, help="training examples per step (runner.batch_size)")
    ap.add_argument("--target-batch", type=int, default=128, help="target batch of a reweighter's meta step")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra Hydra override (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per method instead of a table")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one method in this process
    return ap.parse_args()


def _overrides(args, method: str) -> list[str]:
    bs = [f"runner.batch_size={args.batch}", f"runner.target_batch_size={args.target_batch}",
          "runner.match_examples=true"]
    return [f"method={method}", f"dataset={args.dataset}", f"model={args.model}", f"scenario={args.scenario}",
            f"scenario.pool_size={args.pool}", f"scenario.target_per_class={args.target_per_class}",
            "scale=paper", f"runner.steps={args.warmup + args.steps}", f"runner.device={args.device}",
            "progress=false", *bs, *args.set]


def measure_one(args) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from selbench.core.cost import CostTracker, RssSampler
    from selbench.methods.registry import get_method
    from selbench.runners.run.context import make_context
    from selbench.runners.run.job import resolve_device, seed_everything
    from selbench.runners.run.loop import make_optimizer
    from selbench.runners.run.prepare import PREPARE
    from selbench.runners.run.validate import CONF_DIR
    from selbench.runners.tasks import task_module

    if args.threads:
        torch.set_num_threads(args.threads)
    entry = get_method(args.one)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=_overrides(args, args.one))
    seed_everything(int(cfg.seed), bool(cfg.runner.get("deterministic", True)))
    device = resolve_device(str(cfg.runner.device))
    runner = task_module(cfg.runner.name)
    cost = CostTracker(device)
    scenario = runner.build_scenario(cfg, int(cfg.seed))
    adapter = runner.build_adapter(cfg, scenario, cost, device)
    rc = cfg.runner
    steps = args.warmup + args.steps
    optimizer = make_optimizer([p for p in adapter.model.parameters() if p.requires_grad], rc.optimizer)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=entry.cls, steps=steps)
    method = entry.cls(OmegaConf.to_object(cfg.method))
    prepared = PREPARE[entry.cls.kind](method, ctx, optimizer, cost)  # offline phase (selectors) happens here

    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    sampler = RssSampler(interval=0.005)
    rss_before = sampler.peak
    sampler.start()
    times, fwd0, bwd0, tr0 = [], cost.forward, cost.backward, cost.train
    for step in range(1, steps + 1):
        if step == args.warmup + 1:
            fwd0, bwd0, tr0 = cost.forward, cost.backward, cost.train
        sync()
        t0 = time.perf_counter()
        prepared.step_fn(step)
        sync()
        if step > args.warmup:
            times.append(time.perf_counter() - t0)
    rss_peak = sampler.stop()
    out = {
        "method": entry.name, "kind": entry.cls.kind, "device": str(device),
        "examples_per_step": (cost.train - tr0) / args.steps,
        "ms_per_step": 1e3 * statistics.median(times), "ms_per_step_mean": 1e3 * statistics.fmean(times),
        "rss_delta_mb": (rss_peak - rss_before) / 2**20, "rss_peak_mb": rss_peak / 2**20,
        "forward_per_step": (cost.forward - fwd0) / args.steps, "backward_per_step": (cost.backward - bwd0) / args.steps,
    }
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        out.update(cuda_peak_mb=peak / 2**20, cuda_step_mb=(peak - cuda_before) / 2**20)
    return out


def main() -> int:
    args = _parse()
    if args.one:
        print("RESULT " + json.dumps(measure_one(args)))
        return 0
    from selbench.methods.registry import registered

    names = registered()
    methods = args.methods or ["erm", "bads"] + [m for m in DEFAULT_OTHERS if m in names]
    unknown = [m for m in methods if m not in names]
    if unknown:
        print(f"step_cost: unknown method(s) {unknown} (registered: {', '.join(sorted(names))})", file=sys.stderr)
        return 2
    rows = []
    passthrough = [a for a in sys.argv[1:] if a not in methods]
    for m in methods:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *passthrough, "--one", m],
                              capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"step_cost: {m} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(line[len("RESULT "):]))
    base = rows[0]
    for r in rows:
        r["time_ratio"] = r["ms_per_step"] / base["ms_per_step"]
        r["mem_ratio"] = r["rss_delta_mb"] / base["rss_delta_mb"] if base["rss_delta_mb"] > 0 else float("nan")
        if "cuda_step_mb" in r:
            r["cuda_mem_ratio"] = r["cuda_step_mb"] / base["cuda_step_mb"] if base["cuda_step_mb"] > 0 else float("nan")
            r["cuda_peak_ratio"] = r["cuda_peak_mb"] / base["cuda_peak_mb"]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    cols = ["method", "kind", "examples_per_step", "ms_per_step", "time_ratio", "rss_delta_mb", "mem_ratio",
            "forward_per_step", "backward_per_step"]
    if "cuda_peak_mb" in base:
        cols += ["cuda_step_mb", "cuda_mem_ratio", "cuda_peak_mb", "cuda_peak_ratio"]
    print(f"# {args.dataset}/{args.model} on {base['device']}; ratios to {base['method']}; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
