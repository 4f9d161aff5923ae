"""Trajectory matching (methods/distill/mtt.py): the unrolled matching loss has the gradient
finite differences give and equals the authors' flat-vector form, the student batches follow the
authors' order, optimising the images on a fixed trajectory segment lowers it, and
`mtt` / `autopalette base=mtt` run end to end and refuse impossible schedules before launch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, compose_cfg
from selbench.core.errors import ConfigError
from selbench.methods.common.feature_net import make_embedder
from selbench.methods.distill.mtt import matching_loss, student_batches
from selbench.runners.run.job import run_job
from selbench.runners.run.validate import validate_overrides

FAST = TINY + ["runner.threads=1", "runner.steps=20", "runner.eval_every=10", "runner.checkpoint_every=0"]
SMALL_MTT = ["method.mtt.n_experts=1", "method.mtt.expert_epochs_total=3", "method.mtt.max_start_epoch=1",
             "method.mtt.syn_steps=3", "method.mtt.width=8", "method.iterations=4"]


def _segment(dtype=torch.float32):
    """A real two-epoch expert segment of a tiny ConvNet on random 2-class 6×6 images."""
    g = torch.Generator().manual_seed(0)
    net = make_embedder((1, 6, 6), 4, 2, g, torch.device("cpu"), 2).to(dtype)
    x, y = torch.randn(32, 1, 6, 6, generator=g, dtype=dtype), torch.arange(32) % 2
    x[y == 1] += 0.7
    start = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        for i in range(0, 32, 8):
            opt.zero_grad()
            F.cross_entropy(net.head(net(x[i:i + 8])), y[i:i + 8]).backward()
            opt.step()
    return net, x, y, start, [p.detach().clone() for p in net.parameters()]


def test_the_unrolled_matching_loss_has_the_finite_difference_gradient():
    net, x, y, start, target = _segment(torch.float64)
    syn = x[[0, 1, 2, 3]].clone().requires_grad_(True)
    sy = y[[0, 1, 2, 3]]
    batches = [torch.tensor([0, 1, 2, 3]), torch.tensor([1, 3])]
    lr = torch.tensor(0.05, dtype=torch.float64)
    (g,) = torch.autograd.grad(matching_loss(net, syn, sy, start, target, lr, batches), syn)
    direction = torch.randn(syn.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-5
    up = matching_loss(net, (syn + eps * direction).detach(), sy, start, target, lr, batches)
    down = matching_loss(net, (syn - eps * direction).detach(), sy, start, target, lr, batches)
    fd = float((up - down).detach() / (2 * eps))
    assert fd == pytest.approx(float((g * direction).sum()), rel=1e-5, abs=1e-9)


def test_optimising_the_images_lowers_the_matching_loss_on_a_fixed_segment():
    net, x, y, start, target = _segment()
    syn = x[:4].clone().requires_grad_(True)
    sy = y[:4]
    batches = [torch.arange(4)] * 4
    lr = torch.tensor(0.1)
    opt = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
    losses = []
    for _ in range(30):
        loss = matching_loss(net, syn, sy, start, target, lr, batches)
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert min(losses[-5:]) < 0.9 * losses[0], losses


def test_mtt_and_autopalette_on_the_mtt_base_run_and_record_their_base(tmp_path):
    rec = run_job(compose_cfg(FAST + ["method=mtt", "method.ipc=2"] + SMALL_MTT, tmp_path / "mtt"))
    assert rec["status"] == "ok", rec.get("reason")
    sel = rec["selection"]
    assert sel["n_train"] == 2 * 10 and sel["bytes"]["within_budget"] and sel["syn_lr"] > 0
    rec = run_job(compose_cfg(FAST + ["method=autopalette", "method.base=mtt", "method.colours=4",
                                      "method.init_embed_steps=5"] + SMALL_MTT, tmp_path / "ap"))
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["selection"]["base"] == "mtt" and rec["selection"]["colours_used_mean"] <= 4


def test_a_trajectory_segment_past_the_saved_epochs_is_refused_before_launch():
    with pytest.raises(ConfigError, match="method.mtt.max_start_epoch"):
        validate_overrides(TINY + ["method=mtt", "method.mtt.expert_epochs_total=3", "method.mtt.max_start_epoch=3"])


def test_student_batches_are_epochs_over_the_synthetic_set_last_chunk_first():
    """The authors' order: a permutation split into chunks of batch_syn, popped from the end; a new
    permutation only when the chunks run out (so every image is used once per epoch)."""
    g = torch.Generator().manual_seed(0)
    got = student_batches(10, 4, 5, g)
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.randperm(10, generator=g), torch.randperm(10, generator=g)
    want = [p1[8:], p1[4:8], p1[:4], p2[8:], p2[4:8]]
    assert [b.tolist() for b in got] == [w.tolist() for w in want]
    assert sorted(torch.cat(got[:3]).tolist()) == list(range(10))


def test_the_matching_loss_is_the_authors_flat_vector_ratio():
    """Independent reference: one flat parameter vector, N plain SGD steps written out with autograd
    on a hand-written forward, ``mse_sum(θ̂, θ*) / P`` over ``mse_sum(θ_s, θ*) / P`` (P = parameter count)."""
    net, x, y, start, target = _segment(torch.float64)
    syn, sy = x[:6].clone(), y[:6]
    batches = [torch.tensor([5, 4]), torch.tensor([3, 2]), torch.tensor([1, 0])]
    lr = torch.tensor(0.05, dtype=torch.float64)
    shapes = [p.shape for p in start]
    flat = torch.cat([p.reshape(-1) for p in start]).requires_grad_(True)

    def unflat(v):
        out, i = [], 0
        for s_ in shapes:
            n = int(torch.tensor(s_).prod())
            out.append(v[i:i + n].view(s_))
            i += n
        return out

    def forward(params, xb):
        h = xb
        for layer in range(2):  # conv–instance norm–relu–avgpool, as ConvNetEmbed
            w, b, gw, gb = params[4 * layer:4 * layer + 4]
            h = F.conv2d(h, w, b, padding=1)
            h = F.group_norm(h, h.shape[1], gw, gb)
            h = F.avg_pool2d(F.relu(h), 2)
        return F.linear(h.flatten(1), params[-2], params[-1])

    theta = flat
    for b in batches:
        loss = F.cross_entropy(forward(unflat(theta), syn[b]), sy[b])
        theta = theta - lr * torch.autograd.grad(loss, theta, create_graph=True)[0]
    tgt = torch.cat([p.reshape(-1) for p in target])
    p = flat.numel()
    want = (F.mse_loss(theta, tgt, reduction="sum") / p) / (F.mse_loss(flat.detach(), tgt, reduction="sum") / p)
    got = matching_loss(net, syn, sy, start, target, lr, batches)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-10)
