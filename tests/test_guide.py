"""docs/adding_a_method.md, followed literally: its code blocks marked ``file=…`` are copied into an
empty folder (the plugin folder), and the page's own commands run from there with the set-up the
page states (``setup.sh``: PYTHONPATH and SELBENCH_PLUGINS; selbench's environment active, i.e. its
``bin/`` on PATH) — no runner, no repository config, no analysis module touched, and no
environment the page does not give.  The method runs through its preset, the report ranks it,
and the claim the plugin registers is judged in the claims table."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

GUIDE = REPO / "docs" / "adding_a_method.md"
BLOCK = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```", re.S | re.M)
BIN = Path(sys.executable).parent


def _blocks() -> dict[str, str]:
    return {path: body for _, path, body in BLOCK.findall(GUIDE.read_text())}


def _guide_line(needle: str) -> str:
    """The one command line of the page containing ``needle`` (comment dropped)."""
    (line,) = [ln for ln in GUIDE.read_text().splitlines() if ln.startswith("selbench") and needle in ln]
    return line.split("  #")[0].strip()


def _shell(script: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``script`` in bash from ``cwd`` with selbench's environment active (its bin/ first on PATH) and
    nothing else: no PYTHONPATH, no SELBENCH_PLUGINS unless the page's set-up exports them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SELBENCH_PLUGINS")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_guide_names_its_files():
    files = _blocks()
    assert {"small_loss.py", "small_loss_claims.py", "setup.sh", "try.sh", "hydra_plugins/small_loss_searchpath.py",
            "small_loss_conf/experiment/small_loss/digits_noise.yaml",
            "small_loss_conf/method_preset/small_loss/digits_noise/small_loss.yaml"} <= set(files)
    assert not list((REPO / "methods").rglob("small_loss.py"))  # the worked example is not a built-in
    text = GUIDE.read_text()  # the import paths it gives are the real ones
    for line in re.findall(r"^from selbench\.\S+ import .+$", text, re.M):
        exec(line, {})


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guide") / "my_plugin"
    for rel, body in _blocks().items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(body)
    run = _shell("bash try.sh", folder)
    return {"folder": folder, "run": run, "results": folder / "results" / "small_loss"}


def test_without_the_set_up_the_plugin_is_not_found(plugin):
    out = _shell(_guide_line("warmup_steps=20") + " scale=debug results_dir=nowhere", plugin["folder"], timeout=300)
    assert out.returncode == 2 and "unknown method 'small_loss'" in out.stderr, out.stderr[-2000:]


def test_the_guide_method_runs_as_a_plugin_through_its_preset(plugin):
    run = plugin["run"]
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    recs = [json.loads(p.read_text()) for p in plugin["results"].rglob("record.json")]
    by = {}
    for r in recs:
        by.setdefault(r["method"], []).append(r)
    assert sorted(by) == ["erm", "random", "small_loss"] and all(len(v) == 3 for v in by.values())
    for r in by["small_loss"]:
        assert r["status"] == "ok" and r["experiment"] == "small_loss/digits_noise"
        assert r["config"]["method"]["warmup_steps"] == 30  # the method preset, found via the search path
        assert r["budget_use"] == "hard"
        sel = r["selection"]
        n_pool = r["scenario_info"]["n_pool"]
        assert sel["n_selected"] == int(r["budget"] * n_pool) and sel["effective_budget"] == pytest.approx(
            int(r["budget"] * n_pool) / n_pool)
        assert sel["kept_loss_mean"] < sel["pool_loss_mean"]
        # the small-loss trick at work: the kept examples are far cleaner than the pool (60% clean)
        assert sel["quality"]["clean_weight_share"] > r["scenario_info"]["pool_clean_fraction"] + 0.2
        assert "select" in r["cost"]["phases"]
    # the warm-up trains a proxy, not the model: same training examples per step as random
    per_step = {m: {r["compute"]["train_examples_per_step"] for r in v} for m, v in by.items()}
    assert per_step["small_loss"] == per_step["random"]


def test_check_config_refuses_before_launch(plugin):
    line = _guide_line("warmup_steps=-1")
    out = _shell(f"source setup.sh && {line} results_dir=bad", plugin["folder"], timeout=300)
    assert out.returncode == 2 and "must be ≥ 0" in out.stderr, out.stderr[-2000:]
    assert not list((plugin["folder"] / "bad").rglob("record.json"))


def test_the_report_and_the_plugins_own_claim_show_the_method(plugin):
    assert plugin["run"].returncode == 0, plugin["run"].stderr[-3000:]
    rep = plugin["results"] / "report"
    assert "small_loss" in plugin["run"].stdout  # the wide table printed
    table = pd.read_csv(rep / "tables" / "comparison.csv").set_index("method")
    row = table.loc["small_loss"]
    assert row.seeds == 3 and row.paired_baseline == "erm" and row.paired_seeds == 3
    assert row["rank"] in (1, 2) and not pd.isna(row.delta_vs_random)
    assert "small_loss" in (rep / "tables" / "comparison.md").read_text()
    # the claim the plugin registered (small_loss_claims.py), judged beside the built-in ones
    claims = pd.read_csv(plugin["results"] / "claims" / "claims.csv").set_index("id")
    mine = claims.loc["small-loss-random"]
    assert mine.paired_seeds == 3 and mine.versus == "random" and mine.verdict in ("holds", "does not hold")
    assert mine.setting_why.startswith("40% symmetric noise")
    assert "bads-weights-auc" in claims.index  # the registry's own claims are still there
