"""Why a claim does not hold here, from the records: every "does not hold" row of the claims table
(``analysis.claims``) carries one line naming which of four causes the numbers point at.

* **implementation** — some of the method's runs in the preset failed (diverged, NaN): named with
  the count and the first reason;
* **scale** — the runs used ``scale=debug`` (≤ 30 steps: a smoke test where no paper's effect is
  expected to show);
* **setting** — the claim's mechanism was not at work: for a denoising claim
  (``mechanism="erm_memorises"``), ``erm``'s final test accuracy fell less than
  :data:`MEMORISATION_DROP` points below its accuracy at its best validation step, so the noise
  had not hurt it and there was nothing for the method to fix;
  for a balancing claim (``mechanism="erm_one_class"``), ``erm``'s balanced accuracy is above
  ``ONE_CLASS`` and within ``IMBALANCE_GAP`` of ``target_only``'s (it learnt the minority unaided);
  for a palette claim (``mechanism="palette_trained"``), AutoPalette's images use fewer than
  ``PALETTE_USED`` of the palette's K entries (an untrained palette network, as at CPU iteration
  counts). Such a line starts "setting: mechanism not at work" and no verdict on the method follows;
* **method** — the setting was right: the method is behind at its own best validation step too
  (not a matter of when to stop), or ahead there and decaying by the end;
* **method or implementation** — when none of the above applies (a cost or selection-quality
  claim: no failed run, no mechanism to check, no best step), the measured value against the claim.

The line always ends with the paired numbers it rests on (per-seed differences).
"""
from __future__ import annotations

import pandas as pd

from selbench.analysis.claims_registry import Claim
from selbench.analysis.metrics import scale
from selbench.analysis.paired import Paired, per_seed

#: erm memorises when its final accuracy is this many points below its best-validation accuracy
MEMORISATION_DROP = 2.0
#: the imbalance hurts erm when its balanced accuracy is at most ONE_CLASS points (one class predicted)
#: or IMBALANCE_GAP points below target_only's (which never sees the skewed pool)
ONE_CLASS, IMBALANCE_GAP = 55.0, 10.0
#: a palette claim's mechanism is at work once the palette network uses this share of its K entries per
#: image; the paper's runs train it 20,000 iterations (DM's schedule) and use most of the palette
PALETTE_USED, PAPER_SYNTH_ITERATIONS = 0.25, 20_000
NOT_AT_WORK = "setting: mechanism not at work — "


def diagnose(claim: Claim, runs: pd.DataFrame, mine: pd.DataFrame, failed: pd.DataFrame, rival, p: Paired,
             row: dict) -> str:
    """One line for a "does not hold" row (``row``: the row's numbers so far, best-val ones included)."""
    parts = []
    if len(failed):
        reason = str(failed["reason"].dropna().iloc[0]) if failed["reason"].notna().any() else "no reason recorded"
        parts.append(f"implementation: {len(failed)} of {len(failed) + len(mine)} {claim.method} runs failed "
                     f"({reason[:120]})")
    scales = set(mine["scale"].dropna().astype(str)) if "scale" in mine else set()
    if "debug" in scales:
        parts.append("scale: scale=debug (≤ 30 steps, a smoke test) — no paper's effect is expected to show")
    setting = _mechanism(claim, runs)
    if setting:
        parts.append(setting)
    what = "ratio" if claim.op == "ratio" and rival else "Δ" if rival else "value"
    if not setting.startswith(NOT_AT_WORK):  # nothing for the method to do: no verdict on the method
        method = _method(claim, row, p, what)
        if method:
            parts.append(method)
    if not parts:  # no failed run, the right scale, no mechanism to check, no best-val counterpart
        parts.append(f"method or implementation (these records cannot tell which): the mean {what} is "
                     f"{p.mean:.3g} against the claimed {claim.direction} {claim.bound:g}")
    per = ", ".join(f"{d:+.3g}" if what == "Δ" else f"{d:.3g}" for d in p.diffs)
    parts.append(f"per-seed {what}{f' vs {rival}' if rival else ''}: {per}")
    return "; ".join(parts)


def _mechanism(claim: Claim, runs: pd.DataFrame) -> str:
    if claim.mechanism == "palette_trained":
        return _palette(runs[runs["method"] == claim.method])
    erm = runs[runs["method"] == "erm"]
    if claim.mechanism == "erm_one_class":
        bal = per_seed(erm, "test_balanced_accuracy", 100.0)
        ref = per_seed(runs[runs["method"] == "target_only"], "test_balanced_accuracy", 100.0)
        if not bal:
            return "setting: unknown whether the imbalance hurts erm (no erm runs)"
        b = sum(bal.values()) / len(bal)
        t = sum(ref.values()) / len(ref) if ref else None
        hurt = b <= ONE_CLASS or (t is not None and t - b >= IMBALANCE_GAP)
        vs = f", target_only {t:.1f}" if t is not None else ""
        if not hurt:
            return f"{NOT_AT_WORK}erm is not hurt here (balanced accuracy {b:.1f}{vs}): the minority is learnt without help"
        return f"setting: the imbalance is at work (erm's balanced accuracy {b:.1f}{vs})"
    if claim.mechanism != "erm_memorises":
        return ""
    metric = claim.metric if not claim.metric.startswith(("cost.", "q.", "sel.")) else "test_accuracy"
    final, best = per_seed(erm, metric, scale(metric)), per_seed(erm, f"best_val.{metric}", scale(metric))
    seeds = sorted(set(final) & set(best))
    if not seeds:
        return "setting: unknown whether erm memorises (no erm runs with best-validation metrics)"
    f = sum(final[s] for s in seeds) / len(seeds)
    b = sum(best[s] for s in seeds) / len(seeds)
    if b - f < MEMORISATION_DROP:
        return (f"{NOT_AT_WORK}erm is not hurt here (final {f:.1f} vs {b:.1f} at its best validation step, a drop of "
                f"{b - f:.1f} < {MEMORISATION_DROP:g} points): the noise has not been memorised, nothing to fix")
    return f"setting: erm memorises ({b:.1f} at its best validation step → {f:.1f} final)"


def _method(claim: Claim, row: dict, p: Paired, what: str) -> str:
    bv, n = row.get("best_val_estimate"), row.get("best_val_seeds", 0)
    if not n or bv is None or pd.isna(bv):
        return ""
    fmt = "{:+.3g}" if what == "Δ" else "{:.3g}"
    at, end = f"{what} {fmt.format(bv)}", f"{what} {fmt.format(p.mean)}"
    ahead = (bv > claim.bound) if claim.direction == ">" else (bv < claim.bound)
    if ahead and row.get("best_val_verdict") == "holds":
        return (f"method: ahead at its best validation step ({at}, holds there) but not at the end ({end}): it "
                f"decays after its best step")
    if ahead:
        return f"method: at its best validation step {at} (not decisive either), final {end}"
    return f"method: short of the claim at its best validation step too ({at}), so it is not a matter of when to stop"


def _palette(mine: pd.DataFrame) -> str:
    """AutoPalette's claims rest on a trained palette network (images that spend their few bits per
    pixel on the colours that matter); an untrained one quantises to a handful of entries."""
    def mean(col):
        v = pd.to_numeric(mine[col], errors="coerce") if col in mine else pd.Series(dtype=float)
        return float(v.mean()) if v.notna().any() else None
    used, k, it = mean("sel.palette_entries_used_mean"), mean("sel.colours"), mean("sel.iterations")
    if used is None or not k:
        return "setting: unknown whether the palette was trained (no palette usage in the records)"
    facts = (f"{used:.1f} of {k:.0f} palette entries used per image after "
             f"{it:.0f} synthesis iterations (the paper: {PAPER_SYNTH_ITERATIONS:,})" if it else
             f"{used:.1f} of {k:.0f} palette entries used per image")
    if used / k < PALETTE_USED:
        return f"{NOT_AT_WORK}the palette is untrained here ({facts}), so the trade it claims is not being made"
    return f"setting: the palette is trained ({facts})"
