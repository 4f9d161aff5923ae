"""BADS: closed-form gradients of one step, typed knobs and checks before launch, frozen
parameters, the posterior mean, σ auto, behaviour on small real data, the issue's
acceptance checks (slow), and a smoke test of the step-cost benchmark.

Measured numbers behind every threshold: docs/methods/bads.md."""
from __future__ import annotations

import json
import math
from collections import deque

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from conftest import TINY, compose_cfg, needs_fashion
from selbench.core.cost import CostTracker
from selbench.core.data import Split
from selbench.core.errors import ConfigError
from selbench.methods.base import RunContext, StepExamples
from selbench.methods.bads.bads import BADS, BADSConfig, Features, Noise, PriorNorm, Weights
from selbench.runners.models.vision import Classifier
from selbench.runners.run.job import run_job
from selbench.runners.run.validate import check_config
from selbench.runners.tasks.vision import VisionAdapter


# --------------------------------------------------------------------------------------------
# (a) one step against hand-derived expressions (float64)
# --------------------------------------------------------------------------------------------
def _tiny_ctx(n_pool=12, n_target=6, d=5, k=3, seed=0, batch=4, tbatch=3, body=None, embed_dim=None):
    g = torch.Generator().manual_seed(seed)
    pool = Split(torch.randn(n_pool, d, generator=g, dtype=torch.float64), torch.randint(0, k, (n_pool,), generator=g))
    target = Split(torch.randn(n_target, d, generator=g, dtype=torch.float64), torch.randint(0, k, (n_target,), generator=g))
    torch.manual_seed(seed)
    # logits = W x + b; the embedding is x itself unless a body is given
    model = Classifier(body if body is not None else nn.Flatten(), embed_dim or d, k).double()
    cost = CostTracker()
    adapter = VisionAdapter(model, k, cost, torch.device("cpu"))
    warnings: list[str] = []
    ctx = RunContext(pool=pool, target=target, num_classes=k, modality="vision", adapter=adapter, budget=0.3,
                     seed=seed, generator=g, device=torch.device("cpu"), cost=cost, steps=10,
                     examples=StepExamples(batch, tbatch), make_optimizer=None, warn=warnings.append)
    ctx.extra["warnings"] = warnings
    return ctx


def _net_input(features, x, y, k):
    onehot = F.one_hot(y, k).double()
    if features == "embed":
        return x
    if features == "embed_label":
        return torch.cat([x, onehot], 1)
    return torch.cat([(onehot[:, :, None] * x[:, None, :]).flatten(1), onehot], 1)  # embed_x_label


def _closed_form(ctx, m: BADS, pool_idx, target_idx, wbar):
    """Hand-derived gradients of the two normalised potentials of one step."""
    c = m.cfg
    W, b = ctx.model.head.weight.detach(), ctx.model.head.bias.detach()
    N, M, B, Bm = ctx.n_pool, len(ctx.target), len(pool_idx), len(target_idx)

    def parts(x, y):
        p = torch.softmax(x @ W.T + b, 1)
        e = F.one_hot(y, ctx.num_classes).double()
        return p, e, -(p * e).sum(1).log()

    xt, yt = ctx.pool.x[pool_idx], ctx.pool.y[pool_idx]
    xm, ym = ctx.target.x[target_idx], ctx.target.y[target_idx]
    pt, et, lt = parts(xt, yt)
    pm, em, lm = parts(xm, ym)
    if c.weights == "per_sample":
        h, w = None, torch.sigmoid(m.logits.detach()[pool_idx])
    else:
        h = _net_input(c.features, xt, yt, ctx.num_classes)
        w = torch.sigmoid(h @ m.wnet.net.weight.detach()[0] + m.wnet.net.bias.detach()[0])
    z_t = (N + M) if c.theta_norm == "total" else 1.0
    # θ: ∇_z CE = p − e, chain through logits = W x + b
    rt = c.rho_theta_pool * N / B * w[:, None] * (pt - et)
    rm = c.rho_theta_target * M / Bm * (pm - em)
    gW = (rt.T @ xt + rm.T @ xm) / z_t
    gb = (rt.sum(0) + rm.sum(0)) / z_t
    # φ: dP/dw_i for the three prior normalisations, S = Σ_B w + (N − B) w̄
    S = w.sum() + (N - B) * wbar
    sb = S / N
    beta, s2 = m.beta, c.sigma ** 2
    dP = {"fraction": (sb - beta) / (s2 * N), "count": (S - math.floor(N * beta)) / s2,
          "per_example": (N * N / B) * (sb - beta) / (s2 * N)}[c.prior_norm]
    z_w = {"mean": N, "sum": N / B, "none": 1.0}[c.w_norm]
    dw = (c.rho_w_pool * N / B * lt + dP) / z_w
    dlogit = dw * w * (1 - w)
    if h is None:
        g_logits = torch.zeros(N, dtype=torch.float64).index_add_(0, pool_idx, dlogit)
        return {"W": gW, "b": gb, "logits": g_logits}
    return {"W": gW, "b": gb, "a": dlogit @ h, "c": dlogit.sum()}


@pytest.mark.parametrize("weights,prior_norm,w_norm,theta_norm,features", [
    ("net", "fraction", "mean", "total", "embed_x_label"),
    ("net", "fraction", "mean", "total", "embed_label"),
    ("net", "count", "none", "none", "embed"),
    ("per_sample", "per_example", "sum", "total", "embed"),
    ("per_sample", "fraction", "mean", "none", "embed"),
])
def test_one_step_gradients_match_closed_form(weights, prior_norm, w_norm, theta_norm, features):
    ctx = _tiny_ctx()
    cfg = BADSConfig(name="bads", weights=weights, prior_norm=prior_norm, w_norm=w_norm, theta_norm=theta_norm,
                     features=features, sigma=0.3, init_weight=0.4, rho_theta_pool=0.7, rho_theta_target=1.3,
                     rho_w_pool=0.9)
    m = BADS(cfg)
    opt = torch.optim.SGD(ctx.model.parameters(), lr=0.1)
    m.setup(ctx, opt)
    assert isinstance(m.cfg.weights, Weights) and isinstance(m.cfg.prior_norm, PriorNorm)  # strings → enums
    if m.wnet is not None:  # a non-trivial weight net
        with torch.no_grad():
            m.wnet.net.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    else:
        with torch.no_grad():
            m.logits.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    m.w_hist = deque([0.35, 0.5, 0.2], maxlen=cfg.s_avg)  # w̄ = the mean of recent batch means
    pool_idx, target_idx = torch.tensor([7, 1, 4, 10]), torch.tensor([2, 5, 0])
    o = m.objectives(ctx, pool_idx, target_idx)
    theta = [ctx.model.head.weight, ctx.model.head.bias]
    g_theta = torch.autograd.grad(o["loss_theta"], theta, retain_graph=True)
    phi = [m.logits] if m.wnet is None else [m.wnet.net.weight, m.wnet.net.bias]
    g_phi = torch.autograd.grad(o["loss_w"], phi, retain_graph=True)
    # cross terms are cut: θ's potential does not reach φ and φ's does not reach θ
    assert all(g is None for g in torch.autograd.grad(o["loss_theta"], phi, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(o["loss_w"], theta, allow_unused=True))

    want = _closed_form(ctx, m, pool_idx, target_idx, wbar=sum([0.35, 0.5, 0.2]) / 3)
    torch.testing.assert_close(g_theta[0], want["W"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_theta[1], want["b"], rtol=1e-10, atol=1e-12)
    if m.wnet is None:
        torch.testing.assert_close(g_phi[0], want["logits"], rtol=1e-10, atol=1e-12)
    else:
        torch.testing.assert_close(g_phi[0][0], want["a"], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g_phi[1][0], want["c"], rtol=1e-10, atol=1e-12)


def test_sgld_step_is_gradient_step_plus_gaussian_noise():
    """θ ← θ − lr(∇U_θ/Z + wd·θ) + N(0, std²); noise=sgld uses std = √(2·lr·T/Z)."""
    for noise, std in [("none", 0.0), ("fixed", 0.05), ("sgld", None)]:
        ctx = _tiny_ctx(d=40, k=10, n_pool=30, batch=8)
        cfg = BADSConfig(name="bads", weights="per_sample", noise=noise, noise_std=0.05, temperature=2.0,
                         noise_w=False, sigma=0.5)
        m = BADS(cfg)
        opt = torch.optim.SGD(ctx.model.parameters(), lr=0.2, weight_decay=0.01)
        m.setup(ctx, opt)
        before = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}
        pool_idx, target_idx = torch.arange(8), torch.arange(3)
        o = m.objectives(ctx, pool_idx, target_idx)
        grads = torch.autograd.grad(o["loss_theta"], [ctx.model.head.weight, ctx.model.head.bias])
        m.step(ctx, 1, pool_idx, target_idx)
        resid = torch.cat([(ctx.model.head.weight - (before["head.weight"] - 0.2 * (grads[0] + 0.01 * before["head.weight"]))).flatten(),
                           (ctx.model.head.bias - (before["head.bias"] - 0.2 * (grads[1] + 0.01 * before["head.bias"]))).flatten()]).detach()
        if std is None:
            std = math.sqrt(2 * 0.2 * 2.0 / o["z_theta"])
        if std == 0:
            assert resid.abs().max() < 1e-12
        else:
            assert 0.8 < float(resid.std()) / std < 1.2 and abs(float(resid.mean())) < 0.3 * std
        # the running mean w̄ got this batch's mean weight
        assert len(m.w_hist) == 1


def test_running_sum_uses_history_and_exact_sum_uses_all_logits():
    ctx = _tiny_ctx()
    m = BADS(BADSConfig(name="bads", weights="per_sample", sum_estimate="exact", init_weight=0.3))
    m.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))
    o = m.objectives(ctx, torch.arange(4), torch.arange(3))
    assert float(o["s_bar"].detach()) == pytest.approx(0.3)
    m2 = BADS(BADSConfig(name="bads", weights="per_sample", init_weight=0.3))
    m2.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))
    m2.w_hist.extend([0.9, 0.7])
    o2 = m2.objectives(ctx, torch.arange(4), torch.arange(3))
    assert float(o2["s_bar"].detach()) == pytest.approx((4 * 0.3 + 8 * 0.8) / 12)


# --------------------------------------------------------------------------------------------
# (b) typed knobs, checks before launch, σ auto, frozen parameters, posterior mean
# --------------------------------------------------------------------------------------------
def test_string_knobs_are_enums_rejected_at_compose_time_and_written_as_plain_strings(tmp_path, capsys):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    cfg = compose_cfg(TINY + ["method=bads", "method.noise=none", "method.features=embed_label"], tmp_path)
    m = OmegaConf.to_object(cfg.method)
    assert m.noise is Noise.none and m.features is Features.embed_label and m.prior_norm is PriorNorm.fraction
    assert m.noise == "none" and f"{m.features}" == "embed_label"  # str enums compare and format as their value
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_cfg(TINY + ["method=bads", "method.prior_norm=nope"], tmp_path)
    # the CLI turns it into one line and exit status 2, before anything runs
    from selbench.runners.run.cli import main

    assert main(["method=bads", "method.prior_norm=nope", f"results_dir={tmp_path}"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "prior_norm" in err[0], err
    assert not list(tmp_path.rglob("record.json"))
    # the record's config (JSON) holds plain strings
    rec = run_job(compose_cfg(TINY + ["method=bads", "runner.steps=2", "runner.eval_every=2"], tmp_path))
    on_disk = json.loads((tmp_path.glob("**/record.json").__next__()).read_text())
    assert rec["status"] == "ok" and on_disk["config"]["method"]["prior_norm"] == "fraction"
    assert on_disk["config"]["method"]["features"] == "embed_x_label" and on_disk["config"]["method"]["sigma"] is None


@pytest.mark.parametrize("bad,msg", [
    (["method.sum_estimate=exact"], "needs method.weights=per_sample"),
    (["method.init_weight=1.5"], "init_weight=1.5"),
    (["method.sigma=-1"], "sigma=-1"),
    (["method.beta=0"], "beta=0"),
    # SGLD noise is the Langevin noise of a plain SGD step: momentum or Adam is refused, with why
    (["method.noise=sgld"], "plain SGD"),
    (["method.noise=sgld", "runner.optimizer.momentum=0", "runner.optimizer.name=adam"], "name=adam"),
    (["method.theta_lr=0.01", "runner.schedule=cosine"], "theta_lr"),
])
def test_cross_field_checks_fail_before_launch(tmp_path, bad, msg):
    cfg = compose_cfg(TINY + ["method=bads"] + bad, tmp_path)
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")) as e:
        check_config(cfg)
    assert "\n" not in str(e.value)
    ok = compose_cfg(TINY + ["method=bads", "method.noise=sgld", "runner.optimizer.momentum=0"], tmp_path)
    check_config(ok)  # plain SGD: accepted


def test_sgld_with_a_momentum_optimiser_handed_in_directly_is_refused():
    ctx = _tiny_ctx()
    m = BADS(BADSConfig(name="bads", noise="sgld"))
    with pytest.raises(ConfigError, match="plain SGD"):
        m.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ConfigError, match="plain SGD"):
        BADS(BADSConfig(name="bads", noise="sgld")).setup(ctx, torch.optim.AdamW(ctx.model.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="choose from"):
        BADS(BADSConfig(name="bads", prior_norm="nope")).setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))


@pytest.mark.parametrize("noise,all_params", [("fixed", False), ("fixed", True), ("sgld", False)])
def test_frozen_parameters_stay_bit_identical(noise, all_params):
    """One BADS step (and a posterior-mean swap) never touches a parameter with
    requires_grad=False: no optimiser step, no weight decay, no noise."""
    body = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    ctx = _tiny_ctx(body=body, embed_dim=6)
    ctx.steps = 4
    frozen = [ctx.model.body[0].weight, ctx.model.head.bias]
    for p in frozen:
        p.requires_grad_(False)
    params = ctx.model.parameters() if all_params else [p for p in ctx.model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, weight_decay=0.01)
    m = BADS(BADSConfig(name="bads", noise=noise, noise_std=0.1, sigma=0.5, collect_samples=True, burn_in=0.0,
                        thin=1))
    m.setup(ctx, opt)
    before = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}
    for step in range(1, 5):
        m.step(ctx, step, torch.arange(4) + step, torch.arange(3))
    assert m._swapped  # the posterior mean was copied in on the last step
    for k, v in ctx.model.named_parameters():
        if v.requires_grad:
            assert not torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k  # bit-identical


def _manual_run(overrides, tmp_path, snapshot_steps=()):
    """The job's own pieces (scenario, adapter, optimiser over trainable parameters, context,
    samplers), stepped by hand; returns the method, the adapter and snapshots of the
    parameters and pool weights after the given steps."""
    from selbench.core.sampling import CyclicSampler
    from selbench.runners.run.context import make_context
    from selbench.runners.run.loop import make_optimizer
    from selbench.runners.tasks import task_module

    cfg = compose_cfg(overrides, tmp_path)
    check_config(cfg)
    task = task_module(cfg.runner.name)
    torch.manual_seed(0)
    scenario = task.build_scenario(cfg, 0)
    cost = CostTracker()
    adapter = task.build_adapter(cfg, scenario, cost, torch.device("cpu"))
    opt = make_optimizer([p for p in adapter.model.parameters() if p.requires_grad], cfg.runner.optimizer)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=BADS)
    m = BADS(OmegaConf.to_object(cfg.method))
    m.setup(ctx, opt)
    pool_s, tgt_s = CyclicSampler(ctx.n_pool, ctx.generator), CyclicSampler(len(ctx.target), ctx.generator)
    snaps = []
    for step in range(1, ctx.steps + 1):
        m.step(ctx, step, pool_s.next(ctx.batch_size), tgt_s.next(ctx.target_batch_size))
        if step in snapshot_steps:
            snaps.append(({k: v.detach().double().clone() for k, v in adapter.model.named_parameters()},
                          m.pool_weights(ctx).double()))
    return m, adapter, ctx, snaps


def test_posterior_mean_is_the_model_that_is_evaluated_and_the_weights_reported(tmp_path):
    """With collect_samples the model after the last step IS the mean of the thinned samples:
    the same seeded run without collecting gives the iterates, averaged here independently
    (sample steps: step > burn_in·steps and (steps − step) % thin == 0)."""
    base = TINY + ["method=bads", "method.weights=per_sample", "method.burn_in=0.5", "method.thin=5",
                   "method.noise=sgld", "runner.optimizer.momentum=0"]
    sample_steps = (35, 40, 45, 50, 55, 60)
    _, ad_iter, ctx, snaps = _manual_run(base + ["method.collect_samples=false"], tmp_path, sample_steps)
    m, ad_mean, _, _ = _manual_run(base + ["method.collect_samples=true"], tmp_path)
    assert ctx.steps == 60 and m.n_samples == len(sample_steps) and m._swapped
    mean_params = {k: torch.stack([s[0][k] for s in snaps]).mean(0) for k in snaps[0][0]}
    mean_w = torch.stack([s[1] for s in snaps]).mean(0)
    final_iterate = dict(ad_iter.model.named_parameters())
    for k, v in ad_mean.model.named_parameters():
        torch.testing.assert_close(v.detach().double(), mean_params[k], rtol=1e-6, atol=1e-7)
        assert not torch.allclose(v.detach().double(), final_iterate[k].detach().double(), atol=1e-5), k
    torch.testing.assert_close(m.pool_weights(ctx).double(), mean_w, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(mean_w, snaps[-1][1], atol=1e-4)  # the mean, not the last iterate
    # the runner's final evaluation scores that model
    load = {k: v.float() for k, v in mean_params.items()}
    ad_iter.model.load_state_dict(load, strict=False)
    assert ad_iter.evaluate(ctx.pool) == ad_mean.evaluate(ctx.pool)


def test_sigma_auto_puts_the_loop_gain_a_margin_below_its_threshold_and_a_stiff_sigma_warns():
    # weight net: σ² = lr_w·p₂·(N/|B|)·‖∂S̄/∂φ‖²/(Z_φ·G*), ∂S̄/∂φ = (1/N)·Σ_B w(1−w)·[x, 1], G* = 1/(10·s_avg)
    ctx = _tiny_ctx()
    m = BADS(BADSConfig(name="bads", features="embed_x_label"))
    m.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))
    assert m.sigma is None  # measured on the first batch
    idx = torch.tensor([7, 1, 4, 10])
    m.step(ctx, 1, idx, torch.arange(3))
    N, B, beta = 12, 4, 0.3
    x = torch.cat([_net_input("embed_x_label", ctx.pool.x[idx], ctx.pool.y[idx], 3), torch.ones(B, 1)], 1)
    ds = (beta * (1 - beta)) * x.sum(0) / N  # every weight starts at β
    want = math.sqrt(1e-3 * 1.0 * (N / B) * float(ds.pow(2).sum()) / (N * 0.01))
    assert m.sigma == pytest.approx(want, rel=1e-9)
    assert m.prior_gain == pytest.approx(0.01, rel=1e-9) and not ctx.extra["warnings"]
    # per-sample logits: closed form σ² = lr_w·p₂·|B|·(β(1−β))²/(N²·Z_φ·G*)
    ps = BADS(BADSConfig(name="bads", weights="per_sample"))
    ps.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))
    ps.step(ctx, 1, idx, torch.arange(3))
    assert ps.sigma == pytest.approx(math.sqrt(1e-3 * B * (beta * (1 - beta)) ** 2 / (N ** 2 * N * 0.01)), rel=1e-9)
    # the paper's σ = 1e-5 on 12 examples: gain ≫ 1/s_avg, and the warning reaches ctx.warn
    stiff = BADS(BADSConfig(name="bads", sigma=1e-5))
    stiff.setup(ctx, torch.optim.SGD(ctx.model.parameters(), lr=0.1))
    stiff.step(ctx, 1, idx, torch.arange(3))
    assert stiff.prior_gain > 1e3
    assert len(ctx.extra["warnings"]) == 1 and "loop gain" in ctx.extra["warnings"][0]


def test_default_sigma_keeps_the_tiny_digits_weights_at_beta_where_the_papers_collapses(tmp_path):
    """TINY (pool 600, β = 0.2): measured weight mean 0.195 with σ auto (gain 0.010–0.016, no
    warning); the paper's σ = 1e-5 has gain ≈ 40 at step 1 and every weight ends at 1.0
    (before the zero-initialised weight net: at 1e-34)."""
    auto = run_job(compose_cfg(TINY + ["method=bads"], tmp_path))
    assert auto["status"] == "ok", auto.get("reason")
    q = auto["selection"]["quality"]
    assert 0.15 < q["weight_mean"] < 0.25 and auto["warnings"] == [], (q["weight_mean"], auto["warnings"])
    assert all(p["train_prior_gain"] < 0.05 for p in auto["curve"])
    paper = run_job(compose_cfg(TINY + ["method=bads", "method.sigma=1e-5"], tmp_path))
    assert paper["status"] == "ok"
    assert any("loop gain" in w for w in paper["warnings"])  # through ctx.warn, into the record
    m = paper["selection"]["quality"]["weight_mean"]
    assert m < 0.01 or m > 0.99, m


# --------------------------------------------------------------------------------------------
# (c) behaviour on small real data (seconds)
# --------------------------------------------------------------------------------------------
DIGITS_NOISY = ["dataset=digits", "scenario=sym_noise", "scenario.noise.rate=0.5", "scenario.pool_size=1000",
                "scenario.target_per_class=10", "model=mlp", "model.hidden=64", "runner.batch_size=64",
                "runner.target_batch_size=64", "budget.fraction=0.5", "progress=false", "runner.device=cpu",
                "scale=paper", "runner.steps=300", "runner.eval_every=100", "runner.threads=1"]


def test_label_conditioned_weight_net_ranks_clean_above_noisy_and_the_papers_input_cannot(tmp_path):
    """Digits, 50% symmetric noise, β = 0.5, 300 steps (≈6 s a run).  Measured weight AUC
    clean-vs-noisy, seeds 0–3: features=embed_x_label 0.907 / 0.884 / 0.952 / 0.888;
    embed_label (the paper's emb ⊕ one-hot) 0.432 / 0.448 / 0.432 / 0.437."""
    xl = run_job(compose_cfg(DIGITS_NOISY + ["method=bads"], tmp_path))
    el = run_job(compose_cfg(DIGITS_NOISY + ["method=bads", "method.features=embed_label"], tmp_path))
    assert xl["status"] == el["status"] == "ok"
    auc_xl = xl["selection"]["quality"]["auc_clean_vs_corrupted"]
    auc_el = el["selection"]["quality"]["auc_clean_vs_corrupted"]
    assert auc_xl > 0.8 and auc_el < 0.6, (auc_xl, auc_el)
    # accounting under runner.match_examples: pool 32 + target 32 = runner.batch_size, one forward
    # pass (the weight net's embedding is captured from it), and the whole pool scored at each eval
    c = xl["compute"]
    assert c["match_examples"] and c["train_examples_per_step"] == 64
    assert c["forward_per_step"] == 64 and c["backward_per_step"] == 64
    n_pool, n_evals = xl["scenario_info"]["n_pool"], len(xl["curve"])
    assert xl["cost"]["phases"]["eval"]["forward"] >= (n_evals + 1) * n_pool


def test_the_prior_pulls_the_mean_weight_to_beta(tmp_path):
    """Weights start at 0.3 with β = 0.5: measured mean weight after 300 steps 0.484 / 0.484 /
    0.481 (seeds 0–2) with σ auto; without a prior (σ = 1000) the data term pushes it to 0.252."""
    held = run_job(compose_cfg(DIGITS_NOISY + ["method=bads", "method.init_weight=0.3"], tmp_path))
    free = run_job(compose_cfg(DIGITS_NOISY + ["method=bads", "method.init_weight=0.3", "method.sigma=1000"], tmp_path))
    assert held["status"] == free["status"] == "ok"
    assert abs(held["selection"]["quality"]["weight_mean"] - 0.5) < 0.05
    assert free["selection"]["quality"]["weight_mean"] < 0.3


def test_per_sample_weights_separate_clean_from_noisy_on_digits(tmp_path):
    rec = run_job(compose_cfg(DIGITS_NOISY + [
        "method=bads", "method.weights=per_sample", "method.prior_norm=per_example", "method.w_norm=sum",
        "method.sigma=0.1", "method.lr_w=1"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    q = rec["selection"]["quality"]
    # measured (pool batch 32 under runner.match_examples), seeds 0–2: AUC 0.681 / 0.671 / 0.669,
    # clean 0.62 vs noisy 0.34; each weight sees ~10 updates in 300 steps.  The ≥ 0.85
    # acceptance check is the slow Fashion-MNIST one.
    assert q["auc_clean_vs_corrupted"] > 0.62, q
    assert q["clean_weight_mean"] > q["corrupted_weight_mean"] + 0.2
    assert "histogram" in q and len(q["histogram"]["clean"]) == 20
    assert "sel_auc_clean_vs_corrupted" in rec["curve"][-1]


def test_presets_compose_without_bads_keys_for_other_methods(tmp_path):
    for exp in ("bads/denoise", "bads/mnist_balance", "bads/mnist_balance_paper", "bads/denoise_cifar10"):
        c = compose_cfg([f"experiment={exp}", "method=erm"], tmp_path)
        assert c.experiment_name == exp and set(c.method) == {"name"}
        b = compose_cfg([f"experiment={exp}", "method=bads"], tmp_path)
        assert b.method.sigma > 0 and b.method.weights == "net"
    c = compose_cfg(["experiment=bads/denoise", "method=bads", "scenario=asym_noise"], tmp_path)
    assert c.scenario.noise.kind == "asymmetric" and c.scenario.noise.rate == 0.4 and c.budget.fraction == 0.8


@pytest.mark.parametrize("exp", ["bads/denoise", "bads/denoise_cifar10", "bads/mnist_balance", "bads/mnist_balance_paper"])
def test_presets_give_bads_the_same_weight_model_input_as_blo(tmp_path, exp):
    bads = compose_cfg([f"experiment={exp}", "method=bads"], tmp_path).method
    blo = compose_cfg([f"experiment={exp}", "method=blo"], tmp_path).method
    assert str(bads.features) == str(blo.features) and bads.w_hidden == blo.weight_hidden
    if exp.startswith("bads/denoise"):  # the paper's literal input stays runnable, as its own preset
        name = exp.split("/")[1]
        paper = compose_cfg([f"experiment={exp}", "method=bads",
                             f"method_preset@method=bads/{name}_paper_input/bads"], tmp_path).method
        assert paper.features == "embed_label" and paper.sigma == bads.sigma and paper.lr_w == bads.lr_w
        cfg = compose_cfg([f"experiment={exp}", "method=bads", f"method_preset@method=bads/{name}_paper_input/bads"],
                          tmp_path)
        BADS.check_config(OmegaConf.to_object(cfg.method), cfg)


# --------------------------------------------------------------------------------------------
# (e) slow: a real LoRA model, and the acceptance checks (minutes on 2 CPU cores)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bads_on_smollm2_lora_leaves_every_frozen_base_weight_bit_identical(monkeypatch, tmp_path, request):
    """SmolLM2-135M + LoRA on runner=language: two BADS steps (noise on, posterior mean on)
    move the LoRA adapters and leave all ~135M frozen base weights bit-identical."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(k, "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    overrides = ["runner=language", "model=smollm2", "dataset=instructions", "scenario=instruction_mixture",
                 "dataset.sources=[chatterbot,wordnet]", "dataset.max_per_source=200", "scenario.pool_size=32",
                 "scenario.test_per_domain=4", "scenario.target_per_domain=4", "scenario.seq_len=32",
                 "runner.device=cpu", "runner.steps=2", "runner.batch_size=6", "runner.target_batch_size=3",
                 "method=bads", "method.noise_std=1e-2", "method.collect_samples=true", "method.burn_in=0",
                 "method.thin=1"]
    from selbench.core.sampling import CyclicSampler
    from selbench.runners.run.context import make_context
    from selbench.runners.run.loop import make_optimizer
    from selbench.runners.tasks import language

    cfg = compose_cfg(overrides, tmp_path)
    check_config(cfg)
    scenario = language.build_scenario(cfg, 0)
    cost = CostTracker()
    adapter = language.build_adapter(cfg, scenario, cost, torch.device("cpu"))
    named = dict(adapter.model.named_parameters())
    frozen = {k: v.detach().clone() for k, v in named.items() if not v.requires_grad}
    lora = {k: v.detach().clone() for k, v in named.items() if v.requires_grad}
    assert lora and all("lora_" in k for k in lora) and sum(v.numel() for v in frozen.values()) > 100e6
    opt = make_optimizer([p for p in adapter.model.parameters() if p.requires_grad], cfg.runner.optimizer)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=BADS)
    m = BADS(OmegaConf.to_object(cfg.method))
    m.setup(ctx, opt)
    pool_s, tgt_s = CyclicSampler(ctx.n_pool, ctx.generator), CyclicSampler(len(ctx.target), ctx.generator)
    for step in (1, 2):
        out = m.step(ctx, step, pool_s.next(ctx.batch_size), tgt_s.next(ctx.target_batch_size))
        assert math.isfinite(out["loss"])
    assert m._swapped and set(m._theta_sum) >= set(lora) and not set(m._theta_sum) & set(frozen)
    named = dict(adapter.model.named_parameters())
    assert all(torch.equal(named[k], v) for k, v in frozen.items())
    assert any(not torch.equal(named[k], v) for k, v in lora.items())


FASHION_50 = ["experiment=bads/denoise", "scale=paper", "scale.max_test=5000", "runner.steps=2000",
              "runner.eval_every=500", "progress=false", "runner.device=cpu"]
PER_SAMPLE = ["method.weights=per_sample", "method.prior_norm=per_example", "method.w_norm=sum",
              "method.sigma=0.1", "method.lr_w=1"]
FASHION_VARIANTS = {"erm": ["method=erm"], "preset": ["method=bads"], "per_sample": ["method=bads"] + PER_SAMPLE,
                    "paper_input": ["method=bads", "method_preset@method=bads/denoise_paper_input/bads"]}
SEEDS = (0, 1, 2)


def _runs(tmp_path_factory, name, base, variants):
    d = tmp_path_factory.mktemp(name)
    out = {}
    for v, extra in variants.items():
        for seed in SEEDS:
            r = run_job(compose_cfg(base + extra + [f"seed={seed}", "runner.threads=1"], d))
            if r["status"] != "ok":
                pytest.fail(f"{v} seed {seed}: {r.get('reason')}")
            out[v, seed] = r
    return out


@pytest.fixture(scope="module")
def fashion_runs(tmp_path_factory):
    """experiment=bads/denoise (Fashion-MNIST, 50% symmetric noise, β = 0.8) at 2,000 steps, seeds 0–2."""
    return _runs(tmp_path_factory, "fashion", FASHION_50, FASHION_VARIANTS)


@pytest.mark.slow
@needs_fashion
def test_fashion_mnist_50pct_noise_weights_flag_the_noisy_labels(fashion_runs):
    """The issue's AUC ≥ 0.85 check, every seed.  Measured (seeds 0–2, 2,000 steps, H100):
    preset (embed_x_label, as BLO) 0.912 / 0.958 / 0.946; per-sample 0.953 / 0.957 / 0.953;
    the paper's literal embedding ⊕ one-hot input 0.476 / 0.500 / 0.497 (cannot express
    label agreement)."""
    auc = {k: r["selection"]["quality"]["auc_clean_vs_corrupted"] for k, r in fashion_runs.items() if k[0] != "erm"}
    print({f"{v} s{s}": round(a, 3) for (v, s), a in auc.items()})
    assert all(auc["preset", s] >= 0.85 and auc["per_sample", s] >= 0.85 for s in SEEDS), auc
    assert all(auc["paper_input", s] < 0.6 for s in SEEDS), auc


@pytest.mark.slow
@needs_fashion
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "measured (seeds 0–2, 2,000 steps, H100): test accuracy erm 0.8456 / 0.8446 / 0.8534 (mean 0.848); "
    "BADS preset 0.8332 / 0.8318 / 0.8428 (0.836), per-sample 0.8458 / 0.8288 / 0.8400 (0.838). The weight "
    "net ranks well but its weights barely spread at lr_w = 1e-4 (clean 0.7992 vs noisy 0.7983); per-sample "
    "weights spread (0.89 vs 0.61) and still do not beat pool ∪ target at β = 0.8"))
def test_fashion_mnist_50pct_noise_bads_beats_erm(fashion_runs):
    """Mean over 3 seeds, margin 0.01 (≈ 2.5× the standard error of a 3-seed mean difference:
    per-seed sd ≈ 0.005)."""
    acc = {k: r["metrics"]["test_accuracy"] for k, r in fashion_runs.items()}
    mean = {v: sum(acc[v, s] for s in SEEDS) / len(SEEDS) for v in FASHION_VARIANTS}
    print(mean)
    assert mean["preset"] > mean["erm"] + 0.01 and mean["per_sample"] > mean["erm"] + 0.01, mean


@pytest.fixture(scope="module")
def mnist_balance_runs(tmp_path_factory):
    """experiment=bads/mnist_balance (MNIST-5k 4-vs-9, 3 fours among 320, β = 0.01), scale=small, seeds 0–2."""
    return _runs(tmp_path_factory, "mnist", ["experiment=bads/mnist_balance", "progress=false", "runner.device=cpu"],
                 {"bads": ["method=bads"], "erm": ["method=erm"]})


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "measured (seeds 0–2, 600 steps, H100): BADS's minority weight share 0.00938 / 0.00938 / 0.00938 = the "
    "minority's pool fraction 0.00938 (weight AUC 0.74 / 0.66 / 0.80, but the weights stay at β ± 1e-4)"))
def test_mnist_4_vs_9_bads_weights_up_weight_the_minority(mnist_balance_runs):
    q = [mnist_balance_runs["bads", s]["selection"]["quality"] for s in SEEDS]
    print([(x["minority_weight_share"], x["minority_pool_fraction"]) for x in q])
    assert all(x["minority_weight_share"] > 2 * x["minority_pool_fraction"] for x in q)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "measured (seeds 0–2, 600 steps, H100): balanced accuracy BADS 0.500 / 0.663 / 0.867, erm 0.500 / "
    "0.507 / 0.850: paired difference +0.058 ± 0.086 (sd), below the 0.1 margin the seed variance needs. "
    "At β = 0.01 BADS's θ step is ~94% target loss (N_t·β ≈ 3 vs N_m = 50), which is where its gain comes from"))
def test_mnist_4_vs_9_balance_bads_beats_erm(mnist_balance_runs):
    bal = {k: r["metrics"]["test_balanced_accuracy"] for k, r in mnist_balance_runs.items()}
    diff = sum(bal["bads", s] - bal["erm", s] for s in SEEDS) / len(SEEDS)
    print(bal, diff)
    assert diff > 0.1, bal
