"""What the suite's sections share: build a method exactly as a run does, and time steps
(memory: ``bench/memory.py``).

Every method is built by the job's own run builder (``runners/run/build.py``: the Hydra config,
the runner's scenario / adapter / optimiser, the registry, the per-kind preparation), so any
registered method works.  Times are medians of per-step wall times, taken side by side (round-robin over the
methods compared) in one process, so load from other processes hits all of them alike.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch

#: the suite's sizes: ``tiny`` is the unit test's, ``small`` the default, ``full`` the issue's ranges
SIZES = {
    "tiny": dict(dataset="digits", model="mlp", pool=300, target_per_class=5, batch=32, target_batch=16,
                 steps=3, warmup=1, rounds=1, pools=[150, 300], widths=[16, 32], grad_n=16, grad_loop=8,
                 synth_iters=3, timeout=300),
    "small": dict(dataset="fashion_mnist", model="lenet5", pool=5000, target_per_class=20, batch=128,
                  target_batch=128, steps=8, warmup=3, rounds=3, pools=[2500, 5000, 10000], widths=[64, 256, 1024],
                  grad_n=256, grad_loop=64, synth_iters=200, timeout=900),
    "full": dict(dataset="fashion_mnist", model="lenet5", pool=5000, target_per_class=20, batch=128,
                 target_batch=128, steps=20, warmup=5, rounds=5, pools=[10000, 20000, 40000, 58000],
                 widths=[64, 256, 1024, 4096], grad_n=1024, grad_loop=128, synth_iters=0, timeout=3600),
}


#: ``--modality language``: the instruction mixture (``experiment=bads/instruction``'s setting) with
#: the tiny GPT from scratch, at the preset's batch sizes; merged over the size's vision keys
TEXT_SIZES = {
    "tiny": dict(pool=64, seq_len=48, width=32, depth=1, target_per_domain=4, batch=8, target_batch=4, vocab=512),
    "small": dict(pool=3000, seq_len=64, width=64, depth=2, target_per_domain=16, batch=16, target_batch=8, vocab=0),
    "full": dict(pool=3000, seq_len=128, width=256, depth=4, target_per_domain=16, batch=16, target_batch=8, vocab=0),
}


def text_size(size: str, sz: dict) -> dict:
    return {**sz, **TEXT_SIZES[size], "modality": "language"}


def _data_overrides(sz: dict, pool: int | None) -> list[str]:
    """The data and model of a size: the vision keys, or ``TEXT_SIZES``' (``modality: language``)."""
    if sz.get("modality") == "language":
        return ["runner=language", "dataset=instructions", "scenario=instruction_mixture", "model=tiny_gpt",
                f"scenario.pool_size={pool or sz['pool']}", f"scenario.seq_len={sz['seq_len']}",
                f"scenario.target_per_domain={sz['target_per_domain']}", "scenario.test_per_domain=8",
                "scenario.val_per_domain=8", f"model.width={sz['width']}", f"model.depth={sz['depth']}",
                "model.heads=2", f"model.context={sz['seq_len']}",
                *([f"model.tokenizer.max_vocab={sz['vocab']}"] if sz["vocab"] else [])]
    return [f"dataset={sz['dataset']}", f"model={sz['model']}", "scenario=sym_noise",
            f"scenario.pool_size={pool or sz['pool']}", f"scenario.target_per_class={sz['target_per_class']}"]


def split_spec(spec: str) -> tuple[str, list[str]]:
    """``name`` or ``name:key=value,key=value`` (a variant: ``l2rw:meta_grad=double_backward``)
    → the registered name and its ``method.*`` overrides."""
    name, _, rest = spec.partition(":")
    return name, [f"method.{kv}" for kv in rest.split(",") if kv]


def overrides(sz: dict, method: str, device: str, extra=(), pool: int | None = None,
              steps: int | None = None) -> list[str]:
    """A run of ``method`` (or a variant, :func:`split_spec`) at size ``sz``: ``steps`` training
    steps (default: warm-up plus the timed rounds)."""
    method, variant = split_spec(method)
    steps = sz["warmup"] + sz["steps"] * sz["rounds"] if steps is None else steps
    return [f"method={method}", *_data_overrides(sz, pool), "scale=paper", f"runner.steps={steps}",
            f"runner.device={device}", f"runner.batch_size={sz['batch']}",
            f"runner.target_batch_size={sz['target_batch']}", "runner.match_examples=true", "progress=false",
            "logger=none", *extra, *variant]


def compose(ovr: list[str]):
    from hydra import compose as hcompose, initialize_config_dir

    from selbench.methods.registry import registered
    from selbench.runners.run.validate import CONF_DIR
    registered()  # imports the methods: their configs are in Hydra's ConfigStore
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hcompose(config_name="config", overrides=ovr)


@dataclass
class Built:
    name: str
    kind: str
    step_fn: object
    cost: object
    device: torch.device
    setup_s: float          # the offline phase (a selector's selection, a synthesizer's synthesis)
    summary: dict
    n_pool: int
    model: object
    ctx: object = None
    cfg: object = None
    method: object = None


def build(ovr: list[str], results_dir: str, synth_iters: int = 0) -> Built:
    """A method ready to step, built by the job's own run builder (``runners/run/build.py``; no
    record, no evaluation).  ``synth_iters`` caps a synthesizer's iterations (0 = the scale's cap)."""
    from selbench.core.cost import CostTracker
    from selbench.methods.registry import get_method
    from selbench.runners.run.build import build_run, effective_steps, resolve_device, seed_everything
    from selbench.runners.tasks import task_module

    # a cold artifact cache per build: setup_s is what one run pays (in a sweep, runs share cached
    # proxies and gradient features, so e.g. less after fisher_logdet would read as nearly free)
    cache = tempfile.mkdtemp(dir=results_dir, prefix="cache-")
    cfg = compose([*ovr, f"results_dir={results_dir}", f"cache_dir={cache}"])
    entry = get_method(str(cfg.method.name))
    seed_everything(int(cfg.seed), bool(cfg.runner.get("deterministic", True)))
    device = resolve_device(str(cfg.runner.device))
    runner = task_module(cfg.runner.name)
    cost = CostTracker(device)
    scenario = runner.build_scenario(cfg, int(cfg.seed))
    run = build_run(cfg, entry, runner, scenario, cost, device, steps=effective_steps(cfg)[0], synth_steps=synth_iters)
    sync(device)
    t0 = time.perf_counter()
    with cost.phase("setup"):
        prepared = run.prepare()
    sync(device)
    return Built(entry.name, entry.cls.kind, run.step, cost, device, time.perf_counter() - t0,
                 dict(prepared.summary), len(scenario.pool), run.adapter.model, run.ctx, cfg, run.method)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step_fn, n: int, device, start: int = 1) -> list[float]:
    """Per-step wall times of ``n`` steps (synchronised on CUDA so each step's time is its own)."""
    out = []
    for s in range(start, start + n):
        sync(device)
        t0 = time.perf_counter()
        step_fn(s)
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def median(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else float("nan")


def ratio(a, b) -> float:
    try:
        return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")
    except TypeError:
        return float("nan")


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y against log x (nan with < 2 usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0 and math.isfinite(y)]
    if len(pts) < 2:
        return float("nan")
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else float("nan")
