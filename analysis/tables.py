"""Comparison tables from the runs DataFrame (``analysis.records``).

Every table is a :class:`Table`: the numbers (written as CSV), their display text
and which cells are bold (written as Markdown and LaTeX/booktabs).

* :func:`comparison` — one row per setting × budget × method: seeds, mean ± std of
  the metric over seeds (sample std, ddof=1), rank within the setting and budget,
  the difference to ``random`` at the same budget, and the method's own cost
  (selection + training wall time, peak memory) as a ratio to ``erm`` in the same
  setting;
* :func:`comparison_wide` — the paper-style matrix: methods × (setting, budget), best
  per column in bold, average rank;
* :func:`quality` — selection quality where the scenario has ground truth;
* :func:`failures`, :func:`paper_vs_reproduced`.

Accuracy-like metrics are shown in percent, as the papers print them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from selbench.analysis import paper as paper_mod

GROUP = ["setting", "budget", "method_label"]


def is_percent(metric: str) -> bool:
    return "accuracy" in metric


def higher_is_better(metric: str) -> bool:
    return not any(s in metric for s in ("loss", "error"))


def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def _std(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def _fmt(x, digits=2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _pm(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return _fmt(mean, digits) if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass
class Table:
    name: str
    caption: str
    data: pd.DataFrame                      # numbers (CSV)
    text: pd.DataFrame                      # display strings, same shape as the shown table
    bold: pd.DataFrame | None = None        # bool mask over ``text``
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        t = self.text
        cols = [str(c) for c in t.columns]
        lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |",
                 "|" + "|".join("---" for _ in cols) + "|"]
        for i in range(len(t)):
            cells = []
            for j in range(t.shape[1]):
                s = _md_escape(str(t.iat[i, j]))
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", "–"):
                    s = f"**{s}**"
                cells.append(s)
            lines.append("| " + " | ".join(cells) + " |")
        out = "\n".join(lines)
        if self.notes:
            out += "\n\n" + "\n".join(f"_{n}_" for n in self.notes)
        return out

    def to_latex(self) -> str:
        t = self.text
        align = "l" * min(2, t.shape[1]) + "r" * max(0, t.shape[1] - 2)
        lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{_tex(self.caption)}}}",
                 f"\\label{{tab:{self.name}}}", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
                 " & ".join(_tex(str(c)) for c in t.columns) + " \\\\", "\\midrule"]
        for i in range(len(t)):
            cells = []
            for j in range(t.shape[1]):
                s = _tex(str(t.iat[i, j]))
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", "--"):
                    s = f"\\textbf{{{s}}}"
                cells.append(s)
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        return self.data.to_csv(index=False)

    def write(self, out_dir) -> dict[str, str]:
        from pathlib import Path

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for ext, body in (("md", self.to_markdown() + "\n"), ("tex", self.to_latex()), ("csv", self.to_csv())):
            p = out_dir / f"{self.name}.{ext}"
            p.write_text(body)
            paths[ext] = str(p)
        return paths


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "×": r"$\times$", "–": "--", "−": "$-$", "≈": r"$\approx$", "≥": r"$\geq$", ">": r"$>$",
        "<": r"$<$", "Δ": r"$\Delta$"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


# ---------------------------------------------------------------------------------- comparison

def _baseline_means(ok: pd.DataFrame, method: str, col: str) -> dict:
    """(setting, budget) → mean of ``col`` over the baseline's runs; falls back to the setting's
    runs at any budget (``erm`` and the other fixed baselines ignore the budget)."""
    b = ok[ok["method"] == method]
    by_budget = b.groupby(["setting", "budget"], dropna=False)[col].mean().to_dict()
    by_setting = b.groupby("setting")[col].mean().to_dict()
    return {"budget": by_budget, "setting": by_setting}


def _base(means: dict, setting, budget, same_budget_only: bool = False):
    v = means["budget"].get((setting, budget))
    if v is None and not same_budget_only:
        v = means["setting"].get(setting)
    return v


def comparison(df: pd.DataFrame, metric: str = "test_accuracy") -> Table:
    """Long table: one row per setting × budget × method (see module docstring)."""
    sc = scale(metric)
    cols = ["setting", "budget", "method", "seeds", "failed", f"{metric}_mean", f"{metric}_std",
            "test_balanced_accuracy_mean", "test_balanced_accuracy_std", "rank", "delta_vs_random",
            "method_wall_s", "time_x_erm", "peak_mb", "mem_x_erm", "memory_kind", "paper"]
    if df.empty:
        empty = pd.DataFrame(columns=cols)
        return Table("comparison", "Comparison", empty, empty)
    ok = df[df["status"] == "ok"].copy()
    ok["_m"] = pd.to_numeric(ok.get(metric), errors="coerce") * sc
    ok["_bal"] = pd.to_numeric(ok.get("test_balanced_accuracy"), errors="coerce") * 100
    rand = _baseline_means(ok, "random", "_m")
    erm_t = _baseline_means(ok, "erm", "cost.method_wall_s")
    erm_m = _baseline_means(ok, "erm", "cost.method_peak_mb")
    rows = []
    for key, g in df.groupby(GROUP, dropna=False, sort=True):
        setting, budget, label = key
        good = ok.loc[ok.index.intersection(g.index)]
        mean = float(good["_m"].mean()) if len(good) else float("nan")
        t = float(good["cost.method_wall_s"].mean()) if len(good) else float("nan")
        mem = float(good["cost.method_peak_mb"].mean()) if len(good) else float("nan")
        r_mean = _base(rand, setting, budget, same_budget_only=True)
        e_t, e_m = _base(erm_t, setting, budget), _base(erm_m, setting, budget)
        refs = paper_mod.refs_for(g.iloc[0])
        rows.append({
            "setting": setting, "budget": budget, "method": label,
            "seeds": int(len(good)), "failed": int(len(g) - len(good)),
            f"{metric}_mean": mean, f"{metric}_std": _std(good["_m"]),
            "test_balanced_accuracy_mean": float(good["_bal"].mean()) if len(good) else float("nan"),
            "test_balanced_accuracy_std": _std(good["_bal"]),
            "delta_vs_random": mean - r_mean if r_mean is not None else float("nan"),
            "method_wall_s": t, "time_x_erm": t / e_t if e_t else float("nan"),
            "peak_mb": mem, "mem_x_erm": mem / e_m if e_m else float("nan"),
            "memory_kind": (good["cost.memory_kind"].iloc[0] if len(good) else None),
            "paper": "; ".join(r.text for r in refs if r.kind in ("value", "min")),
        })
    data = pd.DataFrame(rows)
    sign = -1 if higher_is_better(metric) else 1
    data["rank"] = (data[f"{metric}_mean"] * sign).groupby([data["setting"], data["budget"]], dropna=False) \
        .rank(method="min").astype("Int64")
    data = data[cols]

    best = data.groupby(["setting", "budget"], dropna=False)[f"{metric}_mean"].transform(
        "max" if higher_is_better(metric) else "min")
    contested = data.groupby(["setting", "budget"], dropna=False)[f"{metric}_mean"].transform("count") > 1
    is_best = np.isclose(data[f"{metric}_mean"], best) & data[f"{metric}_mean"].notna() & contested
    text = pd.DataFrame({
        "setting": data["setting"], "budget": data["budget"].map(lambda b: f"{b:g}" if b == b else "–"),
        "method": data["method"], "seeds": data["seeds"].astype(str) + data["failed"].map(lambda f: f" (+{f} failed)" if f else ""),
        _label(metric): [_pm(m, s) for m, s in zip(data[f"{metric}_mean"], data[f"{metric}_std"])],
        "rank": data["rank"].map(lambda r: "–" if pd.isna(r) else str(int(r))),
        "Δ vs random": data["delta_vs_random"].map(lambda d: "–" if math.isnan(d) else f"{d:+.2f}"),
        "time ×erm": data["time_x_erm"].map(lambda x: _fmt(x) if not math.isnan(x) else "–"),
        "mem ×erm": data["mem_x_erm"].map(lambda x: _fmt(x) if not math.isnan(x) else "–"),
        "wall s": data["method_wall_s"].map(lambda x: _fmt(x, 1)),
    })
    if metric != "test_balanced_accuracy":
        text.insert(5, "balanced acc. (%)", [_pm(m, s) for m, s in zip(data["test_balanced_accuracy_mean"],
                                                                        data["test_balanced_accuracy_std"])])
    if data["paper"].astype(bool).any():
        text["paper"] = data["paper"].replace("", "–")
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    bold[_label(metric)] = is_best.values
    kinds = set(data["memory_kind"].dropna())
    notes = [f"mean ± sample std over seeds; rank within setting and budget; Δ vs random = difference of means "
             f"({'points' if is_percent(metric) else metric}) to random at the same budget; "
             "time/mem ×erm = the method's selection + training wall time / peak memory over erm's in the same setting."]
    if "rss" in kinds:
        notes.append("Memory on CPU is the process's peak RSS (interpreter and libraries included), "
                     "so ratios near 1 are expected there; on GPU it is peak CUDA memory.")
    return Table("comparison", f"Comparison ({_label(metric)})", data, text.reset_index(drop=True),
                 bold.reset_index(drop=True), notes)


def _label(metric: str) -> str:
    name = metric.removeprefix("test_").replace("_", " ")
    return f"{name} (%)" if is_percent(metric) else name


def comparison_wide(long: Table, metric: str = "test_accuracy") -> Table:
    """Methods × (setting, budget) from :func:`comparison`'s numbers; best per column bold."""
    d = long.data
    if d.empty:
        return Table("comparison_wide", "Comparison", d, d)
    multi_budget = d.groupby("setting")["budget"].nunique().max() > 1
    col_of = d.apply(lambda r: f"{r.setting} @ {r.budget:g}" if multi_budget else str(r.setting), axis=1)
    d = d.assign(_col=col_of)
    columns = list(dict.fromkeys(col_of))
    methods = list(dict.fromkeys(sorted(d["method"], key=str)))
    mean = d.pivot_table(index="method", columns="_col", values=f"{metric}_mean", aggfunc="first", dropna=False)
    std = d.pivot_table(index="method", columns="_col", values=f"{metric}_std", aggfunc="first", dropna=False)
    seeds = d.pivot_table(index="method", columns="_col", values="seeds", aggfunc="first", dropna=False)
    rank = d.pivot_table(index="method", columns="_col", values="rank", aggfunc="first", dropna=False)
    mean, std, seeds, rank = (x.reindex(index=methods, columns=columns) for x in (mean, std, seeds, rank))
    contested = [c for c in columns if mean[c].notna().sum() > 1]  # a method alone in a column is not ranked
    avg_rank = rank[contested].astype(float).mean(axis=1) if contested else rank.astype(float).mean(axis=1) * np.nan
    uniform = seeds.stack().dropna().nunique() == 1
    text = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for m in methods:
        for c in columns:
            s = _pm(mean.at[m, c], std.at[m, c])
            n = seeds.at[m, c]
            if not uniform and s != "–":
                s += f" (n={int(n)})"
            text.at[m, c] = s
    best = mean.max() if higher_is_better(metric) else mean.min()
    bold = pd.DataFrame({c: np.isclose(mean[c].astype(float), best[c]) & mean[c].notna() & (mean[c].notna().sum() > 1)
                         for c in columns}, index=methods)
    text.insert(0, "method", methods)
    bold.insert(0, "method", False)
    text["avg rank"] = [_fmt(x, 1) for x in avg_rank]
    bold["avg rank"] = False
    data = mean.copy()
    data.columns = [f"{c} mean" for c in columns]
    for c in columns:
        data[f"{c} std"] = std[c]
        data[f"{c} seeds"] = seeds[c]
    data["avg_rank"] = avg_rank
    data = data.reset_index().rename(columns={"index": "method"})
    notes = [f"{_label(metric)}, mean ± sample std over seeds"
             + (f" ({_n_seeds(int(seeds.stack().dropna().iloc[0]))} per cell)" if uniform and seeds.notna().any().any() else "")
             + "; best per column in bold (where ≥ 2 methods ran); avg rank over the columns where ≥ 2 methods ran (1 = best)."]
    return Table("comparison_wide", f"Methods × settings ({_label(metric)})", data,
                 text.reset_index(drop=True), bold.reset_index(drop=True), notes)


# ---------------------------------------------------------------------------------- quality

_QUALITY = [  # column, header, higher is better (None: neither)
    ("q.auc_clean_vs_corrupted", "weight AUC clean vs corrupted", True),
    ("q.clean_weight_share", "clean weight share", True),
    ("q.clean_weight_mean", "mean w (clean)", None),
    ("q.corrupted_weight_mean", "mean w (corrupted)", None),
    ("q.minority_weight_share", "minority weight share", True),
    ("q.minority_pool_fraction", "minority pool fraction", None),
    ("q.auc_minority_vs_majority", "weight AUC minority vs majority", True),
    ("q.effective_fraction", "effective fraction", None),
]


def quality(df: pd.DataFrame) -> Table:
    """Selection quality per setting × budget × method, where the scenario has ground truth."""
    ok = df[df["status"] == "ok"] if len(df) else df
    cols = [(c, h, hib) for c, h, hib in _QUALITY if c in ok.columns and ok[c].notna().any()]
    dom = sorted((c for c in ok.columns if c.startswith("q.domain_share.")), key=lambda c: int(c.rsplit(".", 1)[1])
                 if c.rsplit(".", 1)[1].lstrip("-").isdigit() else c)
    truth_cols = [c for c, _, _ in cols if c != "q.effective_fraction"] + dom
    if ok.empty or not truth_cols:
        empty = pd.DataFrame(columns=["setting", "budget", "method"])
        return Table("quality", "Selection quality", empty, empty)
    ok = ok[ok[truth_cols].notna().any(axis=1)]
    rows, trows = [], []
    for (setting, budget, label), g in ok.groupby(GROUP, dropna=False, sort=True):
        row = {"setting": setting, "budget": budget, "method": label, "seeds": len(g)}
        trow = {"setting": setting, "budget": f"{budget:g}", "method": label, "seeds": str(len(g))}
        for c, h, _ in cols + [(d, f"domain {d.rsplit('.', 1)[1]} share", None) for d in dom]:
            x = pd.to_numeric(g[c], errors="coerce")
            row[f"{c[2:]}_mean"], row[f"{c[2:]}_std"] = float(x.mean()), _std(x)
            trow[h] = _pm(row[f"{c[2:]}_mean"], row[f"{c[2:]}_std"], 3)
        rows.append(row)
        trows.append(trow)
    data, text = pd.DataFrame(rows), pd.DataFrame(trows)
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    for c, h, hib in cols:
        if hib is None:
            continue
        m = data[f"{c[2:]}_mean"]
        grp = m.groupby([data["setting"], data["budget"]], dropna=False)
        bold[h] = (np.isclose(m, grp.transform("max")) & m.notna() & (grp.transform("count") > 1)).values
    notes = ["Weights are the method's final per-pool-example weights (a selection is a 0/1 weight), scored "
             "against ground truth the method never saw. AUC 0.5 = no signal; minority pool fraction is the "
             "share a uniform weighting would give."]
    return Table("quality", "Selection quality", data, text, bold, notes)


# ---------------------------------------------------------------------------------- failures, paper

def failures(df: pd.DataFrame) -> Table:
    f = df[df["status"] != "ok"] if len(df) else df
    cols = ["setting", "method", "budget", "seed", "reason", "failed_step", "run_dir"]
    data = f[[c for c in cols if c in f.columns]].reset_index(drop=True) if len(f) else pd.DataFrame(columns=cols)
    text = data.astype(object).where(data.notna(), "–").astype(str)
    return Table("failures", "Failed runs", data, text)


def corrupt(errors: list[tuple[str, str]]) -> Table:
    data = pd.DataFrame(errors, columns=["record", "problem"])
    return Table("unreadable", "Unreadable record files", data, data.astype(str))


def paper_vs_reproduced(df: pd.DataFrame, long: Table, metric: str = "test_accuracy") -> Table:
    """Every paper reference that applies to the runs, beside the reproduced figure."""
    d = long.data
    rows = []
    if len(df) and len(d):
        firsts = df.groupby(GROUP, dropna=False, sort=True).head(1)
        for _, run in firsts.iterrows():
            for ref in paper_mod.refs_for(run):
                here = d[(d["setting"] == run["setting"]) & (d["method"] == run["method_label"])
                         & ((d["budget"] == run["budget"]) | d["budget"].isna())]
                if here.empty:
                    continue
                h = here.iloc[0]
                rep, holds = _reproduce(ref, h, d, metric)
                rows.append({"experiment": run["experiment"], "setting": run["setting"], "budget": run["budget"],
                             "method": run["method_label"], "claim": ref.text, "paper": ref.value,
                             "reproduced": rep, "holds": holds, "note": ref.note, "source": ref.source})
    cols = ["experiment", "setting", "budget", "method", "claim", "paper", "reproduced", "holds", "note", "source"]
    data = pd.DataFrame(rows, columns=cols)
    text = pd.DataFrame({
        "setting": data["setting"], "method": data["method"], "paper says": data["claim"],
        "reproduced": data["reproduced"].map(lambda x: _fmt(x)),
        "holds here": data["holds"].map(lambda h: "–" if h is None else ("yes" if h else "no")),
        "note": data["note"],
    })
    return Table("paper_vs_reproduced", "Paper vs reproduced", data, text,
                 notes=["Paper figures from docs/PAPER_NUMBERS.md (sources per row in the CSV); reproduced at this "
                        "preset's scale. 'holds here' only for claims: > the paper's bound, or the difference has the claimed sign (its size is beside it)."])


def _reproduce(ref, h: pd.Series, d: pd.DataFrame, metric: str):
    mean = h[f"{metric}_mean"]
    if ref.kind == "value":
        return mean, None
    if ref.kind == "min":
        return mean, (bool(mean > ref.value) if not math.isnan(mean) else None)
    if ref.kind == "diff":
        same = d[(d["setting"] == h["setting"]) & (d["budget"] == h["budget"])]
        others = same[same["method"].isin(ref.versus)][f"{metric}_mean"].dropna()
        if others.empty or math.isnan(mean):
            return float("nan"), None
        diff = mean - float(others.max())
        return diff, bool(diff > 0)  # the claim's direction; its size is shown beside
    if ref.kind == "cost_time":
        return h["time_x_erm"], None
    if ref.kind == "cost_memory":
        return h["mem_x_erm"], None
    return float("nan"), None


def _n_seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")
