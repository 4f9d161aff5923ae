"""The shared optimiser's gradient-norm clip (``runner.optimizer.clip_grad_norm``, ``loop.GradClip``):
it bounds a runaway step, leaves every step under the bound bit-identical, and each record says how
often it acted."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_cfg
from selbench.runners.run.job import run_job
from selbench.runners.run.loop import clip_summary, make_optimizer


def _model_and_loss(scale: float):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(8, 5) * scale, torch.randint(0, 3, (8,))
    return model, lambda: torch.nn.functional.cross_entropy(model(x), y)


def _step(model, loss_fn, clip):
    opt = make_optimizer(model.parameters(), OmegaConf.create({"name": "sgd", "lr": 0.1, "clip_grad_norm": clip}))
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    loss_fn().backward()
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    opt.step()
    delta = torch.linalg.vector_norm(torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]))
    return opt, float(norm), float(delta)


def test_a_step_over_the_bound_moves_the_weights_by_lr_times_the_bound():
    model, loss = _model_and_loss(scale=100.0)  # large inputs: a gradient far over the bound
    opt, norm, delta = _step(model, loss, clip=1.0)
    assert norm > 10
    assert delta == pytest.approx(0.1 * 1.0, rel=1e-5)  # plain SGD: ‖Δθ‖ = lr · clip
    s = clip_summary(opt)
    assert s["steps"] == 1 and s["clipped_steps"] == 1 and s["largest_grad_norm"] == pytest.approx(norm, rel=1e-5)


def test_a_step_under_the_bound_is_bit_identical_to_no_clip():
    m1, l1 = _model_and_loss(scale=1.0)
    opt, norm, _ = _step(m1, l1, clip=1e6)
    m2, l2 = _model_and_loss(scale=1.0)
    _step(m2, l2, clip=None)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    assert clip_summary(opt)["clipped_steps"] == 0 and clip_summary(opt)["largest_grad_norm"] == pytest.approx(norm)


@pytest.mark.parametrize("clip, acted", [(1e-4, True), (None, False)])
def test_the_record_says_how_often_the_clip_acted(tmp_path, one_thread, clip, acted):
    over = "null" if clip is None else clip
    rec = run_job(compose_cfg(TINY + ["method=erm", "runner.steps=12", "runner.eval_every=6",
                                      f"runner.optimizer.clip_grad_norm={over}"], tmp_path))
    assert rec["status"] == "ok"
    if acted:  # a bound below every real gradient: every one of the run's steps was clipped
        assert rec["optim"]["steps"] == 12 and rec["optim"]["clipped_fraction"] == 1.0
        assert rec["optim"]["largest_grad_norm"] > 1e-4
    else:
        assert rec["optim"] == {"clip_grad_norm": None}
