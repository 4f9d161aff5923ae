"""A fair comparison: equal examples per step, budgets that mean what they say, tuning on
validation, errors before launch, run identity, and defaults that hold on every scenario
family the harness ships."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, compose_cfg, selbench
from dataset_roots import root_dataset
from selbench.core.errors import ConfigError, DataError
from selbench.methods.registry import registered
from selbench.methods.compute import matched_batches
from selbench.runners.run.job import run_job
from selbench.runners.run.validate import validate_overrides

#: methods whose defaults are sized for an accelerator (MTT unrolls differentiable training
#: steps: minutes per run on 2 cores): their fairness runs are in the slow suite
ACCELERATOR_SIZED = {"mtt"}
METHODS = [pytest.param(m, marks=[pytest.mark.slow] if m in ACCELERATOR_SIZED else []) for m in sorted(registered())]
CONF = Path(__file__).resolve().parent.parent / "conf"

#: one seconds-long config per scenario family (digits imbalance: 4 fours among 90)
FAMILIES = {
    "sym_noise": TINY,
    "asym_noise": TINY + ["scenario=asym_noise", "scenario.pool_size=600", "scenario.target_per_class=10"],
    "imbalance": TINY + ["scenario=imbalance", "scenario.pool_size=90", "scenario.target_per_class=10",
                         "scenario.imbalance.minority_fraction=0.05", "budget.fraction=0.5"],
    "text_mixture": ["runner=language", "dataset.genres=[roman,tragedies]", "scenario.target_domain=roman",
                     "scenario.pool_size=64", "scenario.target_size=8", "scenario.test_size=16", "scenario.seq_len=32",
                     "model.width=32", "model.depth=1", "model.heads=2", "model.context=32",
                     "model.tokenizer.max_vocab=256", "runner.steps=8", "runner.eval_every=4", "runner.batch_size=8",
                     "runner.target_batch_size=4", "runner.device=cpu", "runner.threads=1", "progress=false",
                     "scale=debug"],
}

#: instruction/response pairs, for methods that need them (``needs_instruction_pairs``: ifd)
INSTRUCTIONS = ["runner=language", "dataset=instructions", "scenario=instruction_mixture", "scenario.pool_size=64",
                "scenario.seq_len=48", "scenario.target_per_domain=4", "scenario.test_per_domain=8",
                "scenario.val_per_domain=8", "model.width=32", "model.depth=1", "model.heads=2", "model.context=48",
                "model.tokenizer.max_vocab=512", "runner.steps=8", "runner.eval_every=4", "runner.batch_size=8",
                "runner.target_batch_size=4", "runner.device=cpu", "runner.threads=1", "progress=false", "scale=debug"]


def _weights(rec) -> np.ndarray:
    return np.load(Path(rec["run_dir"]) / "selection.npz")["pool_weights"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_its_defaults_holds_on_every_scenario_family(tmp_path, method, family):
    """No divergence, finite metrics, and no degenerate weights (all ~0, or a [0, 1] weighting
    saturated at 0 or 1 everywhere, as a prior that is too stiff for the pool size produces)."""
    modality = "language" if "runner=language" in FAMILIES[family] else "vision"
    cls = registered()[method].cls
    if getattr(cls, "needs_input_file", False):
        pytest.skip(f"{method} has no defaults to run: it trains on a given file (tests/test_own_selection.py)")
    if modality not in cls.modalities:
        pytest.skip(f"{method} is written for {', '.join(cls.modalities)} only")
    if getattr(cls, "needs_instruction_pairs", False) and family == "text_mixture":
        with pytest.raises(ConfigError, match="needs instruction/response pairs"):
            run_job(compose_cfg(FAMILIES[family] + [f"method={method}"], tmp_path))
        return  # refused before launch; its defaults run in tests/test_selection_baselines.py
    rec = run_job(compose_cfg(FAMILIES[family] + [f"method={method}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert all(math.isfinite(v) for k, v in rec["metrics"].items() if isinstance(v, float) and "loss" in k)
    w = _weights(rec)
    assert len(w) == rec["scenario_info"]["n_pool"]
    if rec["kind"] == "reweighter":
        assert w.max() > 1e-6, "every pool weight driven to zero"
        if w.max() <= 1.0:
            assert not np.all((w < 1e-3) | (w > 1 - 1e-3)), f"weights saturated: mean {w.mean():.3g}"


@pytest.mark.parametrize("method", METHODS)
def test_under_match_examples_every_method_trains_on_the_same_examples_per_step(tmp_path, method):
    cls = registered()[method].cls
    if getattr(cls, "needs_input_file", False):
        pytest.skip(f"{method} trains on a given file: tests/test_own_selection.py checks its examples per step")
    base, batch = (TINY, 64) if "vision" in cls.modalities else (FAMILIES["text_mixture"], 8)  # runner.batch_size
    if getattr(cls, "needs_instruction_pairs", False):
        base = INSTRUCTIONS
    rec = run_job(compose_cfg(base + [f"method={method}", "runner.match_examples=true"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    c = rec["compute"]
    assert c["match_examples"] is True
    assert c["train_examples_per_step"] == batch
    assert c["train_examples"] == batch * rec["steps"]


def test_without_match_examples_a_method_that_trains_on_the_target_batch_spends_more(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=bads", "runner.match_examples=false"], tmp_path))
    assert rec["compute"]["train_examples_per_step"] == 64 + 32  # pool batch + target batch, shown
    assert matched_batches(64, 32, True, True) == (43, 21) and sum(matched_batches(120, 120, True, True)) == 120


def test_budget_use_is_declared_and_the_effective_fraction_recorded(tmp_path):
    declared = {n: e.cls.budget_use for n, e in registered().items()}
    assert declared["erm"] == declared["l2rw"] == declared["mwnet"] == "none"
    assert declared["random"] == declared["blo"] == "hard" and declared["bads"] == "soft"
    rec = run_job(compose_cfg(TINY + ["method=random", "budget.fraction=0.3"], tmp_path))
    assert rec["budget_use"] == "hard" and rec["selection"]["effective_budget"] == pytest.approx(0.3, abs=2e-3)
    rec = run_job(compose_cfg(TINY + ["method=bads", "budget.fraction=0.3"], tmp_path))
    assert rec["budget_use"] == "soft"
    assert rec["selection"]["effective_budget"] == pytest.approx(float(_weights(rec).mean()))


def test_the_objective_is_a_validation_metric_and_the_record_says_so(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=erm"], tmp_path))
    assert rec["objective"]["split"] == "val" and rec["objective"]["metric"] == "val_accuracy"
    assert rec["objective"]["value"] == rec["metrics"]["val_accuracy"]
    assert rec["scenario_info"]["n_val"] > 0
    with pytest.raises(ConfigError, match="objective='test_accuracy' must be a validation metric"):
        validate_overrides(["objective=test_accuracy", "dataset=digits"])


def test_step_stats_reach_the_curve_and_warnings_reach_the_record(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=l2rw"], tmp_path))
    point = rec["curve"][-1]
    assert "train_zero_batch" in point and "train_weight_nonzero" in point and 0 <= point["train_zero_batch"] <= 1
    assert isinstance(rec["warnings"], list)


def test_device_and_threads_are_part_of_the_run_and_a_cross_device_resume_is_refused(tmp_path):
    from selbench.runners.run import checkpoint as ckpt
    from selbench.runners.run.record import run_key

    base = TINY + ["method=random"]
    assert run_key(compose_cfg(base + ["runner.threads=1"])) != run_key(compose_cfg(base + ["runner.threads=2"]))
    cfg = compose_cfg(base + ["runner.checkpoint_every=30", "runner.keep_checkpoint=true"], tmp_path)
    rec = run_job(cfg)
    assert rec["runtime"]["device"] == "cpu" and rec["runtime"]["threads"] >= 1
    path = Path(rec["run_dir"]) / ckpt.CHECKPOINT
    state = ckpt.load(path)
    state["device"] = "cuda:0"
    ckpt.save(path, state)
    (Path(rec["run_dir"]) / "record.json").unlink()
    with pytest.raises(DataError, match="written on cuda:0 but this run is on cpu"):
        run_job(cfg)


def test_a_bad_method_value_exits_2_with_one_line_before_anything_runs(tmp_path):
    out = selbench("method=bads", "method.prior_norm=nope", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "prior_norm" in lines[0] and "nope" in lines[0], out.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("record.json"))


def test_a_bad_scenario_value_in_a_multirun_fails_once_before_launch(tmp_path):
    out = selbench("-m", "method=erm,random", "seed=0,1,2", "dataset=digits", "scenario.target_per_class=1000",
                   cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "target_per_class=1000" in lines[0], out.stderr
    assert not list(tmp_path.rglob("record.json"))


def _preset_runs() -> list:
    """Every experiment preset with erm and with each method it ships settings for.  Distillers
    (synthesizers) take minutes even at debug scale on 2 cores, and a text preset's selectors a
    minute each (proxy warm-up, per-example LM gradients), so those preset runs are in the slow
    suite; every preset still runs in the default suite with erm."""
    out = []
    for p in sorted((CONF / "experiment").rglob("*.yaml")):
        exp = str(p.relative_to(CONF / "experiment").with_suffix(""))
        if exp.startswith("tune/"):
            continue
        methods = {"erm"} | {m.stem for m in (CONF / "method_preset" / exp).glob("*.yaml")}
        if root_dataset(p):  # its data exists only under dataset.root: tests/test_dataset_roots.py runs it on a tiny root
            continue
        text = "/runner: language" in p.read_text()
        for m in sorted(methods):
            entry = registered().get(m)
            slow = entry is not None and (entry.cls.kind == "synthesizer" or (text and m != "erm"))
            out.append(pytest.param(exp, m, marks=[pytest.mark.slow] if slow else []))
    return out


@pytest.mark.parametrize("experiment,method", _preset_runs())
def test_every_experiment_preset_runs_at_debug_scale(tmp_path, experiment, method):
    """Like lightning-hydra-template's ``experiment=glob(*)`` smoke run: each preset, with its
    methods' preset settings, runs for real at ``scale=debug`` (presets whose data needs
    ``dataset.root`` run on a tiny root in the dataset's own format: tests/test_dataset_roots.py)."""
    cfg = compose_cfg([f"experiment={experiment}", f"method={method}", "scale=debug", "runner.device=cpu",
                       "progress=false"], tmp_path)
    rec = run_job(cfg)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["experiment"] == cfg.experiment_name and rec["steps"] == cfg.scale.max_steps
