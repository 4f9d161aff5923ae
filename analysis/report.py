"""``selbench-report``: run records → tables, figures and one ``report.md``.

    selbench-report results/                      # every record under results/
    selbench-report 'results/digits-*' --out report_digits
    selbench-report results/ --metric test_balanced_accuracy
    selbench-report results/ --baseline random       # paired Δ against random instead of erm
    selbench-report --claims results/                 # the claims verdict table only

Reads only the local ``record.json`` files (never wandb).  Writes into ``--out``
(default ``<first path>/report`` for a directory, else ``report``):

* ``runs.csv`` — the tidy DataFrame, one row per run (failed runs included);
* ``tables/<name>.{md,tex,csv}`` — comparison (long and wide), selection quality,
  paper vs reproduced, failed runs, runs with warnings, unreadable or malformed records (skipped, each named with what is wrong);
* ``figures/<name>.png``;
* ``report.md`` — all of the above with the sweep's command lines and versions.

``--claims`` writes only ``claims.md`` and ``claims.csv`` (atomically): every claim of
``analysis.claims_registry`` with its verdict computed from the records (``analysis.claims``).

Exit status: 0 when a report was written, 1 when there were no readable records, 2
for bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selbench.analysis import figures as figs
from selbench.analysis import run_lists
from selbench.analysis.comparison import comparison
from selbench.analysis.comparison_wide import comparison_wide
from selbench.analysis.lds import lds_table, write_summary as write_lds_summary
from selbench.analysis.paper_table import paper_vs_reproduced
from selbench.analysis.quality import quality
from selbench.analysis.tables import Table
from selbench.analysis.records import Runs, load_runs


def build_report(paths, out_dir, metric: str = "test_accuracy", with_figures: bool = True,
                 baseline: str = "erm") -> dict:
    """Write everything; returns ``{"runs": Runs, "tables": {name: Table}, "figures": {name: path|None},
    "report": path}``."""
    runs = load_runs(paths)
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    if runs.df.empty:
        return {"runs": runs, "tables": {}, "figures": {}, "report": _write_empty(runs, out, paths)}
    runs.df.to_csv(out / "runs.csv", index=False)
    long = comparison(runs.df, metric, baseline)
    tabs = {"comparison_wide": comparison_wide(long, metric), "comparison": long,
            "quality": quality(runs.df), "paper_vs_reproduced": paper_vs_reproduced(runs.df, long, metric),
            "failures": run_lists.failures(runs.df), "warnings": run_lists.warnings(runs.df),
            "unreadable": run_lists.corrupt(runs.errors), "lds": lds_table(runs.records)}
    write_lds_summary(runs.records, out)  # lds.json: the LDS of every complete lds_subset sweep
    for t in tabs.values():
        t.write(out / "tables")
    figures = figs.render_all(runs, out / "figures", metric) if with_figures else {}
    report = out / "report.md"
    report.write_text(_markdown(runs, tabs, figures, out, paths, metric))
    return {"runs": runs, "tables": tabs, "figures": figures, "report": str(report)}


def _write_empty(runs: Runs, out: Path, paths) -> str:
    lines = ["# selbench report", "", f"No readable run records under: {', '.join(map(str, paths))}."]
    if runs.errors:
        lines += ["", "## Unreadable or malformed record files", "", run_lists.corrupt(runs.errors).to_markdown()]
    p = out / "report.md"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def _markdown(runs: Runs, tabs: dict, figures: dict, out: Path, paths, metric: str) -> str:
    df = runs.df
    n_ok, n_failed = int((df["status"] == "ok").sum()), int((df["status"] != "ok").sum())
    L = ["# selbench report", "",
         f"{len(df)} runs ({n_ok} ok, {n_failed} failed"
         + (f", {len(runs.errors)} unreadable or malformed record files" if runs.errors else "") + ") from "
         + ", ".join(f"`{p}`" for p in paths) + f". Primary metric: `{metric}`.", ""]
    if runs.errors:
        L += ["**Unreadable or malformed record files** (skipped: not included in any table):", "", tabs["unreadable"].to_markdown(), ""]
    if n_failed:
        L += [f"**Failed runs** ({n_failed}; kept out of the means, counted in the `seeds` column):", "",
              tabs["failures"].to_markdown(), ""]
    n_warned = int((df["n_warnings"] > 0).sum()) if "n_warnings" in df.columns else 0
    if n_warned:
        n_w = len(tabs["warnings"].data)
        L += [f"**Runs with warnings** ({n_warned} run{'s' * (n_warned != 1)}, {n_w} warning{'s' * (n_w != 1)}; "
              "recorded by the runs themselves, see each run's `record.json`):", "",
              tabs["warnings"].to_markdown(), ""]
    L += ["## Comparison", "", tabs["comparison_wide"].to_markdown(), "", "### Per setting", "",
          tabs["comparison"].to_markdown(), ""]
    if len(tabs["paper_vs_reproduced"].data):
        L += ["## Paper vs reproduced", "", tabs["paper_vs_reproduced"].to_markdown(), ""]
    if len(tabs["quality"].data):
        L += ["## Selection quality", "", tabs["quality"].to_markdown(), ""]
    if len(tabs["lds"].data):
        L += ["## Linear datamodeling score", "", tabs["lds"].to_markdown(), ""]
    L += ["## Figures", ""]
    for name, (_, title, why) in figs.FIGURES.items():
        p = figures.get(name)
        if p:
            L += [f"### {title}", "", f"![{title}]({Path(p).relative_to(out).as_posix()})", ""]
        elif figures:
            L += [f"- _{title}: not drawn ({why})._"]
    L += ["", "## Provenance", "", "Command lines (as recorded in the runs):", ""]
    for cmd, n in df["command"].fillna("(not recorded)").value_counts().sort_index().items():
        L += [f"- `{cmd}` ({n} runs)"]
    L += [""]
    ver_cols = [c for c in df.columns if c.startswith("ver.")] + ["git.commit", "git.dirty"]
    vers = df[[c for c in ver_cols if c in df.columns]].astype(str).drop_duplicates()
    L += ["Versions:", "", Table("v", "", vers, vers.rename(columns=lambda c: c.removeprefix("ver."))).to_markdown(), ""]
    exps = sorted({e for e in df["experiment"].dropna()})
    if exps:
        L += [f"Experiment presets: {', '.join(f'`{e}`' for e in exps)}.", ""]
    L += ["Tables as Markdown, LaTeX (booktabs) and CSV are in `tables/`; one row per run in `runs.csv`.", ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="selbench-report", description="Tables, figures and report.md from selbench run records.")
    ap.add_argument("paths", nargs="+", help="run directories, sweep roots, record.json files or glob patterns")
    ap.add_argument("--out", help="output directory (default: <first directory>/report)")
    ap.add_argument("--metric", default="test_accuracy", help="primary metric (default: test_accuracy)")
    ap.add_argument("--no-figures", action="store_true", help="tables only")
    ap.add_argument("--baseline", default="erm", help="method the paired Δ (95%% CI) is taken against (default: erm)")
    ap.add_argument("--claims", action="store_true", help="write only the claims verdict table (claims.md, claims.csv)")
    args = ap.parse_args(argv)
    out = args.out
    if out is None:
        first = Path(args.paths[0])
        out = str(first / "report") if first.is_dir() else "report"
    if args.claims:
        return _claims_main(args.paths, out)
    try:
        res = build_report(args.paths, out, args.metric, not args.no_figures, args.baseline)
    except FileNotFoundError as e:
        print(f"selbench-report: error: {e}", file=sys.stderr)
        return 2
    runs = res["runs"]
    for path, why in runs.errors:
        print(f"selbench-report: warning: skipped record {path}: {why}", file=sys.stderr)
    if runs.df.empty:
        print(f"selbench-report: no readable run records; wrote {res['report']}", file=sys.stderr)
        return 1
    wide = res["tables"]["comparison_wide"]
    print(wide.text.to_string(index=False))
    failed = runs.failed
    for _, r in failed.iterrows():
        print(f"selbench-report: failed run: {r['method']} seed={r['seed']} ({r['setting']}): {r['reason']}",
              file=sys.stderr)
    n_warn = len(res["tables"]["warnings"].data)
    if n_warn:
        n_runs = int((runs.df["n_warnings"] > 0).sum())
        print(f"selbench-report: {n_runs} run(s) recorded {n_warn} warning(s) (listed in {res['report']})",
              file=sys.stderr)
    print(f"selbench-report: {len(runs.df)} runs ({len(failed)} failed, {len(runs.errors)} unreadable or malformed) -> {res['report']}",
          file=sys.stderr)
    return 0


def _claims_main(paths, out) -> int:
    from selbench.analysis.claims_table import write_claims

    try:
        runs = load_runs(paths)
    except FileNotFoundError as e:
        print(f"selbench-report: error: {e}", file=sys.stderr)
        return 2
    for path, why in runs.errors:
        print(f"selbench-report: warning: skipped record {path}: {why}", file=sys.stderr)
    res = write_claims(runs.df, out, records=runs.records)
    print(res["table"].to_markdown())
    print(f"selbench-report: {len(runs.df)} runs -> {res['md']}, {res['csv']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
