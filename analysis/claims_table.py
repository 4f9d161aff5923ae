"""The claims verdict table as text and files: ``claims.md`` and ``claims.csv`` (``analysis.claims``
computes every number and verdict; this module only shows them)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from selbench.analysis.claims import FEW_SEEDS, HOLDS, VERDICTS, judge
from selbench.analysis.claims_registry import Claim
from selbench.analysis.paired import MIN_CI_SEEDS
from selbench.analysis.tables import NA, Table
from selbench.core.io import atomic_write_bytes


def num(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"


def mean_std(m, s, n) -> str:
    n = 0 if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    if not n:
        return NA
    return f"{num(m)} ± {num(s)} (n={n})" if n > 1 else f"{num(m)} (n=1)"


def estimate(e, lo, hi, n) -> str:
    """``1.2 [0.4, 2.1] (n=3)``; below 3 seeds the mean alone, saying there is no interval."""
    n = 0 if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    if not n:
        return NA
    if n < MIN_CI_SEEDS:
        return f"{num(e)} (n={n}, no CI)"
    return f"{num(e)} [{num(lo)}, {num(hi)}] (n={n})"


def claims_table(df: pd.DataFrame, claims: list[Claim] | None = None, records: list[dict] | None = None) -> Table:
    data = judge(df, claims, records)
    best_val = [NA if not isinstance(v, str) or v == NA else f"{estimate(e, lo, hi, n)}: {v}" for e, lo, hi, n, v in zip(
        data["best_val_estimate"], data["best_val_lo"], data["best_val_hi"], data["best_val_seeds"],
        data["best_val_verdict"])]
    text = pd.DataFrame({
        "paper": data["paper"].str.split(" (", regex=False).str[0], "claim (as the paper states it)": data["claim"],
        "preset": "experiment=" + data["preset"],
        "setting (scale)": [s if s == NA else f"{s}{'' if pd.isna(b) else f' @ β={b:g}'} ({sc})"
                            for s, sc, b in zip(data["setting"], data["scale"], data["budget"])],
        "tested": data["test"],
        "method: mean ± std": [f"{m}: {mean_std(a, b, n)}" for m, a, b, n in zip(
            data["method"], data["method_mean"], data["method_std"], data["method_n"])],
        "rival: mean ± std": [NA if v == NA else f"{v}: {mean_std(a, b, n)}" for v, a, b, n in
                              zip(data["versus"], data["versus_mean"], data["versus_std"], data["versus_n"])],
        "final: paired estimate [95% CI]": [estimate(e, lo, hi, n) for e, lo, hi, n in zip(
            data["estimate"], data["ci_lo"], data["ci_hi"], data["paired_seeds"])],
        "verdict (final)": data["verdict"], "why": data["why"],
        "at best val: estimate [95% CI]: verdict": best_val,
        "diagnosis": data["diagnosis"].fillna("").replace("", NA),
        "why this setting tests it": data["setting_why"].fillna("").replace("", NA)})
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    bold["verdict (final)"] = data["verdict"] == HOLDS
    counts = data["verdict"].value_counts()
    notes = [", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".",
             "Verdicts are computed from the records: per seed, the method's quantity minus (or over) each rival's on "
             "the same seed; 'holds' when the percentile-bootstrap 95% CI of the mean over paired seeds lies on the "
             "claimed side of the bound for every rival (the weakest rival is shown; the first failing one otherwise). "
             f"'{FEW_SEEDS}': fewer than {MIN_CI_SEEDS} paired seeds — the mean is shown without an interval and "
             "the claim is neither held nor refused.",
             "verdict (final): on the test metric at the end of training. at best val: the same comparison on the "
             "test metric at each run's eval step with the best validation objective (chosen on validation only); "
             f"{NA} for costs and selection-quality claims, and for records without best-validation metrics.",
             "diagnosis (each 'does not hold'): what the records say about why — failed runs (implementation), "
             "the scale the runs used, whether the setting's mechanism was at work (e.g. erm's drop from its best "
             "step), or the method itself (behind at its best step too, or ahead there and decaying after).",
             "Accuracies in points. Runs at scale=debug/small are far from the papers' scale: a verdict says what "
             "these runs show, not what the paper's setting would. Missing records: claims.csv has each claim's "
             "command."]
    return Table("claims", "Claims verdict table", data, text, bold, notes)


def write_claims(df: pd.DataFrame, out_dir, claims: list[Claim] | None = None,
                 records: list[dict] | None = None) -> dict[str, str]:
    """``claims.md`` and ``claims.csv`` in ``out_dir``, each written atomically."""
    t = claims_table(df, claims, records)
    out = Path(out_dir)
    paths = {}
    for ext, body in (("md", f"# {t.caption}\n\n{t.to_markdown()}\n"), ("csv", t.to_csv())):
        p = out / f"claims.{ext}"
        atomic_write_bytes(p, body.encode())
        paths[ext] = str(p)
    return {"table": t, **paths}
