"""Comparison tables from the runs DataFrame (``analysis.records``).

Every table is a :class:`Table`: the numbers (written as CSV), their display text
and which cells are bold (written as Markdown and LaTeX/booktabs).  Markdown and
LaTeX show exactly ``text``; the CSV holds the numbers behind it (an empty CSV cell is
a "—" cell).

* :func:`comparison` — one row per setting × budget × method: seeds, mean ± std of
  the metric over distinct seeds (sample std, ddof=1), rank, the difference to
  ``random``, the effective budget, the training examples per step and in total as a
  ratio to ``erm``, and the method's own cost (selection + training wall time, peak
  memory) as a ratio to ``erm`` in the same setting;
* :func:`comparison_wide` — the paper-style matrix: methods × (setting, budget), best
  per column in bold, average rank;
* :func:`quality` — selection quality where the scenario has ground truth;
* :func:`failures`, :func:`warnings`, :func:`paper_vs_reproduced`.

Budget semantics (``record["budget_use"]``, see ``selbench.methods.base.Method``):

* ``hard`` methods (keep exactly β of the pool: random, blo) are grouped, ranked and
  compared with random at their budget β;
* ``soft`` methods (β shapes them, they end at their own fraction: bads) are grouped at
  their β (a different β is a different experiment) but **not ranked** there; their Δ
  vs random is taken at their *effective* fraction, random's mean linearly interpolated
  between the two nearest random budgets run in the setting ("—" outside them);
* ``none`` methods (ignore β: erm, pool_only, target_only, duplicate_target, l2rw,
  mwnet) are grouped under budget "—" (``budget_group`` empty), never ranked at a
  budget, and have no Δ vs random;
* every row also has ``rank (setting)``: its rank among all rows of its setting,
  whatever their budget.

Accuracy-like metrics are shown in percent, as the papers print them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from selbench.analysis import paper as paper_mod
from selbench.analysis.records import add_budget_group

#: a table row's runs: the budget is ``budget_group`` (empty for methods that ignore the budget)
GROUP = ["setting", "budget_group", "method_label"]
#: the cell text of a missing or not-applicable value (CSV: empty)
NA = "—"


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
        return NA
    return f"{x:.{digits}f}"


def _pm(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NA
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
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", NA):
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
                if self.bold is not None and bool(self.bold.iat[i, j]) and s not in ("", _tex(NA)):
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
        "±": r"$\pm$", "×": r"$\times$", "–": "--", "—": "---", "−": "$-$", "≈": r"$\approx$", "≥": r"$\geq$", ">": r"$>$",
        "<": r"$<$", "Δ": r"$\Delta$"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


# ---------------------------------------------------------------------------------- comparison

def with_budget_group(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``budget_group`` column (added to a copy when a caller built ``df`` itself)."""
    if "budget_group" in df.columns:
        return df
    return add_budget_group(df.copy())


def budget_use(x) -> str:
    """A record's ``budget_use`` for the ranking rule: unknown (an older record of a method the
    registry does not know) counts as ``hard``, as every method did before the field existed."""
    return x if x in ("soft", "none") else "hard"


def _group_use(g: pd.DataFrame):
    """The budget use of one table row's runs (the most common stated value; None if none is stated)."""
    if "budget_use" not in g.columns:
        return None
    vals = g["budget_use"].dropna()
    return vals.mode().iloc[0] if len(vals) else None


def _numeric(frame: pd.DataFrame, col: str) -> pd.Series:
    if col in frame.columns:
        return pd.to_numeric(frame[col], errors="coerce")
    return pd.Series(np.nan, index=frame.index, dtype=float)


def _per_seed(good: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """One row per distinct seed (runs repeating a seed — e.g. ``erm`` swept over budgets it
    ignores — are the same experiment: they are averaged, not counted as extra seeds)."""
    if good.empty:
        return pd.DataFrame(columns=cols, dtype=float)
    num = pd.DataFrame({c: _numeric(good, c) for c in cols})
    if "seed" not in good.columns or not good["seed"].duplicated().any():
        return num.reset_index(drop=True)
    return num.groupby(good["seed"].astype(object).fillna("?").values, sort=True).mean().reset_index(drop=True)


def _mean(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.mean()) if len(x) else float("nan")


def interpolate_random(points: list[tuple[float, float]], fraction: float) -> float:
    """Random's mean at ``fraction`` of the pool, linearly interpolated between the two nearest
    random budgets run (``points`` = ``(budget, mean)``); NaN outside the budgets run."""
    pts = sorted((b, m) for b, m in points if not (math.isnan(b) or math.isnan(m)))
    if not pts or fraction is None or math.isnan(fraction):
        return float("nan")
    bs = np.array([b for b, _ in pts])
    ms = np.array([m for _, m in pts])
    tol = 1e-9
    if fraction < bs[0] - tol or fraction > bs[-1] + tol:
        return float("nan")
    return float(np.interp(min(max(fraction, bs[0]), bs[-1]), bs, ms))


def budget_text(budget, use) -> str:
    if budget_use(use) == "none" or budget is None or (isinstance(budget, float) and math.isnan(budget)):
        return NA
    return f"{budget:g} (soft)" if use == "soft" else f"{budget:g}"


def delta_text(delta, use, at) -> str:
    if delta is None or math.isnan(delta):
        return NA
    return f"{delta:+.2f} (@ {at:.3f})" if use == "soft" else f"{delta:+.2f}"


def _ratio_text(x, digits=2) -> str:
    return NA if x is None or math.isnan(x) else f"{x:.{digits}f}"


COMPARISON_COLUMNS = [
    "setting", "budget", "budget_use", "method", "seeds", "failed", "{m}_mean", "{m}_std",
    "test_balanced_accuracy_mean", "test_balanced_accuracy_std", "rank", "rank_in_setting", "delta_vs_random",
    "random_at", "random_mean", "effective_budget", "train_examples_per_step", "examples_per_step_x_erm",
    "train_examples", "examples_x_erm", "method_wall_s", "time_x_erm", "peak_mb", "mem_x_erm", "memory_kind",
    "warnings", "paper"]

#: the per-run columns a comparison row averages (over distinct seeds)
_AVERAGED = {"_m": "_m", "_bal": "_bal", "effective_budget": "sel.effective_budget",
             "train_examples_per_step": "compute.train_examples_per_step", "train_examples": "compute.train_examples",
             "method_wall_s": "cost.method_wall_s", "peak_mb": "cost.method_peak_mb"}


def comparison(df: pd.DataFrame, metric: str = "test_accuracy") -> Table:
    """Long table: one row per setting × budget × method (see module docstring and the notes)."""
    sc = scale(metric)
    cols = [c.format(m=metric) for c in COMPARISON_COLUMNS]
    if df.empty:
        empty = pd.DataFrame(columns=cols)
        return Table("comparison", "Comparison", empty, empty)
    df = with_budget_group(df)
    ok = df[df["status"] == "ok"].copy()
    ok["_m"] = _numeric(ok, metric) * sc
    ok["_bal"] = _numeric(ok, "test_balanced_accuracy") * 100
    src = [v for v in _AVERAGED.values()]
    erm = ok[ok["method"] == "erm"]
    erm_means = {c: {s: _mean(_numeric(g, c)) for s, g in erm.groupby("setting")} for c in src}
    rows = []
    for key, g in df.groupby(GROUP, dropna=False, sort=True):
        setting, budget, label = key
        good = ok.loc[ok.index.intersection(g.index)]
        use = _group_use(g)
        per = _per_seed(good, src)
        v = {k: _mean(per[c]) if c in per.columns else float("nan") for k, c in _AVERAGED.items()}
        refs = paper_mod.refs_for(g.iloc[0])
        n_warn = int(pd.to_numeric(g["n_warnings"], errors="coerce").fillna(0).sum()) if "n_warnings" in g else 0

        def x_erm(k, c):
            e = erm_means[c].get(setting, float("nan"))
            return v[k] / e if e and not math.isnan(e) else float("nan")

        rows.append({
            "setting": setting, "budget": budget, "budget_use": use, "method": label,
            "seeds": int(len(per)), "failed": int(len(g) - len(good)),
            f"{metric}_mean": v["_m"], f"{metric}_std": _std(per["_m"]),
            "test_balanced_accuracy_mean": v["_bal"], "test_balanced_accuracy_std": _std(per["_bal"]),
            "effective_budget": v["effective_budget"],
            "train_examples_per_step": v["train_examples_per_step"],
            "examples_per_step_x_erm": x_erm("train_examples_per_step", "compute.train_examples_per_step"),
            "train_examples": v["train_examples"], "examples_x_erm": x_erm("train_examples", "compute.train_examples"),
            "method_wall_s": v["method_wall_s"], "time_x_erm": x_erm("method_wall_s", "cost.method_wall_s"),
            "peak_mb": v["peak_mb"], "mem_x_erm": x_erm("peak_mb", "cost.method_peak_mb"),
            "memory_kind": (good["cost.memory_kind"].dropna().iloc[0]
                            if "cost.memory_kind" in good and good["cost.memory_kind"].notna().any() else None),
            "warnings": n_warn,
            "paper": "; ".join(r.text for r in refs if r.kind in ("value", "min")),
        })
    data = pd.DataFrame(rows)
    _add_random_reference(data, metric)
    _add_ranks(data, metric)
    data = data[cols]

    hard = data["budget_use"].map(budget_use) == "hard"
    m = data[f"{metric}_mean"].where(hard)
    grp = m.groupby([data["setting"], data["budget"]], dropna=False)
    best = grp.transform("max" if higher_is_better(metric) else "min")
    is_best = np.isclose(m, best) & m.notna() & (grp.transform("count") > 1)
    text = pd.DataFrame({
        "setting": data["setting"],
        "budget": [budget_text(b, u) for b, u in zip(data["budget"], data["budget_use"])],
        "method": data["method"],
        "seeds": data["seeds"].astype(str) + data["failed"].map(lambda f: f" (+{f} failed)" if f else ""),
        _label(metric): [_pm(a, b) for a, b in zip(data[f"{metric}_mean"], data[f"{metric}_std"])],
        "rank": data["rank"].map(lambda r: NA if pd.isna(r) else str(int(r))),
        "rank (setting)": data["rank_in_setting"].map(lambda r: NA if pd.isna(r) else str(int(r))),
        "Δ vs random": [delta_text(d, u, a) for d, u, a in zip(data["delta_vs_random"], data["budget_use"],
                                                                data["random_at"])],
        "eff. budget": data["effective_budget"].map(lambda x: _ratio_text(x, 3)),
        "examples/step ×erm": data["examples_per_step_x_erm"].map(_ratio_text),
        "examples ×erm": data["examples_x_erm"].map(_ratio_text),
        "time ×erm": data["time_x_erm"].map(_ratio_text),
        "mem ×erm": data["mem_x_erm"].map(_ratio_text),
        "wall s": data["method_wall_s"].map(lambda x: _fmt(x, 1)),
    })
    if metric != "test_balanced_accuracy":
        text.insert(5, "balanced acc. (%)", [_pm(a, b) for a, b in zip(data["test_balanced_accuracy_mean"],
                                                                        data["test_balanced_accuracy_std"])])
    if data["paper"].astype(bool).any():
        text["paper"] = data["paper"].replace("", NA)
    bold = pd.DataFrame(False, index=text.index, columns=text.columns)
    bold[_label(metric)] = is_best.values
    kinds = set(data["memory_kind"].dropna())
    unit = "points" if is_percent(metric) else metric
    notes = [f"mean ± sample std over distinct seeds (runs repeating a seed, e.g. a budget-free method swept "
             f"over budgets, are averaged per seed first).",
             "budget: β = budget.fraction for methods that keep exactly β of the pool (hard); "
             "'(soft)' for methods β only shapes (they end at their own fraction, 'eff. budget'); "
             f"{NA} for methods that ignore β (none) — those are grouped apart, never at a budget.",
             "rank: 1 = best among the hard-budget methods at the same setting and budget; soft and none methods "
             f"are not ranked there ({NA}). rank (setting): every row of the setting ranked together, "
             "whatever its budget (a leaderboard that ignores how much of the pool each row used).",
             f"Δ vs random: difference of means ({unit}) to random in the same setting — hard methods at the same "
             "budget; soft methods at their effective fraction (@), random's mean linearly interpolated between "
             f"the two nearest random budgets run ({NA} outside them); {NA} for methods that ignore the budget.",
             "eff. budget: the fraction of the pool the method effectively used (selectors: selected/pool; "
             "soft reweighters: mean weight; per-batch selection: kept fraction per batch).",
             "examples/step ×erm, examples ×erm: examples whose loss entered a parameter update, per step and "
             "in total, over erm's in the same setting; time/mem ×erm: the method's selection + training wall "
             "time / peak memory over erm's in the same setting."]
    if "rss" in kinds:
        notes.append("Memory on CPU is the process's peak RSS (interpreter and libraries included), "
                     "so ratios near 1 are expected there; on GPU it is peak CUDA memory.")
    return Table("comparison", f"Comparison ({_label(metric)})", data, text.reset_index(drop=True),
                 bold.reset_index(drop=True), notes)


def _add_random_reference(data: pd.DataFrame, metric: str) -> None:
    """``random_at``, ``random_mean`` and ``delta_vs_random`` (in place); see the notes."""
    mean = f"{metric}_mean"
    rand = data[(data["method"] == "random") & data["budget"].notna()]
    # random swept over its own options (method_label variants) at one budget: their mean
    by = rand.groupby(["setting", "budget"])[mean].mean()
    points: dict = {}
    for (setting, budget), m in by.items():
        points.setdefault(setting, []).append((float(budget), float(m)))
    at, ref = [], []
    for setting, budget, use, eff in zip(data["setting"], data["budget"], data["budget_use"], data["effective_budget"]):
        u = budget_use(use)
        pts = points.get(setting, [])
        if u == "none" or budget is None or (isinstance(budget, float) and math.isnan(budget)):
            at.append(float("nan"))
            ref.append(float("nan"))
        elif u == "soft":
            at.append(eff)
            ref.append(interpolate_random(pts, eff))
        else:
            at.append(float(budget))
            same = [m for b, m in pts if math.isclose(b, float(budget))]
            ref.append(same[0] if same else float("nan"))
    data["random_at"], data["random_mean"] = at, ref
    data["delta_vs_random"] = data[mean] - data["random_mean"]


def _add_ranks(data: pd.DataFrame, metric: str) -> None:
    """``rank`` (hard methods within setting × budget) and ``rank_in_setting`` (every row), in place."""
    key = data[f"{metric}_mean"] * (-1 if higher_is_better(metric) else 1)
    hard = (data["budget_use"].map(budget_use) == "hard") & data["budget"].notna()
    rank = pd.Series(pd.NA, index=data.index, dtype="Int64")
    if hard.any():
        r = key[hard].groupby([data.loc[hard, "setting"], data.loc[hard, "budget"]]).rank(method="min")
        rank.loc[hard] = r.astype("Int64")
    data["rank"] = rank
    data["rank_in_setting"] = key.groupby(data["setting"]).rank(method="min").astype("Int64")


def _label(metric: str) -> str:
    name = metric.removeprefix("test_").replace("_", " ")
    return f"{name} (%)" if is_percent(metric) else name


def comparison_wide(long: Table, metric: str = "test_accuracy") -> Table:
    """Methods × (setting, budget) from :func:`comparison`'s numbers.

    Same ranking rule as the long table: only hard-budget methods are bolded and ranked in a
    column; a soft or budget-free method's cell carries † (it is shown, not ranked).  A method
    that ignores the budget sits in the setting's ``@ —`` column when the setting was run at
    several budgets (in the setting's only column otherwise)."""
    d = long.data
    if d.empty:
        return Table("comparison_wide", "Comparison", d, d)
    multi_budget = d.groupby("setting")["budget"].nunique().max() > 1

    def col_name(setting, budget) -> str:
        if not multi_budget:
            return str(setting)
        return f"{setting} @ {NA if pd.isna(budget) else format(budget, 'g')}"

    col_of = [col_name(s, b) for s, b in zip(d["setting"], d["budget"])]
    ranked_row = (d["budget_use"].map(budget_use) == "hard") & d["rank"].notna()
    d = d.assign(_col=col_of, _ranked_mean=d[f"{metric}_mean"].where(ranked_row), _rank=d["rank"].astype(float),
                 _unranked=(~ranked_row & d[f"{metric}_mean"].notna()).astype(float))
    columns = list(dict.fromkeys(col_of))
    methods = list(dict.fromkeys(sorted(d["method"], key=str)))

    def pivot(values):
        return d.pivot_table(index="method", columns="_col", values=values, aggfunc="first", dropna=False) \
            .reindex(index=methods, columns=columns)

    mean, std, seeds, rank = pivot(f"{metric}_mean"), pivot(f"{metric}_std"), pivot("seeds"), pivot("_rank")
    ranked_mean, unranked = pivot("_ranked_mean"), pivot("_unranked").fillna(0).astype(bool)
    contested = [c for c in columns if ranked_mean[c].notna().sum() > 1]  # a method alone in a column is not ranked
    avg_rank = rank[contested].astype(float).mean(axis=1) if contested else rank.astype(float).mean(axis=1) * np.nan
    uniform = seeds.stack().dropna().nunique() == 1
    text = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for m in methods:
        for c in columns:
            s = _pm(mean.at[m, c], std.at[m, c])
            n = seeds.at[m, c]
            if not uniform and s != NA:
                s += f" (n={int(n)})"
            if s != NA and unranked.at[m, c]:
                s += " †"
            text.at[m, c] = s
    best = ranked_mean.max() if higher_is_better(metric) else ranked_mean.min()
    bold = pd.DataFrame({c: np.isclose(ranked_mean[c].astype(float), best[c]) & ranked_mean[c].notna()
                         & (ranked_mean[c].notna().sum() > 1) for c in columns}, index=methods)
    text.insert(0, "method", methods)
    bold.insert(0, "method", False)
    text["avg rank"] = [_fmt(x, 1) for x in avg_rank]
    bold["avg rank"] = False
    data = mean.copy()
    data.columns = [f"{c} mean" for c in columns]
    for c in columns:
        data[f"{c} std"] = std[c]
        data[f"{c} seeds"] = seeds[c]
        data[f"{c} rank"] = rank[c]
    data["avg_rank"] = avg_rank
    data = data.reset_index().rename(columns={"index": "method"})
    notes = [f"{_label(metric)}, mean ± sample std over seeds"
             + (f" ({_n_seeds(int(seeds.stack().dropna().iloc[0]))} per cell)" if uniform and seeds.notna().any().any() else "")
             + "; best per column in bold and avg rank (1 = best) over the columns where ≥ 2 hard-budget methods ran: "
               "only methods that keep exactly the column's budget of the pool are ranked."]
    if unranked.to_numpy().any():
        notes.append("† not ranked: the method ignores the budget (its column is '@ —' when the setting has several "
                     "budgets) or β only shapes the fraction it ends at (soft; see its effective budget and Δ vs "
                     "random at that fraction in the comparison table).")
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


_DOMAIN = "q.domain_share."


def domain_sort_key(name: str):
    """Domains keyed by index ("0".."4", older text records) sort numerically, by name ("chatterbot") alphabetically."""
    name = str(name)
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def quality(df: pd.DataFrame) -> Table:
    """Selection quality per setting × budget × method, where the scenario has ground truth."""
    df = with_budget_group(df) if len(df) else df
    ok = df[df["status"] == "ok"] if len(df) else df
    cols = [(c, h, hib) for c, h, hib in _QUALITY if c in ok.columns and ok[c].notna().any()]
    dom = sorted((c for c in ok.columns if c.startswith(_DOMAIN)), key=lambda c: domain_sort_key(c[len(_DOMAIN):]))
    truth_cols = [c for c, _, _ in cols if c != "q.effective_fraction"] + dom
    if ok.empty or not truth_cols:
        empty = pd.DataFrame(columns=["setting", "budget", "method"])
        return Table("quality", "Selection quality", empty, empty)
    ok = ok[ok[truth_cols].notna().any(axis=1)]
    rows, trows = [], []
    for (setting, budget, label), g in ok.groupby(GROUP, dropna=False, sort=True):
        row = {"setting": setting, "budget": budget, "method": label, "seeds": len(g)}
        trow = {"setting": setting, "budget": budget_text(budget, _group_use(g)), "method": label,
                "seeds": str(len(g))}
        for c, h, _ in cols + [(d, f"domain {d[len(_DOMAIN):]} share", None) for d in dom]:
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

def _run_budget(r: pd.Series) -> str:
    """A run's budget cell, as the comparison table shows its group ("—" if the method ignores it)."""
    use = r.get("budget_use")
    b = r.get("budget_group", r.get("budget")) if budget_use(use) != "none" else None
    return budget_text(b, use)


def failures(df: pd.DataFrame) -> Table:
    """One row per failed run (the budget "—" for a method that ignores it, as in the comparison)."""
    f = df[df["status"] != "ok"] if len(df) else df
    cols = ["setting", "method", "budget", "seed", "reason", "failed_step", "run_dir"]
    data = f[[c for c in cols if c in f.columns]].reset_index(drop=True) if len(f) else pd.DataFrame(columns=cols)
    text = data.astype(object).where(data.notna(), NA).astype(str)
    if len(f) and "budget" in data.columns:
        data["budget"] = [b if budget_use(u) != "none" else float("nan")
                          for b, u in zip(f["budget"], f.get("budget_use", pd.Series(None, index=f.index)))]
        text["budget"] = [_run_budget(r) for _, r in f.iterrows()]
    return Table("failures", "Failed runs", data, text)


def corrupt(errors: list[tuple[str, str]]) -> Table:
    data = pd.DataFrame(errors, columns=["record", "problem"])
    return Table("unreadable", "Unreadable record files", data, data.astype(str))


def warnings(df: pd.DataFrame) -> Table:
    """One row per warning a run recorded (``record["warnings"]``), failed runs included."""
    cols = ["setting", "method", "budget", "seed", "status", "warning", "run_dir"]
    rows, budgets = [], []
    if len(df) and "warnings" in df.columns:
        for _, r in df.iterrows():
            for w in _warning_list(r.get("warnings")):
                rows.append({"setting": r.get("setting"), "method": r.get("method_label", r.get("method")),
                             "budget": r.get("budget") if budget_use(r.get("budget_use")) != "none" else None,
                             "seed": r.get("seed"), "status": r.get("status"), "warning": w,
                             "run_dir": r.get("run_dir")})
                budgets.append(_run_budget(r))
    data = pd.DataFrame(rows, columns=cols)
    text = data.astype(object).where(data.notna(), NA).astype(str)
    text["budget"] = budgets
    return Table("warnings", "Runs with warnings", data, text)


def _warning_list(v) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(w) for w in v]
    if isinstance(v, str) and v:
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            return [v]
        return [str(w) for w in parsed] if isinstance(parsed, list) else [str(parsed)]
    return []


def paper_vs_reproduced(df: pd.DataFrame, long: Table, metric: str = "test_accuracy") -> Table:
    """Every paper reference that applies to the runs, beside the reproduced figure."""
    d = long.data
    rows = []
    if len(df) and len(d):
        df = with_budget_group(df)
        firsts = df.groupby(GROUP, dropna=False, sort=True).head(1)
        for _, run in firsts.iterrows():
            for ref in paper_mod.refs_for(run):
                bg = run["budget_group"]
                same_budget = d["budget"].isna() if pd.isna(bg) else (d["budget"] == bg)
                here = d[(d["setting"] == run["setting"]) & (d["method"] == run["method_label"]) & same_budget]
                if here.empty:
                    continue
                h = here.iloc[0]
                rep, holds = _reproduce(ref, h, d, metric)
                rows.append({"experiment": run["experiment"], "setting": run["setting"], "budget": bg,
                             "method": run["method_label"], "claim": ref.text, "paper": ref.value,
                             "reproduced": rep, "holds": holds, "note": ref.note, "source": ref.source})
    cols = ["experiment", "setting", "budget", "method", "claim", "paper", "reproduced", "holds", "note", "source"]
    data = pd.DataFrame(rows, columns=cols)
    text = pd.DataFrame({
        "setting": data["setting"], "method": data["method"], "paper says": data["claim"],
        "reproduced": data["reproduced"].map(lambda x: _fmt(x)),
        "holds here": data["holds"].map(lambda h: NA if h is None else ("yes" if h else "no")),
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
        # the rivals at the same budget, and those that ignore the budget (erm, target_only, …)
        same = d[(d["setting"] == h["setting"]) & ((d["budget"] == h["budget"]) | d["budget"].isna())]
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
