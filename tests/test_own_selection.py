"""Your own selection: ``selection.npz`` records the dataset's own index of every pool example, and
``method=from_selection method.path=FILE`` trains on a selection made anywhere (indices, or indices
with weights), under the same equal-compute and budget rules, ranked beside the built-in methods."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, compose_cfg, selbench
from selbench.core.errors import SelbenchError
from selbench.datasets.sources import load_source
from selbench.methods.baselines.from_selection import read_selection
from selbench.runners.run.job import run_job

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = TINY + ["runner.steps=20", "runner.eval_every=10", "budget.fraction=0.3", "seed=3", "runner.threads=1"]


def _sel(rec) -> dict:
    with np.load(Path(rec["run_dir"]) / "selection.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    rec = run_job(compose_cfg(RUN + ["method=random"], tmp_path_factory.mktemp("random")))
    assert rec["status"] == "ok", rec.get("reason")
    return rec


def test_selection_npz_maps_every_pool_example_to_the_datasets_own_index(random_run):
    """``pool_index[i]`` is the row of sklearn's digits that pool example ``i`` is: its true
    label is that row's label, and no row is in the pool twice."""
    from sklearn.datasets import load_digits

    z = _sel(random_run)
    labels = load_digits().target
    assert len(z["pool_index"]) == random_run["scenario_info"]["n_pool"]
    assert np.array_equal(labels[z["pool_index"]], z["truth_true_label"])
    assert len(np.unique(z["pool_index"])) == len(z["pool_index"])
    # ... and the digits source's train split is those rows (its held-out test split is not)
    src = load_source("digits")
    assert set(z["pool_index"].tolist()) <= set(src.train_index.tolist())


def test_a_saved_selection_round_trips_to_the_same_training_set_and_metrics(tmp_path, random_run):
    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={Path(random_run['run_dir']) / 'selection.npz'}"],
                              tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    a, b = _sel(random_run), _sel(rec)
    assert np.array_equal(a["pool_indices"], b["pool_indices"]) and np.array_equal(a["pool_weights"], b["pool_weights"])
    assert rec["selection"]["n_train"] == random_run["selection"]["n_train"]
    assert rec["metrics"] == random_run["metrics"]
    assert rec["curve"] == random_run["curve"]  # every evaluation on the way, too
    assert rec["selection"]["quality"] == random_run["selection"]["quality"]
    # the same equal-compute accounting as every method: runner.batch_size examples per step
    assert rec["compute"]["train_examples_per_step"] == random_run["compute"]["train_examples_per_step"] == 64
    assert rec["budget_use"] == "soft" and rec["selection"]["effective_budget"] == pytest.approx(0.3, abs=2e-3)


def _pool_index(tmp_path) -> np.ndarray:
    rec = run_job(compose_cfg(RUN + ["method=erm", "runner.steps=1", "runner.eval_every=1"], tmp_path / "erm"))
    return _sel(rec)["pool_index"]


def test_indices_with_weights_from_a_text_file_train_on_exactly_those_examples(tmp_path):
    pool_index = _pool_index(tmp_path)
    pick = pool_index[[5, 40, 7, 99, 13]]
    lines = ["index,weight"] + [f"{i},{w}" for i, w in zip(pick, [1.0, 2.0, 3.0, 0.5, 0.0])] + ["# a comment"]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={tmp_path / 'mine.csv'}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    z = _sel(rec)
    assert sorted(z["pool_indices"].tolist()) == [5, 7, 13, 40, 99]
    w = z["pool_weights"]
    assert w[5] == 1.0 and w[40] == 2.0 and w[7] == 3.0 and w[99] == 0.5 and w[13] == 0.0
    assert (w > 0).sum() == 4 and rec["selection"]["n_selected"] == 5


def test_indices_not_in_the_pool_are_dropped_with_a_warning_or_refused(tmp_path):
    pool_index = _pool_index(tmp_path)
    outside = sorted(set(range(2000)) - set(pool_index.tolist()))[:3]
    np.savez(tmp_path / "sel.npz", indices=np.concatenate([pool_index[:10], outside]))
    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={tmp_path / 'sel.npz'}"], tmp_path / "a"))
    assert rec["status"] == "ok" and rec["selection"]["n_selected"] == 10 and rec["selection"]["n_not_in_pool"] == 3
    assert any("3 of the 13 selected dataset indices are not in this run's pool" in w for w in rec["warnings"])
    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={tmp_path / 'sel.npz'}",
                                     "method.on_missing=error"], tmp_path / "b"))
    assert rec["status"] == "failed" and "not in this run's pool" in rec["reason"]


def test_a_selection_over_the_budget_is_refused_naming_the_sizes(tmp_path):
    pool_index = _pool_index(tmp_path)
    np.savez(tmp_path / "big.npz", indices=pool_index[:300])
    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={tmp_path / 'big.npz'}"], tmp_path))
    n_pool = rec["scenario_info"]["n_pool"]
    assert rec["status"] == "failed"
    assert f"keeps 300 of {n_pool} pool examples, more than the budget's {int(0.3 * n_pool)}" in rec["reason"]


@pytest.mark.parametrize("content,msg", [
    (None, "does not exist"),
    ("1\n2\n2\n", "appears more than once"),
    ("1,0.5\n2\n", "some lines have a weight"),
    ("1,-1\n", "non-negative"),
    ("x\ny\n", "is not 'index'"),
    ("index\n", "holds no indices"),
])
def test_a_bad_selection_file_is_one_line_naming_it(tmp_path, content, msg):
    f = tmp_path / "sel.txt"
    if content is not None:
        f.write_text(content)
    with pytest.raises(SelbenchError, match=msg) as e:
        read_selection(str(f))
    assert "\n" not in str(e.value) and "sel.txt" in str(e.value)


def test_a_bad_selection_file_exits_2_with_one_line_before_launch(tmp_path):
    (tmp_path / "sel.txt").write_text("1\n2\n2\n")
    out = selbench("-m", "method=from_selection", f"method.path={tmp_path / 'sel.txt'}", "dataset=digits", "seed=0,1",
                   f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "appears more than once" in lines[0], out.stderr
    assert not list(tmp_path.rglob("record.json"))


def test_the_report_ranks_it_beside_the_built_in_methods(tmp_path, random_run):
    from selbench.analysis.summary import load_records, summary_table

    rec = run_job(compose_cfg(RUN + ["method=from_selection", f"method.path={Path(random_run['run_dir']) / 'selection.npz'}"],
                              tmp_path))
    erm = run_job(compose_cfg(RUN + ["method=erm"], tmp_path))
    table = summary_table(load_records([random_run["run_dir"], rec["run_dir"], erm["run_dir"]]))
    assert {"random", "from_selection", "erm"} <= set(table["method"])
