"""LESS as its authors run it (princeton-nlp/LESS): the max over target tasks of the mean within a
task, Adam-preconditioned pool gradients, checkpoints weighted by their mean learning rate.
The references here are written independently (torch's own Adam for the moments, the
authors' reshape for the task aggregation)."""
import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_cfg
from selbench.core.cost import CostTracker
from selbench.methods.gradients import less as L
from selbench.methods.registry import get_method


def test_task_aggregation_is_the_authors_mean_within_then_max_over_tasks():
    torch.manual_seed(0)
    S = torch.randn(50, 12, dtype=torch.float64)
    tasks = torch.arange(3).repeat_interleave(4)          # the authors' layout: tasks in order, equal sizes
    ref = S.reshape(50, 3, -1).mean(-1).max(-1)[0]          # matching.py
    assert torch.allclose(L.task_scores(S, tasks, L.Aggregate.max), ref)
    perm = torch.randperm(12)                               # any order of the targets gives the same
    assert torch.allclose(L.task_scores(S[:, perm], tasks[perm], L.Aggregate.max), ref)
    assert torch.allclose(L.task_scores(S, tasks, L.Aggregate.mean), S.mean(1))


def test_less_takes_the_max_over_tasks_not_the_mean(tmp_path):
    """One pool example matches one target task perfectly and the others not at all; another matches
    every task moderately.  The max over tasks ranks the specialist first, a mean the generalist."""
    S = torch.tensor([[1.0, 1.0, -0.6, -0.6, -0.6, -0.6],   # specialist: task 0
                      [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    tasks = torch.tensor([0, 0, 1, 1, 2, 2])
    assert L.task_scores(S, tasks, L.Aggregate.max).argmax() == 0
    assert L.task_scores(S, tasks, L.Aggregate.mean).argmax() == 1


def test_adam_preconditioning_is_the_next_adam_moments_ratio():
    """``m'/√(v'+ε)`` with m', v' the moments torch's Adam would hold after one more step with g."""
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(7))
    opt = torch.optim.Adam([p], betas=(0.9, 0.99), eps=1e-6)
    for _ in range(3):
        p.grad = torch.randn(7)
        opt.step()
    m, v, betas, eps = L.moments_of(opt, {"p": p})
    g = torch.randn(7)
    got = L.adam_precondition(g[None], m, v, betas, eps)[0]
    p.grad = g.clone()
    opt.step()
    st = opt.state[p]
    assert torch.allclose(got, st["exp_avg"] / torch.sqrt(st["exp_avg_sq"] + eps), atol=1e-6)
    assert L.moments_of(torch.optim.SGD([p], lr=0.1), {"p": p}) is None


def test_checkpoint_weights_are_the_segments_mean_learning_rate():
    f = L.lr_factors(100, 0.03)
    assert f[:4] == pytest.approx([0, 1 / 3, 2 / 3, 1.0]) and f[-1] == pytest.approx(1 / 97)
    means = [sum(f[a:a + 25]) / 25 for a in (0, 25, 50, 75)]
    assert means == sorted(means, reverse=True)  # later checkpoints weigh less (linear decay)


def _ctx(tmp_path, overrides=()):
    from selbench.runners.run.context import make_context
    from selbench.runners.tasks import vision

    cfg = compose_cfg(TINY + ["method=less", "method.proxy_steps=8", "method.proj_dim=64", *overrides], tmp_path)
    torch.manual_seed(0)
    cost = CostTracker()
    scen = vision.build_scenario(cfg, 0)
    ad = vision.build_adapter(cfg, scen, cost, torch.device("cpu"))
    ctx = make_context(cfg, scen, ad, cost, method_cls=get_method("less").cls, steps=10)
    return ctx, get_method("less").cls(OmegaConf.to_object(cfg.method))


def test_less_selects_the_top_k_of_the_lr_weighted_max_over_tasks(tmp_path):
    """End to end on digits with three target 'tasks': the selection is the top-k of an independent
    recomputation from the checkpoints' features, and it is not the mean-over-targets top-k."""
    ctx, m = _ctx(tmp_path, ["method.preconditioner=sgd"])
    ctx.target.domain = ctx.target.y % 3
    feats = L.checkpoint_features(ctx, m.cfg)
    f = L.lr_factors(8, 0.03)   # 8 warm-up steps in 4 segments: the weights are the segments' mean lr
    seg = torch.tensor([sum(f[a:a + 2]) / 2 for a in (0, 2, 4, 6)], dtype=torch.float64)
    w = torch.tensor(feats["weights"], dtype=torch.float64)
    assert len(feats["pool"]) == 4 and torch.allclose(w / w.sum(), seg / seg.sum())
    w = w / w.sum()
    S = sum(wc * P.double() @ T.double().T for wc, P, T in zip(w, feats["pool"], feats["target"]))
    per_task = torch.stack([S[:, ctx.target.domain == t].mean(1) for t in range(3)], 1)
    want = set(per_task.max(1).values.topk(ctx.k_budget).indices.tolist())
    sel = m.select(ctx)
    assert set(sel.pool_indices.tolist()) == want
    assert want != set(S.mean(1).topk(ctx.k_budget).indices.tolist())
    assert sel.info["checkpoint_weights"] == pytest.approx(w.tolist())
