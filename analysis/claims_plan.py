"""The claims pass's plan: which multiruns ``scripts/claims.sh`` (``make claims``) launches.

Every claim of ``analysis.claims_registry`` names a preset (a pattern), the ``where`` that narrows
it and the methods it compares; :func:`plan` merges them into one multirun per preset file and
``where``.  This module expands the patterns over ``conf/experiment/*.yaml`` and counts each
multirun's jobs (methods × seeds × the preset's own other sweep axes, e.g. DsDm's budgets), so the
pass can show its progress and time left as one whole.

    python -m selbench.analysis.claims_plan --seeds 0,1,2 [--presets 'quickstart spice/*'] [--extra '…']

prints one tab-separated line per multirun: preset, its overrides, methods, jobs, and a reason
when the multirun cannot run here (a dataset that needs ``dataset.root``).  Reads YAML only:
nothing of the methods or runners is imported.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from pathlib import Path

import yaml

from selbench.analysis.claims_registry import Claim, load_plugin_claims

CONF = Path(__file__).resolve().parent.parent / "conf"
#: datasets read from a torchvision root the user supplies (``dataset.root=DIR``); nothing is downloaded
ROOT_DATASETS = ("cifar10", "cifar100", "mnist")


def plan(claims: list[Claim] | None = None) -> list[tuple[str, tuple, tuple[str, ...]]]:
    """``(preset pattern, overrides, methods)`` for every distinct preset and ``where`` (+ the claim's
    own ``runs_with``): the multiruns that measure every claim.  Methods in first-mention order."""
    out: dict[tuple, dict[str, None]] = {}
    for c in load_plugin_claims() if claims is None else claims:
        out.setdefault((c.preset, c.where + c.runs_with), {}).update(dict.fromkeys(c.methods()))
    return [(p, w, tuple(m)) for (p, w), m in out.items()]


def preset_files(pattern: str) -> list[str]:
    """Preset names (``bads/denoise``) under ``conf/experiment`` matching ``pattern``."""
    root = CONF / "experiment"
    names = sorted(str(f.relative_to(root).with_suffix("")) for f in root.rglob("*.yaml"))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def n_values(text) -> int:
    """How many values a sweep override stands for: ``a,b,c`` → 3, ``range(0,20)`` → 20."""
    s = str(text).strip()
    m = re.fullmatch(r"range\(\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?(?:,\s*(-?\d+)\s*)?\)", s)
    if m:
        a, b, step = (int(g) if g is not None else None for g in m.groups())
        start, stop = (0, a) if b is None else (a, b)
        return len(range(start, stop, step or 1))
    return len([v for v in s.split(",") if v.strip()]) if s else 1


def _preset_yaml(name: str) -> dict:
    return yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text()) or {}


def preset_dataset(name: str) -> str | None:
    """The dataset a preset selects (``- override /dataset: X`` in its defaults), if any."""
    for d in _preset_yaml(name).get("defaults") or []:
        if isinstance(d, dict):
            for k, v in d.items():
                if k.replace("override ", "").strip() in ("/dataset", "dataset"):
                    return str(v)
    return None


def jobs(name: str, overrides: tuple, methods: tuple[str, ...], seeds: str) -> int:
    """The multirun's job count: methods × seeds × every other axis the preset itself sweeps (an
    axis the overrides set is not swept)."""
    params = ((_preset_yaml(name).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    set_here = {k for k, _ in overrides}
    n = len(methods) * n_values(seeds)
    for k, v in params.items():
        if k not in ("method", "seed") and k not in set_here:
            n *= n_values(v)
    for _, v in overrides:
        n *= n_values(v)
    return n


def rows(seeds: str, presets: str = "*", extra: str = "", claims: list[Claim] | None = None) -> list[dict]:
    """One row per multirun of the pass (``presets``: space-separated patterns over the preset names; the
    multiruns run in the order of the first pattern each matches, then in the registry's order)."""
    keep = presets.split() or ["*"]
    out = []
    for pattern, overrides, methods in plan(claims):
        for name in preset_files(pattern):
            rank = next((i for i, p in enumerate(keep) if fnmatch.fnmatchcase(name, p)), None)
            if rank is None:
                continue
            ds = preset_dataset(name)
            skip = (f"needs dataset.root for {ds} (EXTRA='dataset.root=DIR')"
                    if ds in ROOT_DATASETS and "dataset.root=" not in extra else "")
            out.append({"rank": rank, "preset": name, "overrides": " ".join(f"{k}={v}" for k, v in overrides),
                        "methods": ",".join(methods), "jobs": jobs(name, overrides, methods, seeds), "skip": skip})
    return sorted(out, key=lambda r: r["rank"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selbench.analysis.claims_plan", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--presets", default="*", help="space-separated patterns over preset names (default: all)")
    ap.add_argument("--extra", default="", help="the extra overrides the pass adds (dataset.root=… lifts a skip)")
    args = ap.parse_args(argv)
    for r in rows(args.seeds, args.presets, args.extra):
        print("\t".join([r["preset"], r["overrides"] or "-", r["methods"], str(r["jobs"]), r["skip"] or "-"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
