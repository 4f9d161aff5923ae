"""The claims verdict table: every documented claim (``analysis.claims_registry``) judged from the
run records, never typed in.

For each claim, the runs of its preset (``experiment_name`` matches ``preset``, ``where`` holds)
are grouped by setting and by the method's budget; in each group the claim's quantity is
taken per seed and compared with every rival on the same seeds (``analysis.paired``):

* **holds** — for every rival, the percentile-bootstrap 95% CI of the mean per-seed difference
  (or ratio) lies entirely on the claimed side of the bound;
* **does not hold** — some rival's CI does not (it straddles the bound, or lies on the other side:
  "reversed");
* **too few seeds** — fewer than 3 seeds are paired: the mean per-seed difference and the
  per-seed values are shown, but no interval and no verdict ("holds" needs ≥ 3 seeds);
* **not measurable here** — the records cannot decide it: the quantity is not among the
  records' columns, or peak memory was measured on a CPU (process RSS, not the method's memory);
* **not measured** — no records: of the preset, of the method, or of a rival in that setting.

The verdict is on the final metric; beside it, the same paired comparison on the test metric
at each run's best validation step (``best_val.<metric>``), labelled.  Each "does not hold"
carries a diagnosis with numbers (``analysis.claims_diagnosis``).  The table's text and files:
``analysis.claims_table``.
"""
from __future__ import annotations

import fnmatch
from dataclasses import replace

import numpy as np
import pandas as pd

from selbench.analysis.claims_diagnosis import diagnose
from selbench.analysis.claims_lds import lds_rows
from selbench.analysis.claims_registry import Claim, load_plugin_claims
from selbench.analysis.labels import add_budget_group, add_labels
from selbench.analysis.metrics import is_percent
from selbench.analysis.paired import MIN_CI_SEEDS, Paired, paired, per_seed
from selbench.analysis.paper import equal, lookup
from selbench.analysis.tables import NA
from selbench.analysis.verdicts import FAILS, FEW_SEEDS, HOLDS, UNMEASURABLE, UNMEASURED, VERDICTS, mean_std  # noqa: F401

COLUMNS = ["id", "paper", "claim", "preset", "setting", "scale", "budget", "method", "method_mean", "method_std", "method_n",
           "versus", "versus_mean", "versus_std", "versus_n", "quantity", "op", "direction", "bound", "test", "estimate",
           "ci_lo", "ci_hi", "paired_seeds", "verdict", "why", "best_val_estimate", "best_val_lo", "best_val_hi",
           "best_val_seeds", "best_val_verdict", "diagnosis", "setting_why", "command", "source", "note"]


def _scale(col: str) -> float:
    col = col.removeprefix("best_val.")
    return 100.0 if "." not in col and is_percent(col) else 1.0


def best_val_claim(claim: Claim) -> Claim | None:
    """The claim on the test metric at the best validation step, for a plain metric (None for costs,
    selection quality, sums, LDS: they have no best-validation counterpart)."""
    if "." in claim.metric or "+" in claim.metric or claim.reference:
        return None
    return replace(claim, metric=f"best_val.{claim.metric}")


def _values(frame: pd.DataFrame, claim: Claim) -> pd.Series | str:
    """The claim's quantity per run (summed ``+`` parts, minus ``reference``), or the missing column's name."""
    cols = [c.strip() for c in claim.metric.split("+")] + ([claim.reference] if claim.reference else [])
    missing = [c for c in cols if c not in frame.columns or pd.to_numeric(frame[c], errors="coerce").isna().all()]
    if missing:
        return missing[0]
    parts = [pd.to_numeric(frame[c.strip()], errors="coerce") * _scale(c.strip()) for c in claim.metric.split("+")]
    v = sum(parts[1:], parts[0])
    if claim.reference:
        v = v - pd.to_numeric(frame[claim.reference], errors="coerce") * _scale(claim.reference)
    return v


def _seed_values(frame: pd.DataFrame, claim: Claim) -> dict | str:
    v = _values(frame, claim)
    if isinstance(v, str):
        return v
    return per_seed(frame.assign(_v=v), "_v")


def _preset_runs(df: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    if df.empty or "experiment" not in df.columns:
        return df.iloc[0:0]
    exp = df["experiment"].map(lambda e: isinstance(e, str) and fnmatch.fnmatch(e, claim.preset))
    sub = df[exp]
    for k, want in claim.where:
        sub = sub[[equal(lookup(r, k), want) for _, r in sub.iterrows()]] if len(sub) else sub
    return sub


def _rivals_at(runs: pd.DataFrame, rival: str, budget, factor: float) -> pd.DataFrame:
    """The rival's ok runs of the setting at the pairing budget (every run when it ignores the budget; its
    only budget when the method ignores the budget)."""
    r = runs[runs["method"] == rival]
    if r.empty or not r["budget_group"].notna().any():
        return r
    if pd.isna(budget):  # a budget-free method: pairs with a rival run at one budget only
        return r if r["budget_group"].nunique() == 1 and factor == 1 else r.iloc[0:0]
    return r[np.isclose(r["budget_group"].astype(float), float(budget) * factor)]


def _judge_group(claim: Claim, runs: pd.DataFrame, mine: pd.DataFrame, budget, failed: pd.DataFrame) -> dict:
    """One verdict row for the method's runs ``mine`` in one setting (``runs``: the setting's ok runs;
    ``failed``: its failed runs, named in a diagnosis)."""
    out = {"method_mean": float("nan"), "method_std": float("nan"), "method_n": 0, "versus": NA,
           "versus_mean": float("nan"), "versus_std": float("nan"), "versus_n": 0, "estimate": float("nan"),
           "ci_lo": float("nan"), "ci_hi": float("nan"), "paired_seeds": 0, "diagnosis": ""}
    a = _seed_values(mine, claim)
    if isinstance(a, str):
        return {**out, "verdict": UNMEASURABLE, "why": f"the {claim.method} records have no `{a}`"}
    out["method_mean"], out["method_std"], out["method_n"] = mean_std(a)
    if claim.needs_cuda and set(runs.get("cost.memory_kind", pd.Series(dtype=object)).dropna()) != {"cuda"}:
        return {**out, "verdict": UNMEASURABLE,
                "why": "peak memory was measured on CPU (process RSS, interpreter included), not on a GPU"}
    results = _compare(claim, runs, mine, budget)
    if isinstance(results, dict):
        return {**out, **results}
    rival, p, b = _decisive(claim, results)
    out.update(estimate=p.mean, ci_lo=p.lo, ci_hi=p.hi, paired_seeds=p.n)
    if rival is not None:
        out["versus"] = rival
        out["versus_mean"], out["versus_std"], out["versus_n"] = mean_std(b)
    out.update(_best_val(claim, runs, mine, budget, rival))
    verdict, why = _verdict(claim, results, rival, p)
    if verdict == FAILS:
        out["diagnosis"] = diagnose(claim, runs, mine, failed, rival, p, out)
    return {**out, "verdict": verdict, "why": why}


def _compare(claim: Claim, runs: pd.DataFrame, mine: pd.DataFrame, budget) -> list | dict:
    """``[(rival, Paired, rival's per-seed values)]`` for every rival (one ``(None, …)`` for a bound
    claim), or the verdict fields when a rival's records are missing."""
    a = _seed_values(mine, claim)
    results = []
    for rival in claim.versus or (None,):
        if rival is None:
            results.append((None, paired(a), {}))
            continue
        rr = _rivals_at(runs, rival, budget, claim.rival_budget)
        if rr.empty:
            at = f" at {claim.rival_budget:g}×β" if claim.rival_budget != 1 else ""
            return {"versus": rival, "verdict": UNMEASURED, "why": f"no {rival} runs{at} in this setting"}
        b = _seed_values(rr, claim)
        if isinstance(b, str):
            return {"versus": rival, "verdict": UNMEASURABLE, "why": f"the {rival} records have no `{b}`"}
        apart = _apart(claim, mine, rr, rival)
        if apart:
            return {"versus": rival, "verdict": UNMEASURABLE, "why": apart}
        results.append((rival, paired(a, b, claim.op), b))
    return results


def _apart(claim: Claim, mine: pd.DataFrame, rr: pd.DataFrame, rival: str) -> str:
    """Why the two sides' quantities are not comparable (``claim.same`` differs between them), or ""."""
    if not claim.same:
        return ""
    ours, theirs = (set(f.get(claim.same, pd.Series(dtype=object)).fillna("unrecorded").astype(str))
                    for f in (mine, rr))
    if ours == theirs and len(ours) == 1:
        return ""
    return (f"not on a common basis: `{claim.same}` is {', '.join(sorted(ours))} for {claim.method} and "
            f"{', '.join(sorted(theirs))} for {rival}, so the values measure different things")


def _decisive(claim: Claim, results: list) -> tuple:
    """The rival the row shows: the first with too few seeds, else the first that is not beaten, else
    the one beaten by the smallest margin."""
    thin = [r for r in results if r[1].n < MIN_CI_SEEDS]
    if thin:
        return thin[0]
    losing = [r for r in results if not r[1].excludes(claim.bound, claim.direction)]
    if losing:
        return losing[0]
    sign = 1 if claim.direction == ">" else -1
    return min(results, key=lambda r: sign * ((r[1].lo if sign > 0 else r[1].hi) - claim.bound))


def _verdict(claim: Claim, results: list, rival, p: Paired) -> tuple[str, str]:
    n_r = len(results)
    if p.n < MIN_CI_SEEDS:
        if p.n == 0:
            return UNMEASURED, f"no seed run by both {claim.method} and {rival}"
        vals = ", ".join(f"{d:+.3g}" for d in p.diffs)
        return FEW_SEEDS, (f"{p.seeds_text()} (per seed: {vals}): a verdict needs ≥ {MIN_CI_SEEDS} "
                           f"(run seed=0,1,2); no interval, never 'holds'")
    ci = f"[{p.lo:.3g}, {p.hi:.3g}]"
    what = "ratio" if claim.op == "ratio" and rival else ("Δ" if rival else "value")
    holds = [r[1].excludes(claim.bound, claim.direction) for r in results]
    if all(holds):
        why = f"95% CI of the {what} {ci} {claim.direction} {claim.bound:g}"
        why += f", against all {n_r} rivals (weakest shown)" if n_r > 1 else ""
        return HOLDS, why + _unpaired(p)
    reversed_ = p.excludes(claim.bound, "<" if claim.direction == ">" else ">")
    why = (f"reversed: 95% CI of the {what} {ci} entirely {'<' if claim.direction == '>' else '>'} {claim.bound:g}"
           if reversed_ else f"95% CI of the {what} {ci} includes {claim.bound:g}")
    why += f" (vs {rival}; {sum(holds)} of {n_r} rivals beaten)" if n_r > 1 else ""
    return FAILS, why + _unpaired(p)


def _best_val(claim: Claim, runs: pd.DataFrame, mine: pd.DataFrame, budget, rival) -> dict:
    """The same comparison on the test metric at each run's best validation step (decisive rival only)."""
    out = {"best_val_estimate": float("nan"), "best_val_lo": float("nan"), "best_val_hi": float("nan"),
           "best_val_seeds": 0, "best_val_verdict": NA}
    bc = best_val_claim(claim)
    if bc is None:
        return out
    a = _seed_values(mine, bc)
    b = None
    if rival is not None:
        rr = _rivals_at(runs, rival, budget, claim.rival_budget)
        b = _seed_values(rr, bc) if not rr.empty else "none"
    if isinstance(a, str) or isinstance(b, str):
        return out
    p = paired(a, b, claim.op)
    verdict = NA if p.n == 0 else FEW_SEEDS if p.n < MIN_CI_SEEDS else (
        HOLDS if p.excludes(claim.bound, claim.direction) else FAILS)
    return {"best_val_estimate": p.mean, "best_val_lo": p.lo, "best_val_hi": p.hi, "best_val_seeds": p.n,
            "best_val_verdict": verdict}


def _none_ok(c: Claim, failed: pd.DataFrame) -> dict:
    """The row of a claim whose method has no ok run in the preset: it does not hold when every run
    failed (a method that diverges on its defaults), not measured when none was run."""
    mine = failed[failed["method"] == c.method] if len(failed) else failed
    if mine.empty:
        return {"verdict": UNMEASURED, "why": f"no {c.method} runs in preset {c.preset}"}
    reason = str(mine["reason"].dropna().iloc[0]) if mine["reason"].notna().any() else "no reason recorded"
    return {"verdict": FAILS, "why": f"every {c.method} run failed ({len(mine)} of {len(mine)})",
            "diagnosis": f"implementation: all {len(mine)} {c.method} runs failed ({reason[:160]})"}


def _unpaired(p: Paired) -> str:
    return f"; {p.n} seeds paired, {p.unpaired} unpaired left out" if p.unpaired else ""


def judge(df: pd.DataFrame, claims: list[Claim] | None = None, records: list[dict] | None = None) -> pd.DataFrame:
    """One row per claim × setting × the method's budget (one "not measured" row when no runs match).
    ``records`` (the raw records, as ``Runs.records``) are needed only by ``lds.*`` claims."""
    rows = []
    ok = df[df["status"] == "ok"] if len(df) else df
    if len(ok) and "budget_group" not in ok.columns:
        ok = add_budget_group(ok.copy())
    failed = df[df["status"] != "ok"] if len(df) else df
    for c in load_plugin_claims() if claims is None else claims:
        base = {"id": c.id, "paper": c.paper, "claim": c.claim, "preset": c.preset, "method": c.method,
                "quantity": c.metric + (f" − {c.reference}" if c.reference else ""), "op": c.op, "test": test_text(c),
                "method_n": 0, "versus_n": 0, "paired_seeds": 0, "versus": NA,
                "direction": c.direction, "bound": c.bound, "command": c.command(), "source": c.source,
                "note": c.note, "setting": NA, "scale": NA, "budget": float("nan"), "diagnosis": "",
                "setting_why": c.setting_why}
        if c.metric.startswith("lds."):
            rows += lds_rows(c, base, records or [])
            continue
        runs = _preset_runs(ok, c)
        if len(runs):  # settings labelled by what varies within this claim's runs only
            runs = runs.copy()
            add_labels(runs)
        if runs.empty:
            n_all = len(_preset_runs(df, c)) if len(df) else 0
            why = f"no records for preset {c.preset}" + (
                f" with {', '.join(f'{k}={v}' for k, v in c.where)}" if c.where else "") + (
                f" ({n_all} failed)" if n_all else "")
            rows.append({**base, "verdict": UNMEASURED, "why": why})
            continue
        if not (runs["method"] == c.method).any():
            rows.append({**base, **_none_ok(c, _preset_runs(failed, c))})
            continue
        for setting, srun in runs.groupby("setting", sort=True):
            mine = srun[srun["method"] == c.method]
            scale = ", ".join(sorted({str(s) for s in srun["scale"].dropna()})) or NA
            if mine.empty:  # a setting of the preset the method was not run in
                continue
            for budget, g in mine.groupby(mine["budget_group"].astype(float).fillna(-1.0), sort=True):
                budget = float("nan") if budget == -1.0 else budget
                fails = _preset_runs(failed, c)
                rows.append({**base, "setting": setting, "scale": scale, "budget": budget,
                             **_judge_group(c, srun, g, budget, fails[fails["method"] == c.method])})
    return pd.DataFrame(rows, columns=COLUMNS)


def test_text(c: Claim) -> str:
    """What is tested, e.g. ``test_accuracy: bads − rival > 0`` or ``cost.method_wall_s: bads / erm < 1.1``."""
    if not c.versus:
        lhs = c.method
    elif c.op == "ratio":
        lhs = f"{c.method} / {c.versus[0] if len(c.versus) == 1 else 'each of ' + ', '.join(c.versus)}"
    else:
        lhs = f"{c.method} − {c.versus[0] if len(c.versus) == 1 else 'each of ' + ', '.join(c.versus)}"
    at = f" (rival at {c.rival_budget:g}×β)" if c.rival_budget != 1 else ""
    q = c.metric + (f" − {c.reference}" if c.reference else "")
    return f"{q}: {lhs} {c.direction} {c.bound:g}{at}"
