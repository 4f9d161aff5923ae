"""The linear datamodeling score (LDS; Park et al., *TRAK*, ICML 2023, eq. 5) from ``lds_subset`` runs.

Each ``lds_subset`` record holds, for its random subset ``S_k`` and every target example ``t``,
the datamodel's prediction ``g_t(S_k) = Σ_{i∈S_k} τ_{t,i}`` (for the configured ridge ``λ`` and
every ``λ`` of ``method.lam_ablation``) and the output and loss of the model retrained on ``S_k``
(retraining ``r`` of ``R``: another initialisation and batch order).  Over the runs of one group
(same setting, seed, budget and TRAK settings; only ``method.subset`` and ``method.retrain`` differ):

    ō_t(S_k) = mean_r output_t(S_k, r),   l̄_t(S_k) = mean_r loss_t(S_k, r)
    LDS_output = mean_t Spearman_k( g_t(S_k),  ō_t(S_k) )
    LDS_loss   = mean_t Spearman_k( −g_t(S_k), l̄_t(S_k) )

As TRAK (§2, App. C) and DsDm do, the retrainings are averaged before the correlation: a single
retraining's output holds training noise that no datamodel of ``S`` can predict, which biases the
LDS low.  ``lds_output_1`` / ``lds_loss_1`` are the same scores against one retraining (the mean
over ``r`` of the LDS computed with retraining ``r`` alone), to show that bias; ``noise_share`` is
the mean over targets of the within-subset (retraining) variance of the output over its total
variance (NaN with one retraining).  Also the Spearman
of the group's mean prediction against its mean target loss (``LDS_mean_loss``: the quantity DsDm
minimises).  ``τ`` predicts a rise of the output, i.e. a fall of the loss.  Targets whose values
do not vary over the subsets are left out of the mean.

``python -m selbench.analysis.lds RESULTS_DIR… [--retrains N]`` prints the per-seed rows and their
mean ± sd over seeds for every ``λ`` (``--retrains N``: against the first ``N`` retrainings only).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from selbench.analysis.tables import Table

METHOD = "lds_subset"
SCORES = ("lds_output", "lds_loss", "lds_mean_loss", "lds_output_1", "lds_loss_1")
#: what identifies one retraining inside a group (dropped from the group key)
RUN_KNOBS = ("subset", "retrain")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def _nanmean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def lds(pred: np.ndarray, output: np.ndarray, loss: np.ndarray) -> dict:
    """``pred``, ``output``, ``loss``: ``[K, T]`` (subsets × targets; output and loss already averaged
    over the retrainings)."""
    per_out = np.array([_spearman(pred[:, t], output[:, t]) for t in range(pred.shape[1])])
    per_loss = np.array([_spearman(-pred[:, t], loss[:, t]) for t in range(pred.shape[1])])
    return {"subsets": int(pred.shape[0]), "targets": int(pred.shape[1]),
            "lds_output": _nanmean(per_out), "lds_loss": _nanmean(per_loss),
            "lds_mean_loss": _spearman(-pred.mean(1), loss.mean(1))}


def lds_retrained(pred: np.ndarray, output: np.ndarray, loss: np.ndarray) -> dict:
    """``pred`` ``[K, T]``; ``output``, ``loss`` ``[K, R, T]`` (NaN where retraining ``r`` of a subset is
    missing).  The LDS against the mean over retrainings, and (``…_1``) against one retraining."""
    res = lds(pred, np.nanmean(output, axis=1), np.nanmean(loss, axis=1))
    single = []
    for r in range(output.shape[1]):
        have = np.isfinite(output[:, r]).all(1) & np.isfinite(loss[:, r]).all(1)
        if have.sum() >= 3:
            single.append(lds(pred[have], output[have, r], loss[have, r]))
    n = np.isfinite(output).all(2).sum(1)
    # the share of a target output's variance that is retraining noise (within a subset), not the subset
    within = np.nanmean(np.nanvar(output, axis=1, ddof=1), axis=0) if n.min() >= 2 else np.full(output.shape[2], np.nan)
    total = np.nanvar(output.reshape(-1, output.shape[2]), axis=0, ddof=1)
    noise = within / np.where(total > 0, total, np.nan)
    return {**res, "retrains": int(n.min()), "retrains_max": int(n.max()), "noise_share": _nanmean(noise),
            "lds_output_1": float(np.mean([s["lds_output"] for s in single])) if single else math.nan,
            "lds_loss_1": float(np.mean([s["lds_loss"] for s in single])) if single else math.nan}


def _group_key(rec: dict) -> str:
    cfg = json.loads(json.dumps(rec.get("config") or {}))
    for k in RUN_KNOBS:
        cfg.get("method", {}).pop(k, None)
    for k in ("results_dir", "cache_dir", "progress", "resume", "hydra"):
        cfg.pop(k, None)
    return json.dumps(cfg, sort_keys=True, default=str)


def _usable(r: dict) -> bool:
    sel = r.get("selection") or {}
    return r.get("method") == METHOD and r.get("status") == "ok" and sel.get("lds_predicted") is not None \
        and sel.get("lds_actual_loss") is not None


def _predictions(sel: dict, lam: float) -> dict:
    """``{λ: prediction}``: the configured ridge and any ablation ridges the record holds."""
    by_lam = {float(k): v for k, v in (sel.get("lds_predicted_by_lam") or {}).items()}
    return {lam: sel["lds_predicted"], **{k: v for k, v in by_lam.items() if k != lam}}


def lds_groups(records: list[dict], ablation: bool = False) -> list[dict]:
    """One row per group of ok ``lds_subset`` runs with at least 3 subsets, for its configured ``λ``
    (``ablation``: one row per recorded ``λ``; ``configured`` marks the configured one)."""
    groups: dict[str, list[dict]] = {}
    for r in filter(_usable, records):
        groups.setdefault(_group_key(r), []).append(r)
    rows = []
    for runs in groups.values():
        subsets = sorted({int(r["selection"]["lds_subset"]) for r in runs})
        if len(subsets) < 3:
            continue
        retrains = sorted({int(r["selection"].get("lds_retrain", 0)) for r in runs})
        k_of, r_of = {k: i for i, k in enumerate(subsets)}, {r: j for j, r in enumerate(retrains)}
        T = len(runs[0]["selection"]["lds_actual_loss"])
        out, loss = (np.full((len(subsets), len(retrains), T), np.nan) for _ in range(2))
        preds: dict[int, dict] = {}
        m = runs[0]["config"]["method"]
        lam0 = float(m.get("lam"))
        for r in runs:
            sel = r["selection"]
            i, j = k_of[int(sel["lds_subset"])], r_of[int(sel.get("lds_retrain", 0))]
            out[i, j], loss[i, j] = sel["lds_actual_output"], sel["lds_actual_loss"]
            preds.setdefault(i, _predictions(sel, lam0))  # every retraining of a subset predicts the same
        lams = sorted(set.intersection(*(set(p) for p in preds.values()))) if ablation else [lam0]
        for lam in lams:
            pred = np.array([preds[i][lam] for i in range(len(subsets))], dtype=float)
            rows.append({"setting": f"{runs[0].get('dataset')}-{runs[0].get('scenario')}",
                         "seed": runs[0].get("seed"), "budget": runs[0].get("budget"), "models": m.get("n_models"),
                         "proj_dim": m.get("proj_dim"), "projection": m.get("projection"), "lam": lam,
                         "configured": lam == lam0, **lds_retrained(pred, out, loss)})
    return rows


COLUMNS = ["setting", "seed", "budget", "models", "proj_dim", "projection", "lam", "subsets", "retrains", "targets",
           *SCORES, "noise_share"]


def _text(data: pd.DataFrame) -> pd.DataFrame:
    text = data.copy()
    for c in data.columns:
        if c.startswith("lds_") or c == "noise_share":
            text[c] = [f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "—" for v in data[c]]
    return text


def lds_table(records: list[dict]) -> Table:
    """Per seed, every recorded ``λ`` (the ridge ablation)."""
    data = pd.DataFrame(lds_groups(records, ablation=True), columns=COLUMNS)
    return Table("lds", "Linear datamodeling score (Spearman of predicted vs retrained target output / loss, "
                 "retrainings averaged; _1: against one retraining)", data, _text(data))


def over_seeds(rows: list[dict]) -> pd.DataFrame:
    """Mean and sd over seeds of each score, per setting × budget × TRAK settings × ``λ``."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    keys = ["setting", "budget", "models", "proj_dim", "projection", "lam", "subsets", "retrains"]
    agg = df.groupby(keys, dropna=False).agg(seeds=("seed", "nunique"),
                                             **{f"{c}_{s}": (c, s) for c in (*SCORES, "noise_share")
                                                for s in ("mean", "std")})
    return agg.reset_index()


def write_summary(records: list[dict], out_dir: str | Path) -> Path | None:
    """``lds.json`` beside the report (None when there are no complete LDS groups)."""
    rows = lds_groups(records, ablation=True)
    if not rows:
        return None
    p = Path(out_dir) / "lds.json"
    p.write_text(json.dumps(rows, indent=1, default=str))
    return p


def main(argv: list[str] | None = None) -> int:
    import argparse

    from selbench.analysis.records import load_runs

    ap = argparse.ArgumentParser(prog="python -m selbench.analysis.lds",
                                 description="LDS of lds_subset sweeps: per seed and every λ, then mean ± sd over seeds")
    ap.add_argument("paths", nargs="+", help="results directories or record files")
    ap.add_argument("--retrains", type=int, default=0,
                    help="use only retrainings 0 … N−1 of each subset (0 = all): the LDS against fewer retrainings")
    a = ap.parse_args(argv)
    missing = [p for p in a.paths if not Path(p).exists()]
    if missing or a.retrains < 0:
        print(f"lds: {missing[0]} does not exist (give results directories or record files)" if missing else
              f"lds: --retrains {a.retrains} must be >= 0 (0 = all)", file=sys.stderr)
        return 2
    recs = [r for r in load_runs(a.paths).records
            if not a.retrains or int((r.get("selection") or {}).get("lds_retrain", 0)) < a.retrains]
    rows = lds_groups(recs, ablation=True)
    if not rows:
        print(f"no lds_subset group with >= 3 subsets under {', '.join(a.paths)}", file=sys.stderr)
        return 1
    pd.set_option("display.width", 250)
    print(pd.DataFrame(rows, columns=COLUMNS).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(over_seeds(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
