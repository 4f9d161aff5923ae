"""What the suite's sections share: build a method exactly as a run does, time steps, measure memory.

Every method is built by the real selbench pieces (the Hydra config, the runner's scenario /
adapter / optimiser, the registry, the job's per-kind preparation), so any registered method
works.  Times are medians of per-step wall times, taken side by side (round-robin over the
methods compared) in one process, so load from other processes hits all of them alike.
"""
from __future__ import annotations

import contextlib
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
    """A method ready to step, as ``runners/run/job.py`` prepares it (no record, no evaluation)."""
    from omegaconf import OmegaConf

    from selbench.core.cost import CostTracker
    from selbench.methods.registry import get_method
    from selbench.runners.run.context import make_context
    from selbench.runners.run.job import resolve_device, seed_everything
    from selbench.runners.run.loop import make_optimizer
    from selbench.runners.run.prepare import PREPARE
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
    adapter = runner.build_adapter(cfg, scenario, cost, device)
    optimizer = make_optimizer([p for p in adapter.model.parameters() if p.requires_grad], cfg.runner.optimizer)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=entry.cls, steps=int(cfg.runner.steps))
    if entry.cls.kind == "synthesizer":  # as the job does; synth_iters caps the iterations (0 = the method's own)
        ctx.extra["max_steps"] = int(synth_iters) if synth_iters else cfg.scale.get("max_steps")
    method = entry.cls(OmegaConf.to_object(cfg.method))
    sync(device)
    t0 = time.perf_counter()
    with cost.phase("setup"):
        prepared = PREPARE[entry.cls.kind](method, ctx, optimizer, cost)
    sync(device)
    return Built(entry.name, entry.cls.kind, prepared.step_fn, cost, device, time.perf_counter() - t0,
                 dict(prepared.summary), len(scenario.pool), adapter.model, ctx, cfg, method)


def state_bytes(method, shared=()) -> int:
    """Tensor bytes the method object holds across steps (per-example weights, running sums, its
    own networks and their optimisers' state, cached embeddings), not counting ``shared`` objects
    (the model, the main optimiser, the run context: the same for every method).  The step peak
    (:class:`Memory`) is measured above this state; together they are the method's footprint."""
    seen_ids, seen_storage, total = {id(o) for o in shared}, set(), 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen_storage:
            seen_storage.add(key)
            total += t.untyped_storage().nbytes()

    def walk(o, depth: int) -> None:
        if id(o) in seen_ids or depth > 6:
            return
        seen_ids.add(id(o))
        if isinstance(o, torch.Tensor):
            add(o)
        elif isinstance(o, torch.nn.Module):
            for t in [*o.parameters(), *o.buffers()]:
                add(t)
        elif isinstance(o, torch.optim.Optimizer):
            for st in o.state.values():
                walk(st, depth + 1)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v, depth + 1)
        elif isinstance(o, (list, tuple, set)):
            for v in o:
                walk(v, depth + 1)
        elif type(o).__module__.startswith("selbench.") and hasattr(o, "__dict__"):
            walk(vars(o), depth + 1)

    walk(vars(method), 0)
    return total


def profiled_steps(b: "Built", warm: int, steps: int) -> tuple["Memory", dict]:
    """Steps ``1 … warm + steps`` of ``b``: ``warm − 1`` warm-up steps (first-step caches, lazy
    state), one lead-in step inside the profile and ``steps`` steps in the memory window (their
    times are not used: the CPU profiler slows them down).  Returns the memory and the window's
    forward / backward / training examples per step."""
    def counters():
        return b.cost.forward, b.cost.backward, b.cost.train

    time_steps(b.step_fn, warm - 1, b.device)
    with Memory(b.device) as mem:
        time_steps(b.step_fn, 1, b.device, start=warm)
        before = counters()
        with mem.window():
            time_steps(b.step_fn, steps, b.device, start=warm + 1)
        per_step = [(a - z) / steps for a, z in zip(counters(), before)]
    return mem, dict(zip(("forward_per_step", "backward_per_step", "examples_per_step"), per_step))


def method_state_mb(b: "Built") -> float:
    """:func:`state_bytes` of ``b``'s method, leaving out what every method shares (MB)."""
    shared = (b.model, b.ctx, b.ctx.adapter, getattr(b.method, "optimizer", None))
    return state_bytes(b.method, shared) / 2**20


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


class Memory:
    """Peak tensor memory of the steps run inside :meth:`window`, above what was allocated when
    the window opened.

    CUDA: the caching allocator's peak (``max_memory_allocated``) above the allocation at the
    window's start.  CPU: the same quantity from the profiler's allocation events
    (``profile_memory``: every tensor allocation and free, in order, with its size), so a CPU
    figure counts the tensors a step holds at once, as the CUDA one does, instead of the process
    RSS (allocator caching and the OS make RSS growth noise at these sizes: a step identical to
    ``erm``'s read 2.1× it).  The profiler does not see the free of a block allocated before it
    started, so run one step inside the profile before the window (gradients and per-step
    buffers are then reallocated in view).  RSS growth is kept as ``rss_mb``.  The profiler slows
    steps down: time them outside it.

        with Memory(device) as mem:
            step(1)                  # lead-in
            with mem.window():
                step(2); step(3)
        mem.mb
    """

    MARK = "bench.memory_window"

    def __init__(self, device):
        self.device = torch.device(device)

    def __enter__(self):
        from selbench.core.cost import RssSampler
        self.prof = self.cuda_mb = self.tensor_mb = None
        if self.device.type != "cuda":
            from torch.profiler import ProfilerActivity, profile
            self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self.sampler = RssSampler(interval=0.005)
        self.rss0 = self.sampler.peak
        self.sampler.start()
        if self.prof is not None:
            self.prof.__enter__()
        return self

    @contextlib.contextmanager
    def window(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield
            sync(self.device)
            self.cuda_mb = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        else:
            with torch.profiler.record_function(self.MARK):
                yield

    def __exit__(self, *exc):
        if self.prof is not None:
            self.prof.__exit__(*exc)
        self.rss_mb = max(0.0, (self.sampler.stop() - self.rss0) / 2**20)
        if self.prof is not None:
            self.tensor_mb = peak_allocated(self.prof, self.MARK) / 2**20 if exc[0] is None else None
        return False

    @property
    def mb(self) -> float:
        return self.cuda_mb if self.cuda_mb is not None else self.tensor_mb


def peak_allocated(prof, mark: str) -> float:
    """The most CPU tensor memory held at once during the ``mark`` range of a profile, above the
    level at its start, in bytes: a running sum of allocation sizes (frees are negative)."""
    from torch._C._profiler import _EventType
    sizes, window, stack = [], None, list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
        elif node.name == mark:
            window = (node.start_time_ns, node.end_time_ns)
        stack.extend(node.children)
    if window is None:
        return float("nan")
    live, base, peak = 0, None, 0
    for t, n in sorted(sizes):
        if t >= window[0] and base is None:
            base = peak = live
        if t > window[1]:
            break
        live += n
        if base is not None:
            peak = max(peak, live)
    return float(peak - base) if base is not None else 0.0
