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
from selbench.analysis.figures import pareto_front
from selbench.analysis.records import NON_METHOD_PHASES, load_runs
from selbench.analysis.report import build_report
from selbench.methods.base import Reweighter
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
METHODS = ("erm", "random", "lossweight_test")
SEEDS = (0, 1, 2)


class LossWeight(Reweighter):
    """A small real online reweighter for these tests: each pool example's weight is an EMA
    of exp(-loss / mean target loss) over the batches it appears in, so examples the
    target-fitted model finds easy (clean ones) gain weight."""

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
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def pool_weights(self, ctx):
        return self.w.clone()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """3 methods × 2 scenarios × 3 seeds (+ random at a second budget), run in-process."""
    root = tmp_path_factory.mktemp("analysis") / "results"
    register_method("lossweight_test")(LossWeight)
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
    assert len(df) == len(sweep["records"]) == 2 * 3 * 3 + 3
    assert set(df["setting"]) == {"digits-sym_noise", "digits-imbalance"}
    assert df["cfg.runner.optimizer.lr"].notna().all() and (df["cfg.method.name"] == df["method"]).all()
    csv = pd.read_csv(sweep["out"] / "runs.csv")
    assert len(csv) == len(df) and "cfg.scenario.pool_size" in csv.columns


def test_comparison_numbers_equal_hand_computed_from_records(sweep):
    recs = sweep["records"]
    table = pd.read_csv(sweep["out"] / "tables" / "comparison.csv")
    groups: dict = {}
    for r in recs:
        groups.setdefault((f"digits-{r['scenario']}", r["budget"], r["method"]), []).append(r)
    assert len(table) == len(groups) == 2 * 3 + 1
    for (setting, budget, method), rs in groups.items():
        row = table[(table.setting == setting) & (table.budget == budget) & (table.method == method)]
        assert len(row) == 1
        row = row.iloc[0]
        accs = [_acc(r) for r in rs]
        assert row.seeds == len(rs) == 3 and row.failed == 0
        assert row.test_accuracy_mean == pytest.approx(np.mean(accs), rel=1e-12)
        assert row.test_accuracy_std == pytest.approx(np.std(accs, ddof=1), rel=1e-9)
        bal = [100 * r["metrics"]["test_balanced_accuracy"] for r in rs]
        assert row.test_balanced_accuracy_mean == pytest.approx(np.mean(bal), rel=1e-12)
        same = {m: np.mean([_acc(r) for r in g]) for (s, b, m), g in groups.items() if s == setting and b == budget}
        assert row["rank"] == 1 + sum(v > np.mean(accs) for v in same.values())
        if "random" in same:
            assert row.delta_vs_random == pytest.approx(np.mean(accs) - same["random"], abs=1e-9)
        else:
            assert np.isnan(row.delta_vs_random)
        erm = groups[(setting, 0.2, "erm")]
        assert row.time_x_erm == pytest.approx(np.mean([_method_wall(r) for r in rs])
                                               / np.mean([_method_wall(r) for r in erm]), rel=1e-9)
        assert row.mem_x_erm == pytest.approx(np.mean([_method_mem(r) for r in rs])
                                              / np.mean([_method_mem(r) for r in erm]), rel=1e-9)


def test_wide_table_bolds_the_best_mean_per_column(sweep):
    t = sweep["res"]["tables"]["comparison_wide"]
    long = sweep["res"]["tables"]["comparison"].data
    md = (sweep["out"] / "tables" / "comparison_wide.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()[2:] if line.startswith("|")}
    for col in [c for c in t.text.columns if c not in ("method", "avg rank")]:
        setting, budget = col.split(" @ ")
        sub = long[(long.setting == setting) & (long.budget == float(budget))]
        best = sub.loc[sub.test_accuracy_mean.idxmax()]
        j = list(t.text.columns).index(col)
        cell = rows[best.method].split("|")[j + 1].strip()
        assert f"{best.test_accuracy_mean:.2f}" in cell
        assert cell.startswith("**") == (len(sub) > 1)  # a method alone in its column is not "best"
        bolded = [m for m, line in rows.items() if line.split("|")[j + 1].strip().startswith("**")]
        tied = sub[np.isclose(sub.test_accuracy_mean, sub.test_accuracy_mean.max())].method  # ties all bold
        assert sorted(bolded) == (sorted(tied) if len(sub) > 1 else [])
    tex = (sweep["out"] / "tables" / "comparison_wide.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{" in tex and "$\\pm$" in tex


def test_quality_table_matches_records(sweep):
    q = pd.read_csv(sweep["out"] / "tables" / "quality.csv")
    for r_scen, col, key in (("sym_noise", "auc_clean_vs_corrupted_mean", "auc_clean_vs_corrupted"),
                             ("imbalance", "minority_weight_share_mean", "minority_weight_share")):
        for m in METHODS:
            rs = [r for r in sweep["records"] if r["scenario"] == r_scen and r["method"] == m and r["budget"] == 0.2]
            row = q[(q.setting == f"digits-{r_scen}") & (q.method == m) & (q.budget == 0.2)].iloc[0]
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
    assert "Unreadable record files" in report and str(files[0].resolve()) in report
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
    assert row.experiment == "bads/mnist_balance" and row.paper == 90.0 and "PAPER_NUMBERS.md" in row.source
    assert row.reproduced == pytest.approx(100 * recs[0]["metrics"]["test_accuracy"])
    assert bool(row.holds) == (100 * recs[0]["metrics"]["test_accuracy"] > 90)
    comp = pd.read_csv(tmp_path / "rep" / "tables" / "comparison.csv")
    assert comp.set_index("method").loc["random", "paper"].startswith("> 90%")
    assert "## Paper vs reproduced" in Path(res["report"]).read_text()
