"""Step time of the bilevel reweighters per ``method.meta_grad`` / ``method.lookahead_params``,
against ``erm`` in the same process (the bench's small size: LeNet5 / Fashion-MNIST, batch 128,
target batch 128, CPU).  ``python -m bench`` measures each method at its defaults only (its
``--set`` takes size overrides); this one compares the variants side by side: every variant is
built as a run builds it (``bench.common.build``) and the variants are stepped in turn, one
step each, so load from other processes falls on all of them alike.  Prints the min and median
per-step time and their ratio to ``erm``'s, and the forward / backward examples per step.

    python scripts/bench_meta_grad.py                       # l2rw mwnet blo × jvp, double_backward, ×(all, head)
    python scripts/bench_meta_grad.py --methods l2rw --variants jvp double_backward --steps 40
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import SIZES, build, overrides  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["l2rw", "mwnet", "blo"])
    ap.add_argument("--variants", nargs="+", metavar="META_GRAD[+PARAMS]",
                    default=["jvp", "double_backward", "jvp+head", "double_backward+head"])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant (after 3 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sz, warm, out = SIZES["small"], 3, tempfile.mkdtemp(prefix="selbench-bench-meta-grad-")

    def make(method, extra=()):
        ovr = [o if not o.startswith("runner.steps=") else f"runner.steps={warm + args.steps + 1}"
               for o in overrides(sz, method, "cpu", extra)]
        return build(ovr, out)

    built = {"erm": make("erm")}
    for m in args.methods:
        for v in args.variants:
            mg, *params = v.split("+")
            built[f"{m} {v}"] = make(m, [f"method.meta_grad={mg}", *(f"method.lookahead_params={p}" for p in params)])
    times, passes = {k: [] for k in built}, {}
    for k, b in built.items():
        for s in range(1, warm + 1):
            b.step_fn(s)
        passes[k] = (b.cost.forward, b.cost.backward)
    for s in range(warm + 1, warm + args.steps + 1):
        for k, b in built.items():
            t0 = time.perf_counter()
            b.step_fn(s)
            times[k].append(time.perf_counter() - t0)
    lo, mid = min(times["erm"]), statistics.median(times["erm"])
    print(f"{'variant':28s} {'min ms':>7s} {'×erm':>5s} {'median ms':>9s} {'×erm':>5s}  forward/backward per step")
    for k, b in built.items():
        t, (f0, b0) = times[k], passes[k]
        per = lambda now, then: (now - then) / args.steps  # noqa: E731
        print(f"{k:28s} {1e3 * min(t):7.1f} {min(t) / lo:5.2f} {1e3 * statistics.median(t):9.1f} "
              f"{statistics.median(t) / mid:5.2f}  {per(b.cost.forward, f0):g}/{per(b.cost.backward, b0):g}")


if __name__ == "__main__":
    main()
