"""Cost accounting: wall time and peak memory per phase, example-level pass counts.

Every run reports what its method cost so savings can be weighed against overhead
(CORDS reported 22 h of selection for a 32 min training run only in a footnote).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import torch


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` s; the max is the phase's peak."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.proc, self.interval = psutil.Process(), interval
        self.peak = self.proc.memory_info().rss
        self._stop_evt = threading.Event()

    def run(self):
        while not self._stop_evt.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


@dataclass
class CostTracker:
    """Collects ``phases[name] = {wall_s, peak_rss_mb, rss_delta_mb, peak_cuda_mb}`` and counters.

    Counters are in *examples*:

    - ``forward``: every example pushed through the model (a lookahead's virtual step counts too);
    - ``backward``: every example whose loss was back-propagated;
    - ``train``: every example whose loss entered a *real* parameter update (what the
      model is trained on; the equal-compute comparison is about this one).

    Each counter is also kept per phase (``phases[name]["forward"]`` …), so the training
    phase's counts divided by the steps are the examples per step.
    ``passes_over_pool = forward / n_pool``.

    **Shared artifacts** (``core/cache.py``): every cached artifact the run used is listed in
    ``shared_artifacts`` (name, key, what it cost to compute, whether this run computed it).
    What the ones it only *read* had cost is charged to the phase it read them in as
    ``shared_s``, and ``charged_s = wall_s + shared_s`` (the selection phase always has
    ``charged_s``), so a run's charged cost does not depend on which run of a sweep
    computed a shared artifact first.
    """

    device: torch.device = torch.device("cpu")
    phases: dict[str, dict] = field(default_factory=dict)
    forward: int = 0
    backward: int = 0
    train: int = 0
    shared: list = field(default_factory=list)  # [{name, key, compute_s, computed_here, phase}]
    _current: list = field(default_factory=list, repr=False)

    @contextmanager
    def phase(self, name: str):
        sampler = RssSampler()
        start_rss = sampler.peak
        sampler.start()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        self._current.append(name)
        try:
            yield
        finally:
            self._current.pop()
            if cuda:
                torch.cuda.synchronize(self.device)
            wall = time.perf_counter() - t0
            peak = sampler.stop()
            prev = self.phases.get(name, {})
            self.phases[name] = {**prev,
                "wall_s": prev.get("wall_s", 0.0) + wall,
                "peak_rss_mb": max(prev.get("peak_rss_mb", 0.0), peak / 2**20),
                "rss_delta_mb": max(prev.get("rss_delta_mb", 0.0), (peak - start_rss) / 2**20),
                "peak_cuda_mb": max(prev.get("peak_cuda_mb", 0.0),
                                    torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else 0.0),
            }

    def count(self, forward: int = 0, backward: int = 0, train: int = 0) -> None:
        self.forward += int(forward)
        self.backward += int(backward)
        self.train += int(train)
        if self._current:
            ph = self.phases.setdefault(self._current[-1], {})
            for k, v in (("forward", forward), ("backward", backward), ("train", train)):
                ph[k] = ph.get(k, 0) + int(v)

    def charge_shared(self, name: str, key: str, compute_s: float, computed_here: bool) -> None:
        """A cached artifact was used (``core/cache.py``); each (name, key) is charged once per run."""
        if any(a["name"] == name and a["key"] == key for a in self.shared):
            return
        self.shared.append({"name": name, "key": key, "compute_s": float(compute_s),
                            "computed_here": bool(computed_here),
                            "phase": self._current[-1] if self._current else "select"})

    def state_dict(self) -> dict:
        return {"phases": {k: dict(v) for k, v in self.phases.items()}, "forward": self.forward,
                "backward": self.backward, "train": self.train, "shared": [dict(a) for a in self.shared]}

    def load_state_dict(self, state: dict) -> None:
        self.phases = {k: dict(v) for k, v in state["phases"].items()}
        self.forward, self.backward = int(state["forward"]), int(state["backward"])
        self.train = int(state.get("train", 0))
        self.shared = [dict(a) for a in state.get("shared", [])]

    def _charged_phases(self) -> dict:
        phases = {k: dict(v) for k, v in self.phases.items()}
        for a in self.shared:
            if not a["computed_here"]:
                ph = phases.setdefault(a["phase"], {"wall_s": 0.0})
                ph["shared_s"] = ph.get("shared_s", 0.0) + a["compute_s"]
        for name, ph in phases.items():
            if "shared_s" in ph or name == "select":
                ph.setdefault("shared_s", 0.0)
                ph["charged_s"] = ph.get("wall_s", 0.0) + ph["shared_s"]
        return phases

    def summary(self, n_pool: int) -> dict:
        phases = self._charged_phases()
        total = sum(p.get("wall_s", 0.0) for p in self.phases.values())
        shared = sum(p.get("shared_s", 0.0) for p in phases.values())
        return {
            "phases": phases,
            "total_wall_s": total,
            "shared_s": shared,
            "total_charged_s": total + shared,
            "shared_artifacts": [{k: a[k] for k in ("name", "key", "compute_s", "computed_here")} for a in self.shared],
            "peak_rss_mb": max((p.get("peak_rss_mb", 0.0) for p in self.phases.values()), default=0.0),
            "peak_cuda_mb": max((p.get("peak_cuda_mb", 0.0) for p in self.phases.values()), default=0.0),
            "forward_examples": self.forward,
            "backward_examples": self.backward,
            "train_examples": self.train,
            "passes_over_pool": self.forward / max(n_pool, 1),
        }
