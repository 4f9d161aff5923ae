"""The training loop's stats channel: no host read per step, divergence reported at its step."""
from __future__ import annotations

import contextlib

import pytest
import torch

from selbench.core.errors import ConfigError, DivergedError
from selbench.runners.run.loop import autocast_for, run_steps


class _Cost:
    def phase(self, name):
        return contextlib.nullcontext()


def _run(step_fn, steps=40, every=10, **kw):
    evals = []
    run_steps(steps, every, step_fn, lambda s, d: evals.append((s, d)), _Cost(), False, "t", **kw)
    return evals


def test_tensor_stats_are_read_once_per_eval_point_not_per_step(host_reads):
    reads_at_eval = []

    def step_fn(step):
        return {"loss": torch.tensor(float(step)), "n_kept": torch.tensor(2.0), "flag": 1}

    evals = []
    run_steps(40, 10, step_fn, lambda s, d: (evals.append((s, d)), reads_at_eval.append(len(host_reads))),
              _Cost(), False, "t")
    assert [s for s, _ in evals] == [10, 20, 30, 40]
    assert reads_at_eval == [1, 2, 3, 4]  # one transfer per window, whatever its length
    assert evals[0][1] == {"train_loss": 5.5, "train_n_kept": 2.0, "train_flag": 1.0}
    assert evals[3][1]["train_loss"] == 35.5


@pytest.mark.parametrize("bad_step", [3, 10, 17])
def test_a_nan_loss_is_reported_at_the_step_it_appeared_even_mid_window(bad_step):
    def step_fn(step):
        return {"loss": torch.tensor(float("nan") if step >= bad_step else 1.0)}

    with pytest.raises(DivergedError) as e:
        _run(step_fn)
    assert e.value.step == bad_step


def test_a_method_that_crashes_on_diverged_values_is_reported_as_the_divergence():
    def step_fn(step):
        if step == 6:
            raise RuntimeError("invalid multinomial distribution (nan)")
        return {"loss": torch.tensor(float("inf") if step >= 4 else 1.0)}

    with pytest.raises(DivergedError) as e:
        _run(step_fn)
    assert e.value.step == 4


def test_an_ordinary_exception_still_propagates():
    def step_fn(step):
        raise MemoryError("no")

    with pytest.raises(MemoryError):
        _run(step_fn)


def test_float_losses_are_checked_at_once():
    with pytest.raises(DivergedError) as e:
        _run(lambda s: {"loss": float("nan") if s == 2 else 0.5})
    assert e.value.step == 2


def test_bf16_runs_the_steps_under_autocast_and_an_unknown_precision_is_refused():
    seen = []

    def step_fn(step):
        a = torch.ones(2, 2)
        seen.append((a @ a).dtype)
        return {"loss": torch.tensor(1.0)}

    _run(step_fn, steps=2, every=2, precision="bf16")
    assert seen == [torch.bfloat16, torch.bfloat16]
    _run(step_fn, steps=1, every=1)
    assert seen[-1] == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        autocast_for("fp8", "cpu")
