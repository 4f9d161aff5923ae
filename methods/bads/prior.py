"""BADS's prior bookkeeping, kept on the device so that a step reads nothing to the host: the
running mean ``w̄`` of recent batch-mean weights (:class:`WindowMean`) and σ auto's loop-gain
tracking (:class:`PriorGain`).  The loop gain ``G`` and the σ auto rule are in
``methods/bads/bads.py``'s docstring and ``docs/methods/bads.md``.

Every value is a 0-d float64 tensor on the model's device; what used to be Python branches on
those values (``gain > 0``, "σ not set yet", "gain above its limit") is ``torch.where``.  The
one host read left is the loop-gain warning's flag: read on step 1 (where σ auto measures σ and
a too-stiff fixed σ shows) and then once per evaluation point (``BADS.pool_weights``, which the
runner calls there and which reads the pool's weights anyway); the flag keeps the step, the
running gain and σ of the first step that crossed the limit, so the message is what a per-step
check would have said.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor


class WindowMean:
    """Mean of the last ``size`` values appended: a float64 ring buffer on the device (appending a
    0-d tensor is a device copy, no host read).  Has the part of a deque's interface BADS and its
    tests use (``append``, ``extend``, ``len``)."""

    def __init__(self, size: int, device, values: Iterable = ()):
        self.size, self.n = int(size), 0  # n: values appended so far (host-side count)
        self.buf = torch.zeros(self.size, dtype=torch.float64, device=device)
        self.extend(values)

    def append(self, v) -> None:
        self.buf[self.n % self.size] = v.detach().double() if isinstance(v, Tensor) else float(v)
        self.n += 1

    def extend(self, values: Iterable) -> None:
        for v in values:
            self.append(v)

    def __len__(self) -> int:
        return min(self.n, self.size)

    def mean(self) -> Tensor:
        return self.buf[:len(self)].sum() / len(self)

    def state_dict(self) -> dict:
        return {"buf": self.buf.detach().clone(), "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.buf.copy_(state["buf"])
        self.n = int(state["n"])


class PriorGain:
    """σ (fixed: a number; auto: a 0-d tensor once measured, ``None`` before) and the prior's
    realised loop gain ``G = G·σ² / σ²`` with its running mean, all on the device.

    σ auto: on the first batch with a non-zero ``‖∂S̄/∂φ‖²``, σ puts ``G`` ``margin``× below
    ``limit``; afterwards σ is only widened, to keep the running mean of ``G·σ²`` (hence of
    ``G``) √margin× below it."""

    def __init__(self, sigma: Optional[float], margin: float, limit: float, s_avg: int, device):
        self.auto, self.margin, self.limit, self.s_avg, self.device = sigma is None, margin, limit, s_avg, device
        self.sigma = None if sigma is None else float(sigma)
        self.gain_s2_avg = self.seen = None  # σ auto: running mean of G·σ², and whether it has a value
        self.gain = self.gain_avg = None     # the last G and its running mean
        self.over: Optional[Tensor] = None   # [step, running G, σ] of the first step over the limit (step 0: none)
        self.warned = False

    def _ema(self, avg: Optional[Tensor], v: Tensor) -> Tensor:
        return v if avg is None else avg + (v - avg) / self.s_avg

    def update(self, gain_s2: Optional[Tensor], step: int) -> None:
        """One step's ``G·σ²`` (``None``: the objectives ran without autograd, so nothing measured)."""
        f64 = dict(dtype=torch.float64, device=self.device)
        if self.auto and gain_s2 is not None:
            pos = gain_s2 > 0
            if self.gain_s2_avg is None:
                self.gain_s2_avg, self.seen = torch.zeros((), **f64), torch.zeros((), dtype=torch.bool, device=self.device)
            avg = torch.where(self.seen, self._ema(self.gain_s2_avg, gain_s2), gain_s2)
            self.gain_s2_avg, self.seen = torch.where(pos, avg, self.gain_s2_avg), self.seen | pos
            old = torch.zeros((), **f64) if self.sigma is None else self.sigma  # 0: not measured yet
            need = torch.sqrt(torch.where(old > 0, avg * math.sqrt(self.margin), gain_s2 * self.margin) / self.limit)
            self.sigma = torch.where(pos, torch.maximum(old, need), old)
        assert self.sigma is not None, "σ auto needs the weights' gradient (objectives ran without autograd)"
        g = gain_s2 if gain_s2 is not None else torch.zeros((), **f64)
        self.gain = g / self.sigma ** 2
        self.gain_avg = self._ema(self.gain_avg, self.gain)
        if self.over is None:
            self.over = torch.zeros(3, **f64)
        sigma = self.sigma if isinstance(self.sigma, Tensor) else torch.full((), self.sigma, **f64)
        now = torch.stack([torch.full((), float(step), **f64), self.gain_avg, sigma])  # fills: no host→device copy
        self.over = torch.where((self.over[0] == 0) & (self.gain_avg > self.limit), now, self.over)

    def two_sigma2(self, like: Tensor):
        """``2σ²``, the prior's divisor: a number (σ fixed) or σ auto's float64 tensor cast to ``like``'s
        dtype (as a number would enter ``like``'s arithmetic)."""
        s2 = 2 * self.sigma ** 2
        return s2.to(like.dtype) if isinstance(s2, Tensor) else s2

    def warn_if_over(self, warn: Callable[[str], None], n_pool: int, batch: int) -> None:
        """Say once (``ctx.warn``) that the running gain crossed its limit: one host read."""
        if self.warned or self.over is None:
            return
        step, gain, sigma = self.over.tolist()
        if step == 0:
            return
        self.warned = True
        ok = sigma * math.sqrt(gain * self.margin / self.limit)
        warn(f"bads prior loop gain {gain:.3g} > {self.limit:.3g} at step {int(step)} (N_pool={n_pool}, |B|={batch}, "
             f"σ={sigma:.3g}): the weights' running sum will oscillate or collapse; widen method.sigma (≈{ok:.2g} "
             f"leaves a {self.margin:g}× margin) or lower method.lr_w")

    _STATE = ("sigma", "gain_s2_avg", "seen", "gain", "gain_avg", "over", "warned")

    def state_dict(self) -> dict:
        return {k: (v.detach().clone() if isinstance(v, Tensor) else v)
                for k, v in ((k, getattr(self, k)) for k in self._STATE)}

    def load_state_dict(self, state: dict) -> None:
        for k in self._STATE:
            v = state.get(k)
            setattr(self, k, v.to(self.device) if isinstance(v, Tensor) else v)
