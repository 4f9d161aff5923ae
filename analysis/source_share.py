"""Which sources a method prefers: per-source weight share against the pool's own share.

Every record already holds a method's per-domain (= per-source) weight share
(``selection.quality.domain_weight_share``; the report's selection-quality table prints it as
"domain <d> share"). A share alone is not a preference: a source that is 40% of the pool gets
40% of a uniform weighting. This table divides each method's share by the pool's share — read
from the same setting's uniform-weight runs (``erm``, ``pool_only``, ``duplicate_target`` weight
every pool example 1, so their shares *are* the pool's) — as a lift (> 1: preferred), and sums
shares over named groups of sources. The default groups are the BADS paper's LLM claim ("BADS
prefers human-written sources (OpenAssistant, Dolly) over FLAN / CoT") mapped onto the
``instructions`` dataset: prompts people wrote (chatterbot conversations, HumanEval problems)
against prompts filled from a template (WordNet "Define the word X.", pydoc "Explain the Python
topic X.", fortunes "Tell me something from the X fortune file.").

    python -m selbench.analysis.source_share results/bads_instruction [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from selbench.analysis.metrics import seed_std
from selbench.analysis.quality import DOMAIN_PREFIX, domain_sort_key
from selbench.analysis.records import load_runs
from selbench.analysis.tables import Table, pm

#: methods whose pool weights are all 1: their domain shares are the pool's composition
UNIFORM = ("erm", "pool_only", "duplicate_target")
#: source groups of the BADS LLM claim on the ``instructions`` dataset (module docstring)
DEFAULT_GROUPS = {"human-written": ("chatterbot", "humaneval"), "templated": ("wordnet", "pydoc", "fortunes")}


def source_share(df: pd.DataFrame, groups: dict[str, tuple[str, ...]] | None = None) -> Table:
    """Per setting × method: each source's weight share (mean ± std over seeds) with its lift over
    the pool share, and the share of each group of sources present in the setting."""
    groups = DEFAULT_GROUPS if groups is None else groups
    ok = df[df["status"] == "ok"] if len(df) else df
    dom = sorted((c for c in ok.columns if c.startswith(DOMAIN_PREFIX)), key=lambda c: domain_sort_key(c[len(DOMAIN_PREFIX):]))
    if ok.empty or not dom:
        empty = pd.DataFrame(columns=["setting", "method"])
        return Table("source_share", "Per-source weight share", empty, empty)
    rows, trows = [], []
    for setting, s in ok.groupby("setting", sort=True):
        present = [c for c in dom if pd.to_numeric(s[c], errors="coerce").notna().any()]
        uni = s[s["method"].isin(UNIFORM)]
        pool = {c: float(pd.to_numeric(uni[c], errors="coerce").mean()) for c in present} if len(uni) else {}
        grp = {g: [c for c in present if c[len(DOMAIN_PREFIX):] in members] for g, members in groups.items()}
        grp = {g: cols for g, cols in grp.items() if cols}
        for label, g in s.groupby("method_label", sort=True):
            shares = g[present].apply(pd.to_numeric, errors="coerce")
            if shares.isna().all().all():
                continue  # no pool weight at all (target_only)
            row = {"setting": setting, "method": label, "seeds": len(g)}
            trow = {"setting": setting, "method": label, "seeds": str(len(g))}
            for c in present:
                name, m, sd = c[len(DOMAIN_PREFIX):], float(shares[c].mean()), seed_std(shares[c])
                lift = m / pool[c] if pool.get(c) else np.nan
                row.update({f"{name}_share_mean": m, f"{name}_share_std": sd, f"{name}_lift": lift})
                trow[name] = pm(m, sd, 3) + ("" if np.isnan(lift) else f" ({lift:.2f}×)")
            for gname, cols in grp.items():
                total = shares[cols].sum(axis=1, min_count=1)
                base = sum(pool.get(c, np.nan) for c in cols) if pool else np.nan
                m = float(total.mean())
                row.update({f"group_{gname}_share_mean": m, f"group_{gname}_share_std": seed_std(total),
                            f"group_{gname}_lift": m / base if base else np.nan})
                trow[f"{gname} sources"] = pm(m, seed_std(total), 3) + ("" if not base else f" ({m / base:.2f}×)")
            rows.append(row)
            trows.append(trow)
    used = {g: m for g, m in groups.items() if any(f"{g} sources" in t for t in trows)}
    notes = ["Share of the method's total pool weight per source (mean ± std over seeds); in brackets its lift "
             "over the pool's own share (from the setting's erm / pool_only / duplicate_target runs; > 1 = "
             "preferred)." + ("" if not used else " Groups: " + "; ".join(f"{g} = {', '.join(m)}"
                                                                          for g, m in used.items()) + ".")]
    return Table("source_share", "Per-source weight share and lift over the pool share", pd.DataFrame(rows),
                 pd.DataFrame(trows).fillna("—"), None, notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selbench.analysis.source_share", description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="run directories, sweep roots or record.json files")
    ap.add_argument("--out", help="also write source_share.{md,csv} here")
    args = ap.parse_args(argv)
    runs = load_runs(args.paths)
    if runs.df.empty:
        print(f"no run records under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    table = source_share(runs.df)
    md = f"## {table.caption}\n\n{table.to_markdown()}\n"
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "source_share.md").write_text(md)
        table.data.to_csv(out / "source_share.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
