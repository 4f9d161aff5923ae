"""The GPU path inside the methods: a reweighter's step reads nothing to the host (the loop sums
the step's stats on the device and reads them once per eval window: tests/test_loop_sync.py).
Counted on CPU with ``host_reads`` (tests/conftest.py): every ``float`` / ``int`` / ``item`` /
``tolist`` / ``bool`` of a tensor, which on a GPU is a synchronisation.  Methods are built as a run
builds them (``bench.common.build``, the bench's tiny size), warmed up, then stepped."""
from __future__ import annotations

import pytest
import torch

from bench.common import SIZES, build, overrides
from selbench.methods.bads.prior import PriorGain
from selbench.methods.registry import registered
from selbench.runners.tasks.language import masked_mean_nll
from test_language import TINY_LM

WARMUP, STEPS = 3, 5
#: reads of host-side tensors, no device synchronisation: torch.optim's Adam keeps its step count
#: on the host (not ``capturable``) and reads it every step (blo's and mwnet's weight optimisers)
HOST_SIDE = ("/torch/optim/",)
#: steps that still read to the host (file:line of each read, and why)
STILL_SYNCS: dict[str, str] = {}
#: the language runner at a seconds-long size
TEXT = [o for o in TINY_LM if not o.startswith(("runner.steps=", "runner.eval_every="))] + ["logger=none",
                                                                                          "runner.steps=20"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _reweighters() -> list[str]:
    return sorted(n for n, e in registered().items() if e.cls.kind == "reweighter" and "vision" in e.cls.modalities)


def _device_reads(reads) -> list:
    return [r for r in reads if not any(s in r.where for s in HOST_SIDE)]


def _steps(built, host_reads) -> list:
    """The device reads of STEPS steps after WARMUP (the first step may measure: BADS's σ auto)."""
    for s in range(1, WARMUP + 1):
        built.step_fn(s)
    host_reads.clear()
    for s in range(WARMUP + 1, WARMUP + STEPS + 1):
        built.step_fn(s)
    return _device_reads(host_reads)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=STILL_SYNCS[n]))
                                  if n in STILL_SYNCS else n for n in _reweighters()])
def test_a_reweighter_step_reads_nothing_to_the_host(name, tmp_path, host_reads):
    built = build(overrides(SIZES["tiny"], name, "cpu", steps=20), str(tmp_path))
    reads = _steps(built, host_reads)
    assert reads == [], f"{len(reads) / STEPS:g} host reads per step: {sorted(set(reads))}"


def test_bads_on_text_reads_nothing_and_embeds_the_pool_batch_in_its_loss_forward(tmp_path, host_reads):
    built = build(TEXT + ["method=bads"], str(tmp_path))
    ctx, ad = built.ctx, built.ctx.adapter
    f0 = built.cost.forward
    reads = _steps(built, host_reads)
    # the one read left is the language adapter's trim (``int`` of the batch's last useful position,
    # a Python slice bound), one per loss forward, on a host batch only (on an accelerator the batch
    # is not trimmed: test_the_text_trim_is_host_only): a task read, not BADS's
    trim = [r for r in reads if r.name == "__int__" and "runners/tasks/language.py" in r.where]
    assert [r for r in reads if r not in trim] == [] and len(trim) == STEPS, sorted(set(reads))
    # one forward of pool + target batch a step: the weight net's embedding comes from it
    assert (built.cost.forward - f0) / (WARMUP + STEPS) == ctx.batch_size + ctx.target_batch_size
    x, y = ctx.pool.x[:6], ctx.pool.y[:6]
    with ad.capture_embedding() as cap:
        losses = ad.per_example_loss(x, y)
    torch.testing.assert_close(cap.value, ad.embed(x))  # embed's value (eval mode) from the train-mode forward
    torch.testing.assert_close(losses, ad.per_example_loss(x, y))
    ad.model.drop.p = 0.1  # an active dropout: the train-mode state is not embed's, so nothing is captured
    with ad.capture_embedding() as cap:
        ad.per_example_loss(x, y)
    assert cap.value is None


def test_a_gain_crossing_after_step_one_is_reported_with_its_step_at_the_next_read():
    g = PriorGain(sigma=1.0, margin=10.0, limit=0.1, s_avg=1, device=torch.device("cpu"))
    warnings: list[str] = []
    for step, v in enumerate([0.01, 0.02, 0.5, 0.01], 1):
        g.update(torch.tensor(v, dtype=torch.float64), step)
        if step == 1:
            g.warn_if_over(warnings.append, 100, 10)
    assert warnings == []
    g.warn_if_over(warnings.append, 100, 10)  # an evaluation point: BADS.pool_weights
    g.warn_if_over(warnings.append, 100, 10)
    assert len(warnings) == 1 and "loop gain 0.5 > 0.1 at step 3" in warnings[0], warnings


def test_the_text_trim_is_host_only(tmp_path, host_reads):
    """On an accelerator the language adapter does not trim the padded batch (that would read its
    length to the host every forward); trimming is exact, so the losses are the same either way."""
    built = build(TEXT + ["method=erm"], str(tmp_path))
    ad, x, y = built.ctx.adapter, built.ctx.pool.x[:6], built.ctx.pool.y[:6]
    host_reads.clear()
    trimmed = ad.per_example_loss(x, y)
    assert any(r.name == "__int__" for r in host_reads)
    meta_x = torch.empty(x.shape, dtype=x.dtype, device="meta")
    assert ad._trim(meta_x, meta_x)[0] is meta_x  # not a host tensor: left as it is, no read
    xt, yt = ad._trim(x, y)
    assert xt.shape[1] <= x.shape[1]
    full = masked_mean_nll(ad.forward(x), ad.to_device(y))
    torch.testing.assert_close(trimmed, full)
