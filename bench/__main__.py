"""selbench's benchmark suite, one command (from the repo root):

    python -m bench                                 # every section at the default size, on this machine
    python -m bench --size tiny --inproc            # seconds: the unit test's size
    python -m bench --size full --device cuda       # the issue's ranges (pool 10k → 58k, wider models)
    python -m bench --sections methods --methods erm bads l2rw mwnet blo
    python -m bench --sections methods --methods erm l2rw l2rw:meta_grad=double_backward,lookahead_params=head
    python -m bench --check-overhead 0.95           # exit 1 if the harness is slower than 0.95× a bare loop
    python -m bench --modality language             # text: every language method on the instruction mixture

Sections: ``overhead`` (harness ``erm`` vs a bare PyTorch loop), ``methods`` (every registered
method's step time / memory relative to ``erm`` at equal examples per step, selection cost and
payback), ``grads`` (per-example gradient throughput), ``scaling`` (pool size, model size,
log-log slopes).  Methods come from the registry (``selbench.methods.registry.registered()``);
one that fails is a row with its reason.  ``--modality language`` runs the ``methods`` section on
the instruction mixture with the tiny GPT (``bench.common.TEXT_SIZES``); the other sections are
vision-only.  Writes ``bench.json`` (everything) and one CSV per
section to ``--out`` (default ``results/bench/<size>-<device>``) and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SIZES, split_spec, text_size
from bench.report import print_tables, write_csv

SECTIONS = ("overhead", "methods", "grads", "scaling")


def _parse(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--methods", nargs="+", help="registered method names, or variants name:key=value,... "
                    "(method.* overrides; default: every registered method of the modality)")
    ap.add_argument("--scaling-methods", nargs="+", help="methods for the scaling section (default: as --methods)")
    ap.add_argument("--modality", choices=("vision", "language"), default="vision",
                    help="language: the methods section on the instruction mixture with the tiny GPT")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--inproc", action="store_true", help="measure every method in this process (fast; memory "
                    "figures then leak between methods)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="size override, e.g. pool=20000")
    ap.add_argument("--out", help="output folder (default results/bench/<size>-<device>)")
    ap.add_argument("--check-overhead", type=float, default=None, metavar="R",
                    help="exit 1 if the harness runs slower than R × the bare loop's speed (the regression check)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement in this process
    return ap.parse_args(argv)


def _size(args) -> dict:
    sz = dict(SIZES[args.size]) if args.modality == "vision" else text_size(args.size, SIZES[args.size])
    for kv in args.set:
        k, v = kv.split("=", 1)
        sz[k] = [int(x) for x in v.split(",")] if isinstance(sz.get(k), list) else type(sz.get(k, ""))(v)
    return sz


def _device(name: str) -> str:
    import torch
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _work(section: str, method: str | None, sz: dict, device: str, results_dir: str) -> dict:
    if section == "methods":
        from bench.methods import measure_method
        return measure_method(method, sz, device, results_dir)
    if section == "scaling":
        from bench.scaling import measure_scaling
        return measure_scaling(method, sz, device, results_dir)
    raise ValueError(section)


def _isolated(section: str, method: str, args, sz: dict, results_dir: str) -> dict:
    job = json.dumps({"section": section, "method": method, "sz": sz, "device": args.device,
                      "results_dir": results_dir, "threads": args.threads})
    try:
        proc = subprocess.run([sys.executable, "-m", "bench", "--worker", job], capture_output=True, text=True,
                              cwd=str(Path(__file__).resolve().parent.parent), timeout=sz.get("timeout"))
    except subprocess.TimeoutExpired:
        return {"method": method, "status": f"failed: timeout after {sz.get('timeout')} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "status": f"failed: worker exited {proc.returncode}: {tail}"[:300]}
    return json.loads(line[len("RESULT "):])


def _methods(args, modality: str = "vision") -> tuple[list[str], list[dict]]:
    from selbench.methods.registry import get_method, registered
    names = list(args.methods or sorted(registered()))
    if "erm" in names:
        names.remove("erm")
    keep, skipped = ["erm"], []
    for n in names:
        try:
            cls = get_method(split_spec(n)[0]).cls
            mods = getattr(cls, "modalities", (modality,))
        except Exception as e:  # noqa: BLE001
            skipped.append({"method": n, "status": f"failed: {type(e).__name__}: {e}"[:300]})
            continue
        if getattr(cls, "needs_input_file", False):  # from_selection: a fixed-set trainer on a user's file
            skipped.append({"method": n, "status": "skipped: trains on a given file (method.path)"})
            continue
        (keep.append(n) if modality in tuple(mods) else
         skipped.append({"method": n, "status": f"skipped: modalities {tuple(mods)}"}))
    return keep, skipped


def main(argv=None) -> int:
    import torch
    threads = torch.get_num_threads()
    try:  # called in-process by tests: leave torch's thread count as it was
        return _main(argv)
    finally:
        torch.set_num_threads(threads)


def _main(argv=None) -> int:
    args = _parse(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.worker:
        job = json.loads(args.worker)
        if job.get("threads"):
            import torch
            torch.set_num_threads(job["threads"])
        print("RESULT " + json.dumps(_work(job["section"], job["method"], job["sz"], job["device"],
                                           job["results_dir"]), default=str))
        return 0
    args.device = _device(args.device)
    sz = _size(args)
    if args.modality == "language":
        if set(args.sections) - {"methods"}:
            print(f"bench: --modality language runs the methods section only (not {sorted(set(args.sections) - {'methods'})})",
                  file=sys.stderr)
        args.sections = ["methods"]
    out = Path(args.out or f"results/bench/{args.size}-{args.device}" + ("-language" if args.modality == "language" else ""))
    out.mkdir(parents=True, exist_ok=True)
    results_dir = tempfile.mkdtemp(prefix="selbench-bench-")
    import torch
    meta = {"size": args.size, "modality": args.modality, "sizes": sz, "device": args.device, "threads": args.threads or torch.get_num_threads(),
            "inproc": args.inproc, "started": time.time(), "loadavg_start": os.getloadavg(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()}
    res: dict = {"meta": meta}
    if "overhead" in args.sections:
        from bench.overhead import measure_overhead
        res["overhead"] = measure_overhead(sz, args.device, results_dir)
    names, skipped = _methods(args, args.modality)
    if "methods" in args.sections:
        rows = []
        erm = None
        for n in names:
            if args.inproc:
                from bench.common import build, overrides, time_steps
                from bench.methods import measure_method
                if erm is None:  # one erm reference, stepped side by side with each method in turn
                    erm = build(overrides(sz, "erm", args.device), results_dir)
                    time_steps(erm.step_fn, sz["warmup"], erm.device)
                rows.append(measure_method(n, sz, args.device, results_dir, erm=erm))
            else:
                rows.append(_isolated("methods", n, args, sz, results_dir))
            print(f"bench: {n}: {rows[-1]['status']}", file=sys.stderr, flush=True)
        from bench.methods import finish
        res["methods"] = finish(rows, sz) + skipped
    if "grads" in args.sections:
        from bench.grads import measure_grads
        g = sz["grad_n"], sz["grad_loop"]
        res["grads"] = [measure_grads("mlp", 256, *g, device=args.device),
                        measure_grads("tiny_gpt", 64, *g, device=args.device)]
    if "scaling" in args.sections:
        rows = []
        for n in args.scaling_methods or names:
            rows.append(_work("scaling", n, sz, args.device, results_dir) if args.inproc
                        else _isolated("scaling", n, args, sz, results_dir))
            print(f"bench: scaling {n}: {rows[-1]['status']}", file=sys.stderr, flush=True)
        res["scaling"] = rows
    meta["wall_s"], meta["loadavg_end"] = time.time() - meta["started"], os.getloadavg()
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    for section in SECTIONS:
        if section in res:
            write_csv(out / f"{section}.csv", res[section])
    print_tables(res)
    print(f"\nbench: wrote {out}/bench.json and the per-section CSVs ({meta['wall_s']:.0f} s)")
    if args.check_overhead is not None:
        ok, msg = overhead_check(res, args.check_overhead)
        print(f"bench: {msg}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    return 0


def overhead_check(res: dict, threshold: float) -> tuple[bool, str]:
    """The regression check: the harness runs at ≥ ``threshold`` × the bare loop's speed."""
    r = res.get("overhead", {}).get("speed_ratio")
    if not isinstance(r, float) or not r >= threshold:
        return False, f"FAILED: harness speed {r} < {threshold} × the bare loop"
    return True, f"harness speed {r:.3f} ≥ {threshold} × the bare loop"


if __name__ == "__main__":
    sys.exit(main())
