"""``docs/claims.md`` from one claims pass: how it was run and how long it took, which multiruns were
not measured and why, then the verdict table — every number read from the pass's results dir
(``times.tsv`` that ``scripts/claims.sh`` appends per multirun, and the run records), none typed in.

    python -m selbench.analysis.claims_doc results/claims-small --out docs/claims.md \\
        --command 'make claims SEEDS=0,1,2' [--stopped 'why the pass stopped before the end'] [--preface F.md]

A planned multirun with no line in ``times.tsv`` was not reached; ``--stopped`` says why (e.g. a
deadline), and the claims it would have measured read "not measured" in the table.
"""
from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime, timezone
from pathlib import Path

from selbench.analysis.claims_plan import rows
from selbench.analysis.claims_table import claims_table
from selbench.analysis.paper import equal, lookup
from selbench.analysis.records import load_runs
from selbench.core.io import atomic_write_bytes


def read_times(results: Path) -> list[dict]:
    f = results / "claims" / "times.tsv"
    if not f.exists():
        return []
    with f.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _minutes(s) -> str:
    try:
        x = float(s)
    except (TypeError, ValueError):
        return "—"
    return f"{x / 60:.1f} min"


def recorded(df, preset: str, overrides: str) -> int:
    """How many run records belong to the multirun ``preset`` + ``overrides`` (its own sweep keys —
    ``method.subset=range(…)`` — are not filters)."""
    if df.empty or "experiment" not in df.columns:
        return 0
    sub = df[df["experiment"] == preset]
    for kv in overrides.split():
        k, v = kv.split("=", 1)
        if "range(" in v or "," in v or k == "budget":
            continue
        sub = sub[[equal(lookup(r, k), v) for _, r in sub.iterrows()]] if len(sub) else sub
    return len(sub)


def pass_section(results: Path, command: str, stopped: str, df=None) -> list[str]:
    """The how-and-how-long section and the table of multiruns (measured, skipped, failed, not reached)."""
    times = read_times(results)
    seeds = times[0]["seeds"] if times else "0,1,2"
    done: dict[tuple, dict] = {}  # a multirun launched more than once (a relaunch resumes): its times add up
    for t in times:
        key = (t["preset"], t["overrides"].strip())
        prev = done.get(key)
        walls = [float(x["wall_s"]) for x in (prev, t) if x and x.get("wall_s")]
        done[key] = {**t, "wall_s": sum(walls) if walls else ""}
    planned = rows(seeds)
    measured = [float(t["wall_s"]) for t in times if t.get("wall_s")]
    scales = sorted({t["scale"] for t in times})
    lines = [f"Produced by `{command}` (scale={', '.join(scales) or '—'}, seeds {seeds}, results in "
             f"`{results}`); table written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
             f"Measured duration of the multiruns that ran: **{sum(measured) / 60:.0f} min** in all "
             f"({len(measured)} multiruns, each wall time below), on a 2-core machine shared with other "
             "work while it ran, so these times are upper bounds for an idle machine.", "",
             "| multirun | runs | wall time | status |", "|---|---|---|---|"]
    for r in planned:
        t = done.get((r["preset"], r["overrides"]))
        name = f"`experiment={r['preset']}{' ' + r['overrides'] if r['overrides'] else ''}`"
        if t is not None:
            status = t["status"]
        elif r["skip"]:
            status = f"skipped: {r['skip']}"
        else:
            n = recorded(df, r["preset"], r["overrides"]) if df is not None else 0
            status = (f"**partly measured** — {n} of {r['jobs']} runs recorded when the pass stopped" if n else
                      "**not measured** — not reached") + (f": {stopped}" if stopped else "")
        lines.append(f"| {name} | {r['jobs']} | {_minutes(t['wall_s']) if t else '—'} | {status} |")
    return lines


def write_doc(results, out, command: str, stopped: str = "", preface: str = "") -> str:
    """Write the page; ``preface``: prose placed after the pass section (context, never a verdict)."""
    results = Path(results)
    runs = load_runs([results])
    table = claims_table(runs.df, records=runs.records)
    body = ["# Claims verdict table", "",
            "Every documented claim (`analysis/claims_registry.py`) judged from run records by "
            "`selbench-report --claims`; each claim's setting and why it lets the paper's mechanism show are "
            "in the table's last column. How to read a verdict: the notes under the table.", "",
            "## The pass", "", *pass_section(results, command, stopped, runs.df), "", *([preface.strip(), ""] if preface else []),
            f"{len(runs.df)} run records read ({len(runs.failed)} failed runs, {len(runs.errors)} unreadable "
            "or malformed).", "", "## Verdicts", "", table.to_markdown(), ""]
    text = "\n".join(body)
    atomic_write_bytes(Path(out), text.encode())
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selbench.analysis.claims_doc", description=__doc__.splitlines()[0])
    ap.add_argument("results", help="the claims pass's results dir (scripts/claims.sh RESULTS_DIR)")
    ap.add_argument("--out", default="docs/claims.md")
    ap.add_argument("--command", default="make claims", help="the command that ran the pass, as documented")
    ap.add_argument("--stopped", default="", help="why multiruns without a times.tsv line were not reached")
    ap.add_argument("--preface", help="a Markdown file placed after the pass section (context, never verdicts)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"claims_doc: error: no results dir {args.results}", file=sys.stderr)
        return 2
    preface = Path(args.preface).read_text() if args.preface else ""
    write_doc(args.results, args.out, args.command, args.stopped, preface)
    print(f"claims_doc: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
