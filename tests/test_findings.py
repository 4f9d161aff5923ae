"""Findings: where a method on its defaults ends below ``target_only`` or collapses to one
class on a shipped scenario family.  Each is measured at ``scale=small`` over 3 seeds, stated
with its mechanism in docs/findings.md, and kept here as a *strict* xfail: the day a change
makes the method hold, the test turns red and the finding must be revisited."""
from __future__ import annotations

import statistics

import pytest

from conftest import compose_cfg, needs_fashion
from selbench.runners.run.job import run_job

#: binary Fashion-MNIST (coat vs ankle boot), a 1:200 minority (25 coats among 5,000) and 20% label noise
BINARY_RARE_NOISY = ["dataset=fashion_mnist", "scenario=imbalance", "scenario.classes=[4,9]",
                     "scenario.imbalance.minority=[4]", "scenario.imbalance.minority_fraction=0.005",
                     "scenario.pool_size=5000", "scenario.noise={kind:symmetric,rate:0.2}", "scale=small",
                     "runner.threads=1", "progress=false", "runner.device=cpu"]


def _balanced(tmp_path, method: str) -> list[float]:
    return [run_job(compose_cfg(BINARY_RARE_NOISY + [f"method={method}", f"seed={s}"], tmp_path))
            ["metrics"]["test_balanced_accuracy"] for s in range(3)]


@needs_fashion
@pytest.mark.slow
@pytest.mark.parametrize("method", [
    pytest.param("l2rw", marks=pytest.mark.xfail(strict=True, reason=(
        "measured 0.50/0.50/0.50 balanced accuracy vs target_only 0.99: a pool batch of 128 holds ~0.6 minority "
        "examples, and reweighting can only redistribute the batch's mass (docs/findings.md)"))),
    pytest.param("mwnet", marks=pytest.mark.xfail(strict=True, reason=(
        "measured 0.50/0.50/0.50 vs target_only 0.99 (same mechanism as l2rw; docs/findings.md)"))),
])
def test_reweighters_reach_target_only_on_a_rare_noisy_binary_class(tmp_path, method):
    ref = statistics.mean(_balanced(tmp_path, "target_only"))
    got = _balanced(tmp_path, method)
    assert min(got) > 0.5 + 0.05, f"{method} predicted one class in some seed: {got}"
    assert statistics.mean(got) >= ref - 0.05, (got, ref)
