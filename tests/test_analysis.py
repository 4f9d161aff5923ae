"""The report: tables equal hand computations from the JSON records, failures and corrupt
records are listed, figures render, the wandb logger writes an offline run, and without
wandb everything else works."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, compose_cfg, selbench
from selbench.analysis.metric_figures import pareto_front
from selbench.analysis.records import NON_METHOD_PHASES, load_runs
from selbench.analysis.report import build_report
from selbench.methods.base import Reweighter, Selection, Selector
from selbench.methods.registry import register_method, unregister_method
from selbench.runners.run.job import run_job

BASE = ["dataset=digits", "model=mlp", "model.hidden=32", "scale=debug", "runner.steps=20", "runner.eval_every=10",
        "runner.batch_size=32", "runner.target_batch_size=16", "runner.device=cpu", "runner.threads=1",
        "progress=false"]
SCENARIOS = {
    "sym_noise": ["scenario=sym_noise", "scenario.pool_size=300", "scenario.target_per_class=5"],
    "imbalance": ["scenario=imbalance", "scenario.pool_size=100", "scenario.target_per_class=10",
                  "scenario.imbalance.minority_fraction=0.1"],
}
METHODS = ("erm", "random", "lossweight_test", "head_test")
SEEDS = (0, 1, 2)


class LossWeight(Reweighter):
    """A small real online reweighter for these tests: each pool example's weight is an EMA
    of exp(-loss / mean target loss) over the batches it appears in, so examples the
    target-fitted model finds easy (clean ones) gain weight.  ``soft``: β does not touch it,
    its effective budget is its mean weight (as BADS reports it)."""

    budget_use = "soft"

    def setup(self, ctx, optimizer):
        self.optimizer = optimizer
        self.w = torch.full((ctx.n_pool,), 0.5)

    def step(self, ctx, step, pool_idx, target_idx):
        self.optimizer.zero_grad(set_to_none=True)
        lp = ctx.adapter.per_example_loss(ctx.pool.x[pool_idx], ctx.pool.y[pool_idx])
        lt = ctx.adapter.per_example_loss(ctx.target.x[target_idx], ctx.target.y[target_idx])
        ref = lt.detach().mean().clamp_min(1e-6)
        self.w[pool_idx] = 0.5 * self.w[pool_idx] + 0.5 * torch.exp(-lp.detach() / ref).cpu()
        loss = (self.w[pool_idx].to(lp.device) * lp).mean() + lt.mean()
        loss.backward()
        ctx.cost.count(backward=len(pool_idx) + len(target_idx), train=len(pool_idx) + len(target_idx))
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def pool_weights(self, ctx):
        return self.w.clone()

    def effective_budget(self, ctx):
        return float(self.w.mean())


class HeadSelect(Selector):
    """A second ``hard`` method for these tests: the first ⌊β·N⌋ pool examples (+ target)."""

    def select(self, ctx):
        return Selection(torch.arange(ctx.k_budget), target_repeats=1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """4 methods × 2 scenarios × 3 seeds (+ random at a second budget), run in-process."""
    root = tmp_path_factory.mktemp("analysis") / "results"
    register_method("lossweight_test")(LossWeight)
    register_method("head_test")(HeadSelect)
    try:
        for scen, over in SCENARIOS.items():
            for m in METHODS:
                for s in SEEDS:
                    rec = run_job(compose_cfg(BASE + over + [f"method={m}", f"seed={s}"], root))
                    assert rec["status"] == "ok", rec.get("reason")
        for s in SEEDS:
            run_job(compose_cfg(BASE + SCENARIOS["sym_noise"] + ["method=random", "budget.fraction=0.5", f"seed={s}"],
                                root))
    finally:
        unregister_method("lossweight_test")
        unregister_method("head_test")
    out = root.parent / "report"
    res = build_report([root], out)
    records = [json.loads(p.read_text()) for p in sorted(root.rglob("record.json"))]
    return {"root": root, "out": out, "res": res, "records": records}


def _acc(r):
    return 100 * r["metrics"]["test_accuracy"]


def _method_wall(r):
    return sum(p["wall_s"] for n, p in r["cost"]["phases"].items() if n not in NON_METHOD_PHASES)


def _method_mem(r):
    phases = [p for n, p in r["cost"]["phases"].items() if n not in NON_METHOD_PHASES]
    cuda = max(p["peak_cuda_mb"] for p in phases)
    return cuda if cuda > 0 else max(p["peak_rss_mb"] for p in phases)


def test_runs_frame_one_row_per_run_with_flat_config(sweep):
    df = sweep["res"]["runs"].df
    assert len(df) == len(sweep["records"]) == 2 * 4 * 3 + 3
    assert set(df["setting"]) == {"digits-sym_noise", "digits-imbalance"}
    assert df["cfg.runner.optimizer.lr"].notna().all() and (df["cfg.method.name"] == df["method"]).all()
    csv = pd.read_csv(sweep["out"] / "runs.csv")
    assert len(csv) == len(df) and "cfg.scenario.pool_size" in csv.columns


def test_runs_frame_has_the_fairness_columns(sweep):
    df = sweep["res"]["runs"].df
    by = {str(p.parent.resolve()): json.loads(p.read_text()) for p in sweep["root"].rglob("record.json")}
    for _, row in df.iterrows():
        r = by[row.run_dir]  # the directory the record was read from (right after a move, too)
        assert row.budget_use == r["budget_use"] == {"erm": "none", "random": "hard", "head_test": "hard",
                                                     "lossweight_test": "soft"}[row.method]
        assert row["compute.train_examples"] == r["compute"]["train_examples"] > 0
        assert row["compute.train_examples_per_step"] == pytest.approx(r["compute"]["train_examples_per_step"])
        assert row["sel.effective_budget"] == pytest.approx(r["selection"]["effective_budget"])
        assert row.n_warnings == len(r["warnings"])
        # the table groups a budget-free method apart from the budget it was (needlessly) given
        assert (np.isnan(row.budget_group) if row.method == "erm" else row.budget_group == r["budget"])


def _table_key(r):
    """(setting, budget group, method) of a record, as the comparison table groups it."""
    return (f"digits-{r['scenario']}", None if r["budget_use"] == "none" else r["budget"], r["method"])


def test_comparison_numbers_equal_hand_computed_from_records(sweep):
    recs = sweep["records"]
    table = pd.read_csv(sweep["out"] / "tables" / "comparison.csv")
    groups: dict = {}
    for r in recs:
        groups.setdefault(_table_key(r), []).append(r)
    assert len(table) == len(groups) == 2 * 4 + 1

    def mean_of(setting, budget, method, f):
        return np.mean([f(r) for r in groups[(setting, budget, method)]])

    for (setting, budget, method), rs in groups.items():
        at = table.budget.isna() if budget is None else table.budget == budget
        row = table[(table.setting == setting) & at & (table.method == method)]
        assert len(row) == 1
        row = row.iloc[0]
        accs = [_acc(r) for r in rs]
        assert row.seeds == len(rs) == 3 and row.failed == 0
        assert row.test_accuracy_mean == pytest.approx(np.mean(accs), rel=1e-12)
        assert row.test_accuracy_std == pytest.approx(np.std(accs, ddof=1), rel=1e-9)
        bal = [100 * r["metrics"]["test_balanced_accuracy"] for r in rs]
        assert row.test_balanced_accuracy_mean == pytest.approx(np.mean(bal), rel=1e-12)
        use = rs[0]["budget_use"]
        # rank: only the hard-budget methods at this setting and budget
        hard = {m: mean_of(s, b, m, _acc) for (s, b, m), g in groups.items()
                if s == setting and b == budget and b is not None and g[0]["budget_use"] == "hard"}
        if use == "hard":
            assert row["rank"] == 1 + sum(v > np.mean(accs) for v in hard.values())
        else:
            assert np.isnan(row["rank"])
        everyone = [mean_of(*k, _acc) for k in groups if k[0] == setting]
        assert row.rank_in_setting == 1 + sum(v > np.mean(accs) for v in everyone)
        # Δ vs random: hard at the same budget, soft at its effective fraction (interpolated), none: no Δ
        rand = sorted((b, mean_of(s, b, m, _acc)) for s, b, m in groups if s == setting and m == "random")
        eff = np.mean([r["selection"]["effective_budget"] for r in rs])
        assert row.effective_budget == pytest.approx(eff, rel=1e-12)
        if use == "hard":
            expected = np.mean(accs) - dict(rand)[budget]
        elif use == "soft":
            bs, ms = [b for b, _ in rand], [m for _, m in rand]
            expected = np.mean(accs) - np.interp(eff, bs, ms) if bs[0] <= eff <= bs[-1] else np.nan
            assert row.random_at == pytest.approx(eff)
        else:
            expected = np.nan
        if np.isnan(expected):
            assert np.isnan(row.delta_vs_random)
        else:
            assert row.delta_vs_random == pytest.approx(expected, abs=1e-9)
        erm = groups[(setting, None, "erm")]
        for col, f in (("time_x_erm", _method_wall), ("mem_x_erm", _method_mem),
                       ("examples_per_step_x_erm", lambda r: r["compute"]["train_examples_per_step"]),
                       ("examples_x_erm", lambda r: r["compute"]["train_examples"])):
            assert row[col] == pytest.approx(np.mean([f(r) for r in rs]) / np.mean([f(r) for r in erm]), rel=1e-9)
    # the long table's text says what its CSV says
    md = (sweep["out"] / "tables" / "comparison.md").read_text().splitlines()
    header = [c.strip() for c in md[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:] if line.startswith("|")]
    assert len(cells) == len(table)
    for (_, row), line in zip(table.iterrows(), cells):
        cell = dict(zip(header, line))
        assert cell["method"] == row.method
        assert (cell["budget"] == "—") == np.isnan(row.budget) == (row.budget_use == "none")
        assert (cell["Δ vs random"] == "—") == np.isnan(row.delta_vs_random)
        assert (cell["rank"] == "—") == np.isnan(row["rank"])
        assert cell["examples/step ×erm"] == f"{row.examples_per_step_x_erm:.2f}"


def test_wide_table_bolds_the_best_hard_method_per_column(sweep):
    t = sweep["res"]["tables"]["comparison_wide"]
    long = sweep["res"]["tables"]["comparison"].data
    md = (sweep["out"] / "tables" / "comparison_wide.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()[2:] if line.startswith("|")}
    contested = 0
    for col in [c for c in t.text.columns if c not in ("method", "avg rank")]:
        setting, budget = col.split(" @ ")
        j = list(t.text.columns).index(col)
        sub = long[(long.setting == setting) & (long.budget.isna() if budget == "—" else long.budget == float(budget))]
        for _, r in sub.iterrows():  # soft and budget-free methods are shown, marked, never ranked
            cell = rows[r.method].split("|")[j + 1].strip()
            assert f"{r.test_accuracy_mean:.2f}" in cell
            assert cell.endswith("†") == (r.budget_use != "hard")
        ranked = sub[sub.budget_use == "hard"]
        bolded = [m for m, line in rows.items() if line.split("|")[j + 1].strip().startswith("**")]
        tied = ranked[np.isclose(ranked.test_accuracy_mean, ranked.test_accuracy_mean.max())].method  # ties all bold
        assert sorted(bolded) == (sorted(tied) if len(ranked) > 1 else [])
        contested += len(ranked) > 1
    assert contested >= 2 and "digits-sym_noise @ —" in t.text.columns
    assert t.text.set_index("method").loc["erm", "avg rank"] == "—"
    tex = (sweep["out"] / "tables" / "comparison_wide.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{" in tex and "$\\pm$" in tex


def test_quality_table_matches_records(sweep):
    q = pd.read_csv(sweep["out"] / "tables" / "quality.csv")
    for r_scen, col, key in (("sym_noise", "auc_clean_vs_corrupted_mean", "auc_clean_vs_corrupted"),
                             ("imbalance", "minority_weight_share_mean", "minority_weight_share")):
        for m in METHODS:
            rs = [r for r in sweep["records"] if r["scenario"] == r_scen and r["method"] == m and r["budget"] == 0.2]
            at = q.budget.isna() if m == "erm" else q.budget == 0.2  # erm ignores the budget: no budget
            (row,) = [r for _, r in q[(q.setting == f"digits-{r_scen}") & (q.method == m) & at].iterrows()]
            assert row[col] == pytest.approx(np.mean([r["selection"]["quality"][key] for r in rs]), rel=1e-12)
    # the loss-based reweighter separates clean from corrupted; random selection does not
    sym = q[q.setting == "digits-sym_noise"].set_index(["method", "budget"])
    assert sym.loc[("lossweight_test", 0.2), "auc_clean_vs_corrupted_mean"] > 0.6
    assert abs(sym.loc[("random", 0.2), "auc_clean_vs_corrupted_mean"] - 0.5) < 0.15


def test_figures_render_non_empty_pngs_and_report_links_them(sweep):
    import matplotlib.image as mpimg

    figs = sweep["res"]["figures"]
    assert set(figs) == {"accuracy_vs_budget", "accuracy_vs_cost", "learning_curves", "weight_distributions",
                         "weight_share_over_training"}
    report = Path(sweep["res"]["report"]).read_text()
    for name, path in figs.items():
        assert path is not None, name
        img = mpimg.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.01, f"{name} is blank"
        assert f"figures/{name}.png" in report
    for name in ("comparison", "comparison_wide", "quality", "failures"):
        for ext in ("md", "tex", "csv"):
            assert (sweep["out"] / "tables" / f"{name}.{ext}").stat().st_size > 0
    assert "## Provenance" in report and "torch" in report and "lossweight_test" in report


def test_pareto_front_keeps_only_undominated_points():
    cost = np.array([1.0, 2.0, 3.0, 1.5, 4.0])
    acc = np.array([50.0, 60.0, 55.0, 49.0, 70.0])
    assert list(pareto_front(cost, acc)) == [0, 1, 4]


# ---------------------------------------------------------------------------------- synthetic records
# Hand-written records, so every number in these tests is checked against arithmetic done here.

def _record(root: Path, method: str, seed: int, acc: float, budget: float = 0.2, use: str | None = "hard",
            eff: float | None = None, per_step: float = 32.0, steps: int = 20, warnings=(), legacy: bool = False,
            scenario: str = "sym_noise", quality: dict | None = None) -> dict:
    """Write one ``record.json`` (a ``legacy`` one has none of the fairness fields)."""
    d = root / f"{method}-b{budget}-s{seed}"
    rec = {"schema": 1, "method": method, "kind": "selector", "dataset": "toy", "scenario": scenario, "seed": seed,
           "budget": budget, "status": "ok", "run_dir": str(d), "steps": steps,
           "metrics": {"test_accuracy": acc / 100, "test_balanced_accuracy": acc / 100}}
    if not legacy:
        rec.update(budget_use=use, warnings=list(warnings),
                   selection={"budget_use": use, "effective_budget": eff, "quality": quality or {}},
                   compute={"match_examples": True, "steps": steps, "train_examples": per_step * steps,
                            "train_examples_per_step": per_step, "forward_per_step": per_step,
                            "backward_per_step": per_step})
    elif quality:
        rec["selection"] = {"quality": quality}
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(rec))
    return rec


def _randoms(root: Path) -> None:
    """random at β = 0.2 (80, 82 → 81) and β = 0.5 (85, 87 → 86)."""
    for b, accs in ((0.2, (80.0, 82.0)), (0.5, (85.0, 87.0))):
        for s, a in enumerate(accs):
            _record(root, "random", s, a, budget=b, eff=b)


def _row(data: pd.DataFrame, method: str, budget=None) -> pd.Series:
    at = data.budget.isna() if budget is None else data.budget == budget
    (row,) = [r for _, r in data[(data.method == method) & at].iterrows()]
    return row


def _md_rows(path: Path) -> list[dict]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def test_budget_free_method_shows_no_budget_no_delta_and_is_not_ranked_at_a_budget(tmp_path):
    from selbench.analysis.summary import load_records, summary_table
    from selbench.analysis.comparison import comparison

    root = tmp_path / "r"
    _randoms(root)
    for s, a in enumerate((83.0, 85.0)):
        _record(root, "blo", s, a, budget=0.2, eff=0.2)
    for b in (0.2, 0.5):  # erm swept over a budget it ignores: the same two runs twice
        for s, a in enumerate((90.0, 92.0)):
            _record(root, "erm", s, a, budget=b, use="none", eff=1.0)
    runs = load_runs([root])
    t = comparison(runs.df)
    d = t.data
    erm = _row(d, "erm")
    assert list(d.method).count("erm") == 1  # one row, under budget "—": never "erm at 0.2"
    assert erm.seeds == 2 and erm.test_accuracy_mean == pytest.approx(91.0)  # distinct seeds, not 4 runs
    assert erm.test_accuracy_std == pytest.approx(np.std([90, 92], ddof=1))
    assert pd.isna(erm["rank"]) and np.isnan(erm.delta_vs_random) and erm.rank_in_setting == 1
    at_02 = d[d.budget == 0.2]
    assert sorted(at_02.method) == ["blo", "random"]
    assert _row(d, "blo", 0.2)["rank"] == 1 and _row(d, "random", 0.2)["rank"] == 2
    assert _row(d, "blo", 0.2).delta_vs_random == pytest.approx(84.0 - 81.0)
    text = t.text.set_index("method").loc["erm"]
    assert text["budget"] == text["Δ vs random"] == text["rank"] == "—"
    # Markdown, LaTeX and CSV say the same
    build_report([root], tmp_path / "rep", with_figures=False)
    tab = tmp_path / "rep" / "tables"
    csv = pd.read_csv(tab / "comparison.csv")
    assert np.isnan(_row(csv, "erm").budget) and np.isnan(_row(csv, "erm").delta_vs_random)
    (md,) = [r for r in _md_rows(tab / "comparison.md") if r["method"] == "erm"]
    assert md["budget"] == md["Δ vs random"] == md["rank"] == "—"
    (tex,) = [ln for ln in (tab / "comparison.tex").read_text().splitlines() if " & erm & " in ln]
    cells = [c.strip() for c in tex.rstrip("\\ ").split("&")]
    header = [c.strip() for c in (tab / "comparison.tex").read_text().split("\\midrule")[0].splitlines()[-1]
              .rstrip("\\ ").split("&")]
    col = {name: header.index(name) for name in ("budget", "rank", "$\\Delta$ vs random")}
    assert cells[col["budget"]] == cells[col["$\\Delta$ vs random"]] == cells[col["rank"]] == "---"
    # the sweep's terminal summary: same cells
    summ = summary_table(load_records([root])).set_index("method")
    assert summ.loc["erm", "budget"] == summ.loc["erm", "Δ vs random"] == "—"
    assert summ.loc["blo", "Δ vs random"] == "+3.00"


def test_soft_method_is_compared_with_random_interpolated_at_its_effective_fraction(tmp_path):
    from selbench.analysis.comparison import comparison

    root = tmp_path / "r"
    _randoms(root)
    for s, (a, e) in enumerate(((84.0, 0.3), (86.0, 0.4))):  # β = 0.2, effective 0.35 on average
        _record(root, "bads", s, a, budget=0.2, use="soft", eff=e)
    for s, (a, e) in enumerate(((88.0, 0.6), (88.0, 0.7))):  # effective 0.65: beyond random's 0.5
        _record(root, "bads", s, a, budget=0.4, use="soft", eff=e)
    t = comparison(load_runs([root]).df)
    inside, outside = _row(t.data, "bads", 0.2), _row(t.data, "bads", 0.4)
    # random at 0.35 = 81 + (0.35 - 0.2) / (0.5 - 0.2) · (86 - 81) = 83.5; bads 85 → +1.5
    assert inside.effective_budget == pytest.approx(0.35)
    assert inside.random_at == pytest.approx(0.35) and inside.random_mean == pytest.approx(83.5)
    assert inside.delta_vs_random == pytest.approx(1.5)
    assert np.isnan(outside.delta_vs_random) and np.isnan(outside.random_mean)
    assert pd.isna(inside["rank"]) and pd.isna(outside["rank"])  # not ranked among the hard methods
    assert _row(t.data, "random", 0.2)["rank"] == 1  # random ranked alone at 0.2, bads not counted
    text = t.text.set_index(["method", "budget"])
    assert text.loc[("bads", "0.2 (soft)"), "Δ vs random"] == "+1.50 (@ 0.350)"
    assert text.loc[("bads", "0.4 (soft)"), "Δ vs random"] == "—"
    assert text.loc[("bads", "0.2 (soft)"), "eff. budget"] == "0.350"
    assert any("interpolated" in n for n in t.notes) and any("not ranked" in n for n in t.notes)


def test_examples_per_step_and_total_as_ratios_to_erm(tmp_path):
    from selbench.analysis.comparison import comparison

    root = tmp_path / "r"
    for s in (0, 1):
        _record(root, "erm", s, 90.0, use="none", eff=1.0, per_step=48.0, steps=20)    # 960 examples
        _record(root, "random", s, 80.0, eff=0.2, per_step=32.0, steps=20)             # 640
        _record(root, "bads", s, 85.0, use="soft", eff=0.5, per_step=40.0, steps=10)   # 400
    t = comparison(load_runs([root]).df)
    rnd, bads = _row(t.data, "random", 0.2), _row(t.data, "bads", 0.2)
    assert rnd.examples_per_step_x_erm == pytest.approx(32 / 48) and rnd.examples_x_erm == pytest.approx(640 / 960)
    assert bads.examples_per_step_x_erm == pytest.approx(40 / 48) and bads.examples_x_erm == pytest.approx(400 / 960)
    assert _row(t.data, "erm").examples_per_step_x_erm == pytest.approx(1.0)
    text = t.text.set_index("method")
    assert text.loc["random", "examples/step ×erm"] == "0.67" and text.loc["random", "examples ×erm"] == "0.67"
    assert text.loc["bads", "examples/step ×erm"] == "0.83" and text.loc["bads", "examples ×erm"] == "0.42"


def test_records_without_the_new_fields_still_load(tmp_path):
    from selbench.analysis.summary import load_records, summary_table
    from selbench.analysis.comparison import comparison

    root = tmp_path / "r"
    for s in (0, 1):
        _record(root, "erm", s, 90.0, legacy=True)
        _record(root, "random", s, 80.0 + s, legacy=True)
        _record(root, "legacy_method_x", s, 70.0, legacy=True)  # no longer registered
    df = load_runs([root]).df
    assert len(df) == 6 and (df.n_warnings == 0).all()
    # the record is the only source of a method's budget use: reading records never imports the methods,
    # so a record older than the field says nothing, and the tables treat it as hard (as before the field)
    assert df["budget_use"].isna().all() and df["budget_use_from"].isna().all()
    t = comparison(df)
    assert _row(t.data, "erm", 0.2).delta_vs_random == pytest.approx(90.0 - 80.5)
    assert _row(t.data, "legacy_method_x", 0.2).delta_vs_random == pytest.approx(70.0 - 80.5)
    assert _row(t.data, "legacy_method_x", 0.2)["rank"] == 3  # erm 90, random 80.5, legacy 70
    assert (t.text["examples/step ×erm"] == "—").all() and (t.text["eff. budget"] == "—").all()
    res = build_report([root], tmp_path / "rep", with_figures=False)
    assert "Runs with warnings" not in Path(res["report"]).read_text()
    assert len(summary_table(load_records([root]))) == 3


def test_runs_with_warnings_are_listed_in_the_report(tmp_path):
    root = tmp_path / "r"
    _record(root, "random", 0, 80.0, eff=0.2)
    _record(root, "bads", 1, 85.0, use="soft", eff=0.3,
            warnings=["all pool weights collapsed below 1e-3 at step 40", "lr schedule ended early"])
    res = build_report([root], tmp_path / "rep", with_figures=False)
    w = pd.read_csv(tmp_path / "rep" / "tables" / "warnings.csv")
    assert list(w.method) == ["bads", "bads"] and list(w.seed) == [1, 1] and (w.setting == "toy-sym_noise").all()
    assert list(w.warning) == ["all pool weights collapsed below 1e-3 at step 40", "lr schedule ended early"]
    report = Path(res["report"]).read_text()
    assert "**Runs with warnings** (1 run, 2 warnings" in report
    assert "| toy-sym_noise | bads | 0.2 (soft) | 1 | ok | all pool weights collapsed below 1e-3 at step 40 |" in report


def test_domain_shares_keyed_by_name_or_index_both_tabulate(tmp_path):
    from selbench.analysis.quality import quality

    root = tmp_path / "r"
    _record(root, "bads", 0, 50.0, use="soft", eff=0.3, scenario="domain_mixture",
            quality={"domain_weight_share": {"chatterbot": 0.6, "wiki": 0.4}})
    _record(root, "bads", 1, 50.0, use="soft", eff=0.3, scenario="domain_mixture",
            quality={"domain_weight_share": {"0": 0.5, "1": 0.5}}, legacy=True)
    q = quality(load_runs([root]).df)
    cols = [c for c in q.text.columns if c.startswith("domain ")]
    assert cols == ["domain 0 share", "domain 1 share", "domain chatterbot share", "domain wiki share"]
    assert q.data["domain_share.chatterbot_mean"].iloc[0] == pytest.approx(0.6)


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """A real CLI multirun where the lr=1e12 jobs diverge."""
    cwd = tmp_path_factory.mktemp("failing")
    out = selbench("-m", "method=erm,random", "runner.optimizer.lr=0.05,1e12", *BASE,
                   *SCENARIOS["sym_noise"], cwd=cwd)
    return cwd, out


def test_sweep_with_a_failing_job_still_reports_and_lists_it(failing_sweep, capsys):
    from selbench.analysis.report import main

    cwd, run = failing_sweep
    assert run.returncode == 1 and "run(s) failed" in run.stderr, run.stderr
    assert main([str(cwd / "results"), "--out", str(cwd / "rep")]) == 0
    err = capsys.readouterr().err
    assert err.count("selbench-report: failed run:") == 2 and "NaN/inf" in err
    report = (cwd / "rep" / "report.md").read_text()
    assert "**Failed runs** (2;" in report and "loss became NaN/inf" in report
    assert "runner.optimizer.lr=0.05,1e12" in report  # the sweep's command line
    table = pd.read_csv(cwd / "rep" / "tables" / "comparison.csv")
    bad = table[table.setting.str.contains("lr=1e\\+12")]
    good = table[table.setting.str.contains("lr=0.05")]
    assert sorted(bad.method) == ["erm", "random"] and (bad.failed == 1).all() and (bad.seeds == 0).all()
    assert (good.seeds == 1).all() and good.test_accuracy_mean.notna().all()
    fails = pd.read_csv(cwd / "rep" / "tables" / "failures.csv")
    assert len(fails) == 2 and fails.reason.str.contains("NaN/inf").all()


def test_corrupt_record_is_reported_not_skipped(failing_sweep, tmp_path):
    cwd, _ = failing_sweep
    root = tmp_path / "results"
    shutil.copytree(cwd / "results", root)
    files = sorted(root.rglob("record.json"))
    files[0].write_text(files[0].read_text()[:100])  # truncated mid-write by something else
    files[1].write_text("{}")                        # valid JSON, not a record
    res = build_report([root], tmp_path / "rep")
    assert len(res["runs"].df) == len(files) - 2
    bad = dict(res["runs"].errors)
    assert "corrupt JSON" in bad[str(files[0].resolve())] and "not a run record" in bad[str(files[1].resolve())]
    report = Path(res["report"]).read_text()
    assert "Unreadable or malformed record files" in report and str(files[0].resolve()) in report
    assert pd.read_csv(tmp_path / "rep" / "tables" / "unreadable.csv").shape[0] == 2


def _wandb_records(path: Path) -> list:
    """Parse a wandb ``.wandb`` transaction log (LevelDB log framing of protobuf Records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0
    out, buf, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(buf)
            out.append(r)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_logger_writes_offline_runs_with_the_metrics(tmp_path):
    pytest.importorskip("wandb")
    recs = [run_job(compose_cfg(BASE + SCENARIOS["sym_noise"] + [f"method={m}", "logger=wandb"], tmp_path))
            for m in ("erm", "random")]  # one process, two jobs: like a basic-launcher multirun
    # wandb's service writes the transaction log asynchronously; at process exit its
    # atexit hook waits for it — do the same here before reading the files
    import wandb

    wandb.teardown()
    ids = set()
    for rec in recs:
        run_dir = Path(rec["run_dir"])
        (wfile,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        ids.add(wfile.name)
        records = _wandb_records(wfile)
        kinds = [r.WhichOneof("record_type") for r in records]
        assert "run" in kinds and "exit" in kinds, kinds  # started and finished cleanly
        assert [r for r in records if r.WhichOneof("record_type") == "exit"][0].exit.exit_code == 0
        cfg = {}
        for r in records:  # the config travels with the run record and any later config updates
            kind = r.WhichOneof("record_type")
            if kind in ("run", "config"):
                cfg.update({_key(i): json.loads(i.value_json)
                            for i in (r.run.config.update if kind == "run" else r.config.update)})
        assert cfg["method"]["name"] == rec["method"] and cfg["seed"] == rec["seed"]
        logged = {r.history.step.num: {_key(i): json.loads(i.value_json) for i in r.history.item}
                  for r in records if r.WhichOneof("record_type") == "history"}
        for p in rec["curve"]:
            assert logged[p["step"]]["test_accuracy"] == pytest.approx(p["test_accuracy"])
        summary = {}
        for r in records:
            if r.WhichOneof("record_type") == "summary":
                summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        assert summary["final/test_accuracy"] == pytest.approx(rec["metrics"]["test_accuracy"])
        assert "cost/total_wall_s" in summary and summary["status"] == "ok"
        copy = json.loads(next(wfile.parent.glob("files/selbench_record.json")).read_text())
        assert copy["metrics"]["test_accuracy"] == rec["metrics"]["test_accuracy"]
    assert len(ids) == 2
    assert len(load_runs([tmp_path]).df) == 2  # the report never double-counts the wandb mirror


def test_without_wandb_everything_but_that_logger_works(tmp_path):
    code = f"""
import sys
sys.modules["wandb"] = None  # import wandb -> ImportError, as if uninstalled
sys.path.insert(0, {str(REPO / 'tests')!r})
from conftest import compose_cfg
from selbench.runners.run.job import run_job
from selbench.core.errors import ConfigError
from selbench.analysis.report import build_report
base = {BASE + SCENARIOS['sym_noise'] + ['method=random']!r}
for lg in ("none", "jsonl"):
    assert run_job(compose_cfg(base + ["logger=" + lg, "seed=" + str(len(lg))], {str(tmp_path / 'r')!r}))["status"] == "ok"
try:
    run_job(compose_cfg(base + ["logger=wandb", "seed=9"], {str(tmp_path / 'r')!r}))
    raise SystemExit("logger=wandb should have failed")
except ConfigError as e:
    assert "pip install 'selbench[wandb]'" in str(e), e
res = build_report([{str(tmp_path / 'r')!r}], {str(tmp_path / 'rep')!r})
assert len(res["runs"].df) == 2 and all(res["figures"][k] for k in ("learning_curves", "accuracy_vs_cost"))
assert "wandb" not in sys.modules or sys.modules["wandb"] is None
print("OK")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**__import__("os").environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_paper_figures_sit_beside_reproduced_ones(tmp_path):
    """A run tagged with a paper preset's experiment name gets the paper's claim beside it."""
    imb = BASE + SCENARIOS["imbalance"] + ["experiment_name=bads/mnist_balance"]
    recs = [run_job(compose_cfg(imb + [f"method={m}"], tmp_path / "r")) for m in ("random", "erm")]
    res = build_report([tmp_path / "r"], tmp_path / "rep", with_figures=False)
    pv = pd.read_csv(tmp_path / "rep" / "tables" / "paper_vs_reproduced.csv")
    assert list(pv.method) == ["random"]  # the paper makes no > 90% claim for Mixing (erm)
    row = pv.iloc[0]
    assert row.experiment == "bads/mnist_balance" and row.paper == 90.0 and "docs/paper_numbers.md" in row.source
    assert row.reproduced == pytest.approx(100 * recs[0]["metrics"]["test_accuracy"])
    assert bool(row.holds) == (100 * recs[0]["metrics"]["test_accuracy"] > 90)
    comp = pd.read_csv(tmp_path / "rep" / "tables" / "comparison.csv")
    assert comp.set_index("method").loc["random", "paper"].startswith("> 90%")
    assert "## Paper vs reproduced" in Path(res["report"]).read_text()
