"""Memory of a method's steps and of the state it keeps between them.

The step's working memory is the peak of live tensors (:class:`Memory`: the CUDA allocator's
peak on a GPU, the profiler's allocation events on the CPU); the state is the tensors the method
object holds across steps (:func:`state_bytes`).  Together they are the method's footprint.
"""
from __future__ import annotations

import contextlib

import torch

from bench.common import Built, sync, time_steps


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


def profiled_steps(b: Built, warm: int, steps: int) -> tuple["Memory", dict]:
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


def method_state_mb(b: Built) -> float:
    """:func:`state_bytes` of ``b``'s method, leaving out what every method shares (MB)."""
    shared = (b.model, b.ctx, b.ctx.adapter, getattr(b.method, "optimizer", None))
    return state_bytes(b.method, shared) / 2**20


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
