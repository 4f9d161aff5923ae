"""The method protocol: registry rules, a method added from outside, the cheap baselines."""
from dataclasses import dataclass

import pytest
import torch

from conftest import TINY, compose_cfg, selbench
from selbench.methods.base import MethodConfig, Reweighter, Selection, Selector, weighted_step
from selbench.methods.registry import get_method, register_method, unregister_method
from selbench.core.errors import ConfigError
from selbench.runners.run.job import run_job


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_method("erm")(type("X", (Selector,), {}))


def test_unknown_method_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown method 'nope' \(choose from: .*erm"):
        get_method("nope")


@dataclass
class KeepFirstConfig(MethodConfig):
    keep: int = 50


def test_a_method_registered_in_a_test_file_runs_without_runner_edits(tmp_path):
    @register_method("keep_first_tmp", config=KeepFirstConfig)
    class KeepFirst(Selector):
        def select(self, ctx):
            assert not hasattr(ctx, "truth") and not hasattr(ctx, "test")  # methods never see ground truth
            return Selection(torch.arange(self.cfg.keep))

    try:
        cfg = compose_cfg(TINY + ["method=keep_first_tmp", "method.keep=40"], tmp_path)
        assert isinstance(cfg.method.keep, int)
        rec = run_job(cfg)
        assert rec["status"] == "ok", rec.get("reason")
        assert rec["selection"]["n_selected"] == 40 and rec["selection"]["target_repeats"] == 0
        assert rec["method"] == "keep_first_tmp"
    finally:
        unregister_method("keep_first_tmp")


def test_typed_method_config_rejects_wrong_type(tmp_path):
    @register_method("typed_tmp", config=KeepFirstConfig)
    class Typed(Selector):
        pass

    try:
        with pytest.raises(Exception, match="keep"):
            compose_cfg(TINY + ["method=typed_tmp", "method.keep=abc"], tmp_path)
    finally:
        unregister_method("typed_tmp")


def test_a_bad_enum_choice_exits_2_with_one_line_before_launch(tmp_path):
    """A method's typed choice (a str-mixin Enum field) is checked when the command line is composed."""
    res = selbench("method=blo", "method.selection=nope", f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("selbench: error:") and "method.selection=nope" in lines[0], lines
    assert not (tmp_path / "results").exists() and not (tmp_path / "outputs").exists()  # nothing launched


def test_a_throwaway_reweighter_runs_and_its_weights_are_scored(tmp_path):
    @register_method("oracle_tmp")
    class LowLossUp(Reweighter):
        """Weights = 1 for pool examples whose loss under the current model is below the batch median."""

        def setup(self, ctx, optimizer):
            super().setup(ctx, optimizer)
            self.w = torch.ones(ctx.n_pool)

        def step(self, ctx, step, pool_idx, target_idx):
            with torch.no_grad():
                l = ctx.adapter.per_example_loss(ctx.pool.x[pool_idx], ctx.pool.y[pool_idx])
            self.w[pool_idx] = (l <= l.median()).float()
            x = torch.cat([ctx.pool.x[pool_idx], ctx.target.x[target_idx]])
            y = torch.cat([ctx.pool.y[pool_idx], ctx.target.y[target_idx]])
            w = torch.cat([self.w[pool_idx], torch.ones(len(target_idx))])
            return {"loss": float(weighted_step(ctx, self.optimizer, x, y, w))}

        def pool_weights(self, ctx):
            return self.w.clone()

    try:
        rec = run_job(compose_cfg(TINY + ["method=oracle_tmp"], tmp_path))
        assert rec["status"] == "ok", rec.get("reason")
        assert rec["kind"] == "reweighter"
        assert "sel_auc_clean_vs_corrupted" in rec["curve"][-1]
        assert rec["selection"]["quality"]["auc_clean_vs_corrupted"] is not None
    finally:
        unregister_method("oracle_tmp")


@pytest.mark.parametrize("method,expect", [
    ("erm", lambda n, t: (n, 1, n + t)),
    ("pool_only", lambda n, t: (n, 0, n)),
    ("target_only", lambda n, t: (0, 1, t)),
    ("random", lambda n, t: (int(0.2 * n), 1, int(0.2 * n) + t)),
    ("duplicate_target", lambda n, t: (n, round(n / t), n + round(n / t) * t)),
])
def test_cheap_baselines_build_the_training_sets_of_the_paper(tmp_path, method, expect):
    rec = run_job(compose_cfg(TINY + [f"method={method}", "budget=b020"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    n, t = rec["scenario_info"]["n_pool"], rec["scenario_info"]["n_target"]
    sel = rec["selection"]
    assert (sel["n_selected"], sel["target_repeats"], sel["n_train"]) == expect(n, t)
    assert rec["cost"]["backward_examples"] == rec["steps"] * 64
