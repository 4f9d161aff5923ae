"""Best-val beside final, charged costs, malformed records and the figures (issues 24 and 25), on
hand-written records so every number is checked against arithmetic done here: the tables, the
sweep summary and the claims show the test metric at the best validation step beside the final
one, labelled ("—" for records without it); costs are the charged seconds; a record with a
non-numeric metric is skipped and named, never a traceback; the figures draw validation and test
curves, a symlog weight axis and labelled points."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from selbench.analysis.claims import FAILS, HOLDS, judge
from selbench.analysis.claims_registry import Claim
from selbench.analysis.comparison import comparison
from selbench.analysis.records import load_runs
from selbench.analysis.summary import load_records, summary_table

matplotlib.use("Agg")


def write(root: Path, method: str, seed: int, final: float, best: float | None = None, *, use: str = "none",
          budget: float = 0.2, phases: dict | None = None, curve: list | None = None, **extra) -> dict:
    """One record: final test accuracy ``final`` (points) and, when ``best`` is given, a ``best_val`` block
    in the agreed layout (INTERFACES.md) whose test accuracy is ``best``."""
    d = root / f"{method}-b{budget}-s{seed}"
    rec = {"schema": 1, "method": method, "kind": "reweighter", "dataset": "toy", "scenario": "sym_noise",
           "seed": seed, "budget": budget, "budget_use": use, "status": "ok", "steps": 100, "scale": "small",
           "experiment": "quickstart", "run_dir": str(d), "warnings": [],
           "metrics": {"test_accuracy": final / 100, "test_balanced_accuracy": final / 100},
           "selection": {"budget_use": use, "quality": {}},
           "cost": {"phases": phases or {"train": {"wall_s": 10.0, "peak_rss_mb": 100.0, "peak_cuda_mb": 0.0}}},
           "config": {"seed": seed, "experiment_name": "quickstart", "method": {"name": method}}, **extra}
    if best is not None:
        rec["best_val"] = {"step": 40, "objective": {"metric": "val_accuracy", "value": 0.9},
                           "metrics": {"test_accuracy": best / 100, "test_balanced_accuracy": best / 100}}
    if curve is not None:
        rec["curve"] = curve
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps(rec))
    return rec


def test_tables_and_summary_show_best_val_beside_final_labelled(tmp_path):
    new = tmp_path / "new"
    for s in range(3):
        write(new, "erm", s, 50.0 + s, best=70.0 + s)  # memorises: 20 points below its best step
        write(new, "mwnet", s, 60.0 + s, best=66.0 + s)
    write(tmp_path / "old", "erm", 0, 55.0)  # a record written before the field: "—", never 0 or a crash
    t = comparison(load_runs([new]).df)
    erm = t.data.set_index("method").loc["erm"]
    assert erm.test_accuracy_mean == pytest.approx(51.0) and erm.test_accuracy_best_val_mean == pytest.approx(71.0)
    assert erm.best_val_seeds == 3
    text = t.text.set_index("method")
    assert text.loc["erm", "accuracy (%) final"] == "51.00 ± 1.00"
    assert text.loc["erm", "accuracy (%) at best val"] == "71.00 ± 1.00"
    assert any("at best val" in n and "validation only" in n for n in t.notes)
    from selbench.analysis.comparison_wide import comparison_wide

    wide = comparison_wide(t).text.set_index("method")
    assert wide.loc["erm"].iloc[0].startswith("51.00 ± 1.00 (best val 71.00)")
    summ = summary_table(load_records([new])).set_index("method")
    assert summ.loc["mwnet", "accuracy (%) final"] == "61.00 ± 1.00"
    assert summ.loc["mwnet", "accuracy (%) at best val"] == "67.00 ± 1.00"
    old = summary_table(load_records([tmp_path / "old"])).set_index("method")
    assert old.loc["erm", "accuracy (%) at best val"] == "—" and old.loc["erm", "accuracy (%) final"] == "55.00"


def test_some_seeds_without_best_val_are_counted_not_averaged_as_zero(tmp_path):
    write(tmp_path, "erm", 0, 50.0, best=70.0)
    write(tmp_path, "erm", 1, 52.0)
    text = comparison(load_runs([tmp_path]).df).text.set_index("method")
    assert text.loc["erm", "accuracy (%) at best val"] == "70.00 (1 of 2 seeds)"


def test_claims_show_the_best_val_comparison_and_diagnose_a_decaying_method(tmp_path):
    for s in range(3):  # erm memorises (70 → 50); mwnet is ahead at its best step (+3) but decays below erm
        write(tmp_path, "erm", s, 50.0 + s, best=70.0 + s)
        write(tmp_path, "mwnet", s, 48.0 + s, best=73.0 + s)
    c = Claim("x", "L2RW / MW-Net", "mwnet beats erm under noise", "quickstart", "mwnet", ("erm",),
              mechanism="erm_memorises", setting_why="erm memorises here")
    row = judge(load_runs([tmp_path]).df, [c]).iloc[0]
    assert row.verdict == FAILS and row.estimate == pytest.approx(-2.0)
    assert row.best_val_verdict == HOLDS and row.best_val_estimate == pytest.approx(3.0) and row.best_val_seeds == 3
    assert "setting: erm memorises (71.0 at its best validation step → 51.0 final)" in row.diagnosis
    assert "method: ahead at its best validation step (Δ +3" in row.diagnosis and "decays" in row.diagnosis
    assert row.diagnosis.endswith("per-seed Δ vs erm: -2, -2, -2") and row.setting_why == "erm memorises here"


def test_a_setting_where_erm_is_not_hurt_is_diagnosed_as_the_setting(tmp_path):
    for s in range(3):
        write(tmp_path, "erm", s, 78.0 + s, best=78.5 + s)  # no memorisation: nothing to fix
        write(tmp_path, "l2rw", s, 70.0 + s, best=71.0 + s)
    c = Claim("x", "L2RW", "l2rw beats erm", "quickstart", "l2rw", ("erm",), mechanism="erm_memorises")
    row = judge(load_runs([tmp_path]).df, [c]).iloc[0]
    assert row.verdict == FAILS and row.diagnosis.startswith("setting: mechanism not at work — erm is not hurt here (final 79.0 vs 79.5")
    assert "method:" not in row.diagnosis  # the setting, not the method, is what the numbers point at


def test_costs_use_charged_seconds_when_recorded_else_wall(tmp_path):
    shared = {"select": {"wall_s": 5.0, "shared_s": 245.0, "charged_s": 250.0, "peak_rss_mb": 1.0, "peak_cuda_mb": 0.0},
              "train": {"wall_s": 10.0, "peak_rss_mb": 1.0, "peak_cuda_mb": 0.0}}
    own = {"select": {"wall_s": 249.0, "peak_rss_mb": 1.0, "peak_cuda_mb": 0.0},  # an older record: wall only
           "train": {"wall_s": 10.0, "peak_rss_mb": 1.0, "peak_cuda_mb": 0.0}}
    for s in range(3):
        write(tmp_path, "spice", s, 60.0, use="hard", phases=shared)
        write(tmp_path, "less", s, 60.0, use="hard", phases=own)
        write(tmp_path, "erm", s, 60.0)
    df = load_runs([tmp_path]).df.set_index("method")
    assert df.loc["spice", "cost.method_wall_s"].tolist() == [260.0] * 3  # 250 charged + 10 training
    assert df.loc["spice", "cost.method_own_wall_s"].tolist() == [15.0] * 3
    assert df.loc["spice", "cost.shared_s"].tolist() == [245.0] * 3
    assert df.loc["less", "cost.method_wall_s"].tolist() == [259.0] * 3
    t = comparison(load_runs([tmp_path]).df).data.set_index("method")
    assert t.loc["spice", "time_x_erm"] == pytest.approx(26.0) and t.loc["less", "time_x_erm"] == pytest.approx(25.9)


@pytest.mark.parametrize("field,value,named", [
    (("metrics", "test_accuracy"), "abc", "metrics.test_accuracy is 'abc' (not a number)"),
    (("seed",), "zero", "seed is 'zero' (not a number)"),
    (("cost", "phases", "train", "wall_s"), "fast", "cost.phases.train.wall_s is 'fast' (not a number)"),
    (("best_val", "metrics", "test_accuracy"), [1], None),  # a list where a number belongs: tolerated as absent
    (("best_val", "metrics", "test_accuracy"), "x", "best_val.metrics.test_accuracy is 'x' (not a number)"),
])
def test_a_malformed_record_is_skipped_and_named_never_a_traceback(tmp_path, capsys, field, value, named):
    from selbench.analysis.report import main

    for s in range(2):
        write(tmp_path / "r", "erm", s, 50.0, best=60.0)
    bad = write(tmp_path / "r", "random", 0, 40.0, best=45.0, use="hard")
    node = bad
    for k in field[:-1]:
        node = node[k]
    node[field[-1]] = value
    Path(bad["run_dir"], "record.json").write_text(json.dumps(bad))
    runs = load_runs([tmp_path / "r"])
    if named is None:
        assert len(runs.df) == 3 and not runs.errors
        return
    assert len(runs.df) == 2 and runs.errors == [(str(Path(bad["run_dir"]) / "record.json"),
                                                  f"malformed record: {named}")]
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert named in (tmp_path / "rep" / "report.md").read_text()
    assert len(summary_table(load_records([tmp_path / "r"]))) == 1
    assert named in capsys.readouterr().err


def _curve(final, peak):
    return [{"step": st, "test_accuracy": a / 100, "val_accuracy": (a + 1) / 100}
            for st, a in ((10, peak - 10), (40, peak), (100, final))]


def test_learning_curves_plot_validation_and_test(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from selbench.analysis import metric_figures

    for s in range(2):
        write(tmp_path, "erm", s, 50.0, best=70.0, curve=_curve(50.0, 70.0))
        write(tmp_path, "mwnet", s, 60.0, best=66.0, curve=_curve(60.0, 66.0))
    seen = {}
    real_save = metric_figures.save

    def spy(fig, path):
        seen["titles"] = [ax.get_title() for ax in fig.axes]
        seen["lines"] = {ax.get_title(): [tuple(ln.get_ydata()) for ln in ax.get_lines()] for ax in fig.axes}
        return real_save(fig, path)

    monkeypatch.setattr(metric_figures, "save", spy)
    out = metric_figures.plot_learning_curves(load_runs([tmp_path]), tmp_path / "lc.png")
    assert out and Path(out).stat().st_size > 0
    assert seen["titles"] == ["toy-sym_noise — validation", "toy-sym_noise — test"]
    val, test = seen["lines"]["toy-sym_noise — validation"], seen["lines"]["toy-sym_noise — test"]
    assert (61.0, 71.0, 51.0) in val and (60.0, 70.0, 50.0) in test  # erm: val = test + 1 at every step
    plt.close("all")


def test_weight_histograms_use_a_symlog_axis_with_bins_even_on_it(tmp_path, monkeypatch):
    from selbench.analysis import weight_figures

    d = tmp_path / "r"
    rec = write(d, "blo", 0, 60.0, use="hard")
    w = np.r_[np.linspace(0, 0.5, 90), [30.0] * 10]  # a tail to weight 30 must not squash the mass near 0
    np.savez(Path(rec["run_dir"]) / "selection.npz", pool_weights=w, truth_is_clean=np.r_[[True] * 90, [False] * 10])
    seen = {}

    def spy(fig, path):
        import matplotlib.pyplot as plt

        seen["scale"] = fig.axes[0].get_xscale()
        plt.close(fig)
        return str(path)

    monkeypatch.setattr(weight_figures, "save", spy)
    assert weight_figures.plot_weight_distributions(load_runs([d]), tmp_path / "w.png")
    assert seen["scale"] == "symlog"
    edges = weight_figures.symlog_edges(0.0, 30.0, 20)
    t = np.log1p(edges / weight_figures.LINTHRESH)
    assert np.allclose(np.diff(t), t[-1] / 20)  # evenly spaced where the axis draws them
    assert sum(1 for e in edges if e < 1.0) >= 8  # the mass near 0 keeps its own bars


def test_overlapping_points_in_accuracy_vs_cost_are_labelled_apart():
    import matplotlib.pyplot as plt

    from selbench.analysis.metric_figures import label_points

    fig, ax = plt.subplots()
    x, y = np.array([10.0, 10.1, 50.0, 10.05]), np.array([70.0, 70.05, 60.0, 70.02])
    levels = label_points(ax, x, y, ["erm", "random", "blo", "bads"])
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["erm", "random", "blo", "bads"] and levels == [0, 1, 0, 2]
    offsets = [t.xyann for t in ax.texts]
    assert len({offsets[i] for i in (0, 1, 3)}) == 3  # the three close points' labels are stacked, not on top
    plt.close(fig)


def test_claims_without_records_show_no_best_val_cell(tmp_path):
    from selbench.analysis.claims_table import claims_table

    write(tmp_path, "erm", 0, 50.0, best=60.0)
    c = Claim("x", "L2RW", "l2rw beats erm", "nowhere/*", "l2rw", ("erm",))
    cell = claims_table(load_runs([tmp_path]).df, [c]).text.iloc[0]["at best val: estimate [95% CI]: verdict"]
    assert cell == "—"


def test_a_balancing_claim_checks_that_erm_predicts_one_class(tmp_path):
    for s in range(3):
        write(tmp_path / "a", "erm", s, 50.0, best=50.0)  # one class on a balanced test set
        write(tmp_path / "a", "bads", s, 60.0 + s, best=60.0 + s)
    c = Claim("x", "BADS", "bads exceeds 90%", "quickstart", "bads", bound=90.0, mechanism="erm_one_class")
    row = judge(load_runs([tmp_path / "a"]).df, [c]).iloc[0]
    assert row.verdict == FAILS
    assert row.diagnosis.startswith("setting: the imbalance is at work (erm's balanced accuracy 50.0")
    assert "method: short of the claim at its best validation step too (value 61)" in row.diagnosis
    for s in range(3):
        write(tmp_path / "b", "erm", s, 95.0, best=95.0)
        write(tmp_path / "b", "bads", s, 60.0 + s, best=60.0 + s)
    row = judge(load_runs([tmp_path / "b"]).df, [c]).iloc[0]
    assert row.diagnosis.startswith("setting: mechanism not at work — erm is not hurt here (balanced accuracy 95.0)")
