"""Bilevel reweighting baselines (L2RW, MW-Net, online BLO) and their shared lookahead."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError
from torch import nn
from torch.func import functional_call

from conftest import TINY, compose_cfg, needs_fashion
from selbench.core.errors import ConfigError
from selbench.methods.bilevel import l2rw as l2rw_module, lookahead as lookahead_module
from selbench.methods.bilevel import mwnet as mwnet_module, online_blo as blo_module
from selbench.methods.bilevel.l2rw import l2rw_normalise
from selbench.methods.bilevel.mwnet import LossToWeight, sum_normalise
from selbench.methods.bilevel.online_blo import EmbeddingScorer
from selbench.methods.bilevel.lookahead import Choice, check_lookahead_params, meta_gradient, one_step_lookahead
from selbench.methods.registry import get_method
from selbench.runners.tasks.vision import VisionAdapter
from selbench.core.cost import CostTracker
from selbench.runners.run.job import run_job
from selbench.runners.models.vision import Classifier

# ----------------------------------------------------------------------------- helpers


def tiny_adapter(batchnorm: bool = False, seed: int = 0) -> VisionAdapter:
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 5)] + ([nn.BatchNorm1d(5)] if batchnorm else []) + [nn.Tanh(), nn.Linear(5, 4), nn.ReLU()]
    model = Classifier(nn.Sequential(*layers), 4, 3).double().train()
    return VisionAdapter(model, 3, CostTracker(), torch.device("cpu"))


def tiny_batches(seed: int = 1, b: int = 7, m: int = 5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (b,), generator=g),
            torch.randn(m, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (m,), generator=g))


def reference_target_loss(model: nn.Module, x, y, xt, yt, weights_of_losses, lr: float, reduction: str) -> float:
    """L_m(θ − lr ∇θ reduce(w ⊙ l(θ))) written out independently (no create_graph, fresh buffers)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    bufs = {k: b.clone() for k, b in model.named_buffers()}
    losses = nn.functional.cross_entropy(functional_call(model, {**params, **bufs}, (x,)), y, reduction="none")
    w = weights_of_losses(losses.detach())
    inner = (w * losses).sum() / (len(losses) if reduction == "mean" else 1)
    grads = torch.autograd.grad(inner, list(params.values()))
    new = {k: p.detach() - lr * g for (k, p), g in zip(params.items(), grads)}
    out = functional_call(model, {**new, **bufs}, (xt,))
    return float(nn.functional.cross_entropy(out, yt))


def central_differences(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        e = e.view_as(x)
        g.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# ----------------------------------------------------------------------------- (a) meta-gradient = finite differences


@pytest.mark.parametrize("batchnorm", [False, True])
def test_meta_gradient_wrt_eps_matches_finite_differences(batchnorm):
    ad = tiny_adapter(batchnorm)
    x, y, xt, yt = tiny_batches()
    lr = 0.7
    eps0 = torch.rand(len(x), dtype=torch.float64, generator=torch.Generator().manual_seed(3))  # not only at ε = 0
    eps = eps0.clone().requires_grad_(True)
    la = one_step_lookahead(ad, x, y, xt, yt, lambda _l: eps, lr, reduction="sum")
    (g,) = meta_gradient(ad, la, [eps])
    fd = central_differences(lambda e: reference_target_loss(ad.model, x, y, xt, yt, lambda _l: e, lr, "sum"), eps0)
    assert fd.abs().max() > 1e-4  # a real signal, not 0 ≈ 0
    assert rel_err(g, fd) < 1e-3, (g, fd)


def _flat_params(m: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def _with_flat(m: nn.Module, flat: torch.Tensor) -> nn.Module:
    m2 = copy.deepcopy(m)
    i = 0
    with torch.no_grad():
        for p in m2.parameters():
            p.copy_(flat[i:i + p.numel()].view_as(p))
            i += p.numel()
    return m2


def _assert_meta_gradient_matches_fd(ad, batches, module, weight_fn_of, lr, reduction):
    """The lookahead meta-gradient w.r.t. ``module``'s parameters vs central differences
    of an independently written target loss (float64, relative error < 1e-3)."""
    x, y, xt, yt = batches
    la = one_step_lookahead(ad, x, y, xt, yt, weight_fn_of(module), lr, reduction=reduction)
    g = torch.cat([t.reshape(-1) for t in meta_gradient(ad, la, list(module.parameters()))])
    fd = central_differences(
        lambda f: reference_target_loss(ad.model, x, y, xt, yt, weight_fn_of(_with_flat(module, f)), lr, reduction),
        _flat_params(module))
    assert fd.abs().max() > 1e-6
    assert rel_err(g, fd) < 1e-3


def test_meta_gradient_wrt_mwnet_phi_matches_finite_differences():
    ad = tiny_adapter()
    x, y, xt, yt = tiny_batches()
    lr = 0.7
    torch.manual_seed(5)
    vnet = LossToWeight(hidden=4).double()

    def weights(v):  # MW-Net's batch-normalised V(l)/ΣV(l)
        return lambda l: sum_normalise(v(l))

    _assert_meta_gradient_matches_fd(ad, (x, y, xt, yt), vnet, weights, lr, "sum")


def test_meta_gradient_wrt_blo_scorer_matches_finite_differences():
    ad = tiny_adapter(batchnorm=True)
    x, y, xt, yt = tiny_batches()
    lr = 0.7
    torch.manual_seed(6)
    scorer = EmbeddingScorer(4, 3, "embed_x_label").double()
    with torch.no_grad():  # move off the zero init so the softmax is not flat
        for p in scorer.parameters():
            p.normal_(0, 0.5)
    emb = ad.model.features(x).detach()

    def soft(sc):
        return lambda _l: len(x) * torch.softmax(sc(emb, y), 0)

    _assert_meta_gradient_matches_fd(ad, (x, y, xt, yt), scorer, soft, lr, "mean")


def test_lookahead_leaves_model_parameters_grads_and_running_stats_alone():
    ad = tiny_adapter(batchnorm=True)
    x, y, xt, yt = tiny_batches()
    before = copy.deepcopy(ad.model.state_dict())
    eps = torch.zeros(len(x), dtype=torch.float64, requires_grad=True)
    la = one_step_lookahead(ad, x, y, xt, yt, lambda _l: eps, 0.5, reduction="sum")
    meta_gradient(ad, la, [eps])
    for k, v in ad.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in ad.model.parameters())
    # passes are counted: pool B + target M forwards; B inner backward, M + B meta backward
    assert (ad.cost.forward, ad.cost.backward) == (len(x) + len(xt), 2 * len(x) + len(xt))


# ----------------------------------------------------------------------------- (b) L2RW guard


def test_l2rw_normalisation_and_all_zero_guard():
    w = l2rw_normalise(torch.tensor([0.0, 2.0, 0.0, 6.0]))
    assert torch.allclose(w, torch.tensor([0.0, 0.25, 0.0, 0.75]))
    z = l2rw_normalise(torch.zeros(5))
    assert torch.equal(z, torch.zeros(5))  # not 0/0 = nan


def make_ctx(tmp_path, method: str, overrides=()):
    """A real RunContext (the runner's scenario, model and adapter) for stepping a method by hand."""
    from omegaconf import OmegaConf

    from selbench.runners.run.context import make_context
    from selbench.runners.run.loop import make_optimizer
    from selbench.runners.tasks import vision

    cfg = compose_cfg(TINY + [f"method={method}", "runner.batch_size=32", "runner.target_batch_size=16", *overrides],
                      tmp_path)
    torch.manual_seed(0)
    cost = CostTracker()
    scen = vision.build_scenario(cfg, 0)
    ad = vision.build_adapter(cfg, scen, cost, torch.device("cpu"))
    opt = make_optimizer(ad.model.parameters(), cfg.runner.optimizer)
    ctx = make_context(cfg, scen, ad, cost, method_cls=get_method(method).cls, steps=10)
    m = get_method(method).cls(OmegaConf.to_object(cfg.method))
    m.setup(ctx, opt)
    return ctx, m, opt


@pytest.mark.parametrize("skip", [False, True])
def test_l2rw_all_zero_batch_gives_zero_weights_and_no_nan(tmp_path, skip):
    # inner_lr = 0: θ' = θ, so ∂L_m/∂ε = 0 exactly and every weight is clipped to 0
    ctx, m, opt = make_ctx(tmp_path, "l2rw", ["method.inner_lr=0.0", f"method.skip_all_zero={skip}",
                                              "runner.optimizer.momentum=0.9", "runner.optimizer.weight_decay=0.01"])
    before = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}
    idx = torch.arange(32)
    out = m.step(ctx, 1, idx, torch.arange(16))
    assert out["zero_batch"] == 1.0 and torch.isfinite(torch.tensor(out["loss"]))
    assert torch.equal(m.pool_weights(ctx)[idx], torch.zeros(32))
    assert torch.equal(m.pool_weights(ctx)[32:], torch.ones(ctx.n_pool - 32))  # not yet drawn: 1
    lr, wd = opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]
    for k, p in ctx.model.named_parameters():
        assert torch.isfinite(p).all()
        # the paper's code still steps (zero loss gradient: only weight decay acts); skip leaves θ untouched
        expect = before[k] if skip else before[k] * (1 - lr * wd)
        assert torch.allclose(p.detach(), expect, atol=1e-7), k


def test_l2rw_weights_are_a_normalised_clipped_meta_gradient(tmp_path):
    ctx, m, _ = make_ctx(tmp_path, "l2rw")
    out = m.step(ctx, 1, torch.arange(64), torch.arange(32))
    w = m.pool_weights(ctx)[:64] / 64
    assert (w >= 0).all() and abs(float(w.sum()) - 1) < 1e-5
    assert 0 < out["weight_nonzero"] < 1  # some examples disagree with the target, some agree


def test_mwnet_and_blo_steps_move_their_weight_models(tmp_path):
    for name, attr in (("mwnet", "vnet"), ("blo", "scorer")):
        ctx, m, _ = make_ctx(tmp_path, name)
        before = [p.detach().clone() for p in getattr(m, attr).parameters()]
        out = m.step(ctx, 1, torch.arange(32), torch.arange(16))
        after = list(getattr(m, attr).parameters())
        assert torch.isfinite(torch.tensor(out["loss"]))
        assert any(not torch.equal(a, b) for a, b in zip(after, before)), name
        w = m.pool_weights(ctx)
        assert w.shape == (ctx.n_pool,) and torch.isfinite(w).all() and (w >= 0).all()


@pytest.mark.parametrize("meta_optimizer", ["sgd", "adam"])
def test_mwnet_meta_optimizer_steps_v_as_each_authors_release(tmp_path, meta_optimizer):
    """sgd: the 2019 trainer's SGD(momentum 0.9, Nesterov): a first step moves φ by −lr·1.9·(g + wd·φ);
    adam (the 2020 release): a first Adam step moves each coordinate by ≈ −lr·sign(g + wd·φ)."""
    ctx, m, _ = make_ctx(tmp_path, "mwnet", [f"method.meta_optimizer={meta_optimizer}",
                                               "method.meta_weight_decay=5e-4", "method.meta_lr=1e-3"])
    before = [p.detach().clone() for p in m.vnet.parameters()]
    m.step(ctx, 1, torch.arange(32), torch.arange(16))
    for p, b in zip(m.vnet.parameters(), before):
        g = p.grad + 5e-4 * b  # the meta-gradient the step used, with the optimiser's weight decay
        if meta_optimizer == "sgd":
            torch.testing.assert_close(p.detach() - b, -1e-3 * 1.9 * g, rtol=1e-3, atol=1e-7)  # float32 φ
        else:
            big = g.abs() > 1e-5  # Adam's first step: lr·g/(|g| + ε)
            torch.testing.assert_close((p.detach() - b)[big], -1e-3 * g[big].sign(), rtol=2e-2, atol=1e-6)


def test_blo_keeps_the_budget_fraction_of_a_large_batch(tmp_path):
    ctx, m, _ = make_ctx(tmp_path, "blo", ["budget=b020"])  # a hand-made ctx: match_examples off
    assert m.L == min(ctx.n_pool, math.ceil(ctx.batch_size / 0.2), m.cfg.max_large_batch) == 160
    assert m.k == round(0.2 * m.L) == 32
    out = m.step(ctx, 1, torch.arange(32), torch.arange(16))
    assert out["n_kept"] == m.k


PRESET_EXPERIMENTS = ("bads/mnist_balance", "bads/mnist_balance_paper", "bads/denoise", "bads/denoise_cifar10")


@pytest.mark.parametrize("exp", PRESET_EXPERIMENTS)
def test_presets_reach_the_method_configs(tmp_path, exp):
    """Every key of each preset file is what the composed ``method`` config holds."""
    from selbench.runners.run.validate import CONF_DIR

    for name in ("l2rw", "mwnet", "blo"):
        preset = yaml.safe_load((Path(CONF_DIR) / "method_preset" / exp / f"{name}.yaml").read_text())
        assert preset, (exp, name)
        cfg = compose_cfg([f"experiment={exp}", f"method={name}"], tmp_path)
        for key, value in preset.items():
            assert cfg.method[key] == value, (exp, name, key, cfg.method[key], value)


# ----------------------------------------------------------------------------- runs through the real runner


@pytest.mark.parametrize("meta_grad", ["jvp", "double_backward"])
@pytest.mark.parametrize("method", ["l2rw", "mwnet", "blo", "blo_fresh"])
def test_runs_end_to_end_with_weights_scored_and_lookahead_passes_counted(tmp_path, method, meta_grad):
    extra_args = ["method=blo", "method.score_features=fresh"] if method == "blo_fresh" else [f"method={method}"]
    rec = run_job(compose_cfg(TINY + extra_args + ["runner.steps=8", "runner.eval_every=4", "runner.threads=1",
                                                   f"method.meta_grad={meta_grad}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    q = rec["selection"]["quality"]
    assert q["auc_clean_vs_corrupted"] is not None and len(rec["curve"]) == 2
    b, t, steps = 64, 32, 8
    # per training step, exactly, with meta_grad=double_backward: the pool batch at θ and the target
    # batch at θ' (forward), the inner backward (B), the meta backward (T + B); the real step's
    # backward (B). L2RW and MW-Net back-propagate the real step through the lookahead's pool forward
    # (no second forward); BLO trains on other examples (forward k = B), takes the meta batch's
    # embedding from the lookahead's pool forward (adapter.capture_embedding: no pass of its own) and
    # scores the large batch on cached embeddings (the whole pool embedded once: N forwards over the
    # run) or, with score_features=fresh, embeds all L = ⌈B/β⌉ of it every step.
    # meta_grad=jvp: the meta backward becomes a forward with tangents of the pool batch (B) and
    # the target backward (T); L2RW (ε = 0: θ' = θ) takes no inner gradient and its pool forward
    # carries the tangents itself.
    n_pool = rec["scenario_info"]["n_pool"]
    extra = {"l2rw": 0, "mwnet": 0, "blo": b + n_pool / steps, "blo_fresh": b + math.ceil(b / rec["budget"])}
    c = rec["compute"]
    if meta_grad == "double_backward":
        expect = (b + t + extra[method], 3 * b + t)
    else:
        expect = {"l2rw": (b + t, b + t), "mwnet": (2 * b + t, 2 * b + t)}.get(method, (2 * b + t + extra[method], 2 * b + t))
    assert (c["forward_per_step"], c["backward_per_step"]) == expect, c
    assert c["train_examples_per_step"] == b


def test_config_defaults_are_the_papers_and_overridable(tmp_path):
    cfg = compose_cfg(TINY + ["method=mwnet"], tmp_path)
    assert (cfg.method.hidden, cfg.method.meta_lr, cfg.method.meta_weight_decay) == (100, 1e-3, 1e-4)
    cfg = compose_cfg(TINY + ["method=blo", "method.weight_lr=0.01", "method.selection=top"], tmp_path)
    assert cfg.method.weight_lr == 0.01 and cfg.method.selection == "top"
    cfg = compose_cfg(["experiment=bads/denoise", "method=blo"], tmp_path)
    assert cfg.method.weight_lr == 1e-4 and cfg.method.features == "embed_x_label"  # the preset applied
    cfg = compose_cfg(["experiment=bads/mnist_balance", "method=blo"], tmp_path)
    assert cfg.method.features == "embed"


# ----------------------------------------------------------------------------- typed knobs, checks before launch

BILEVEL = ("l2rw", "mwnet", "blo")


@pytest.mark.parametrize("method", BILEVEL)
def test_every_string_choice_is_a_typed_enum(method):
    """Only ``lookahead_params`` (a fixed set plus ``last:<k>``) stays a str; it is checked in check_config."""
    for f in dataclasses.fields(get_method(method).config):
        if f.name not in ("name", "lookahead_params"):
            assert f.type is not str and "str" not in str(f.type).replace("Choice", ""), (method, f.name, f.type)
        if isinstance(f.default, Choice):
            assert all(c.name == c.value for c in type(f.default)), f.name  # OmegaConf matches the names


@pytest.mark.parametrize("override,allowed", [
    ("method=blo method.selection=nope", "[top, sample]"),
    ("method=blo method.features=label", "[embed, embed_label, embed_x_label]"),
    ("method=l2rw method.pool_score=max", "[mean, last]"),
])
def test_a_bad_choice_is_rejected_when_the_config_is_composed(tmp_path, override, allowed):
    with pytest.raises(Exception) as e:
        compose_cfg(TINY + override.split(), tmp_path)
    cause = e.value.__cause__ or e.value
    assert isinstance(cause, ValidationError) and allowed in str(cause), str(cause)


@pytest.mark.parametrize("override,message", [
    ("method=l2rw method.lookahead_params=last:0", "lookahead_params='last:0'"),
    ("method=mwnet method.lookahead_params=lora", "lookahead_params='lora'"),  # vision has no LoRA
    ("method=blo method.lookahead_params=every", "choose from: all, trainable, head, last:<k>"),
    ("method=mwnet method.inner_lr=-0.1", "method.inner_lr=-0.1 must be ≥ 0"),
    ("method=mwnet method.meta_lr=0", "method.meta_lr=0.0 must be > 0"),
    ("method=mwnet method.hidden=0", "method.hidden=0 must be ≥ 1"),
    ("method=blo method.weight_lr=0", "method.weight_lr=0.0 must be > 0"),
    ("method=blo method.large_batch=4000", "exceeds method.max_large_batch=2048"),
    ("method=blo method.large_batch=32", "< the 64 examples runner.match_examples keeps"),
    ("method=blo method.include_target_in_step=true runner.target_batch_size=64", "include_target_in_step"),
])
def test_cross_field_and_range_errors_come_before_launch(tmp_path, override, message):
    """check_config (called for every job before anything runs) raises one ConfigError line."""
    from selbench.runners.run.validate import validate_overrides

    with pytest.raises(ConfigError) as e:
        validate_overrides(TINY + override.split() + [f"results_dir={tmp_path}"])
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not any(tmp_path.iterdir())  # nothing launched, nothing written


def test_lookahead_params_accepts_the_fixed_names_and_counts():
    vision, text = OmegaConf.create({"dataset": {}}), OmegaConf.create({"dataset": {"modality": "language"}})
    for ok in ("all", "trainable", "head", "last:1", "last:12"):
        check_lookahead_params(ok, vision)
    for ok in ("lora", "layers:2"):
        check_lookahead_params(ok, text)
        with pytest.raises(ConfigError):
            check_lookahead_params(ok, vision)
    for bad in ("last", "last:", "last:-1", "last:x", "ALL", "head "):
        with pytest.raises(ConfigError):
            check_lookahead_params(bad, vision)


def test_the_record_holds_plain_strings_and_the_step_diagnostics(tmp_path):
    """Enum knobs reach record.json as their plain string; each method's stats reach the curve."""
    expect = {"l2rw": {"target_loss_lookahead", "weight_nonzero", "weight_ess", "zero_batch"},
              "mwnet": {"target_loss_lookahead", "v_mean", "weight_max", "weight_ess"},
              "blo": {"target_loss_lookahead", "weight_ess", "n_kept"}}
    for method, stats in expect.items():
        rec = run_job(compose_cfg(TINY + [f"method={method}", "runner.steps=4", "runner.eval_every=4",
                                          "runner.threads=1"], tmp_path))
        assert rec["status"] == "ok", rec.get("reason")
        assert {f"train_{k}" for k in stats | {"loss"}} <= set(rec["curve"][-1]), (method, rec["curve"][-1])
        on_disk = json.loads((Path(rec["run_dir"]) / "record.json").read_text())
        m = on_disk["config"]["method"]
        if method == "blo":
            assert (type(m["selection"]), m["selection"], m["features"]) == (str, "sample", "embed_x_label")
            assert on_disk["curve"][-1]["train_n_kept"] == 64
        if method == "l2rw":
            assert (type(m["pool_score"]), m["pool_score"]) == (str, "mean")
        assert 0 < on_disk["curve"][-1]["train_weight_ess"] <= 1


def test_l2rw_reports_a_stalled_run_and_a_zero_inner_lr_through_ctx_warn(tmp_path):
    # inner_lr = 0: θ' = θ, every meta-gradient is 0 and every batch all-zero
    rec = run_job(compose_cfg(TINY + ["method=l2rw", "method.inner_lr=0.0", "runner.steps=12",
                                      "runner.eval_every=12", "runner.threads=1"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["curve"][-1]["train_zero_batch"] == 1.0
    w = rec["warnings"]
    assert len(w) == 2 and "inner_lr=0" in w[0] and "10 all-zero batches in a row (steps 1–10)" in w[1], w


@pytest.mark.parametrize("module,page", [(l2rw_module, "l2rw"), (mwnet_module, "mwnet"), (blo_module, "online_blo")])
def test_each_module_points_at_its_docs_page_and_not_outside_the_repo(module, page):
    text = module.__doc__ + "".join(c.__doc__ or "" for c in vars(module).values() if isinstance(c, type))
    assert f"docs/methods/{page}.md" in text and "METHODS.md" not in text
    assert (Path(__file__).resolve().parents[1] / "docs" / "methods" / f"{page}.md").exists()


# ----------------------------------------------------------------------------- equal examples per step


def test_under_match_examples_every_bilevel_method_trains_on_the_batch_erm_does(tmp_path):
    per_step = {}
    for method in ("erm", *BILEVEL):
        rec = run_job(compose_cfg(TINY + [f"method={method}", "runner.steps=4", "runner.eval_every=4",
                                          "runner.threads=1", "runner.match_examples=true", "budget=b010"], tmp_path))
        assert rec["status"] == "ok", rec.get("reason")
        per_step[method] = rec["compute"]["train_examples_per_step"]
    assert per_step == dict.fromkeys(per_step, 64), per_step  # runner.batch_size
    # BLO with the target batch in its step keeps batch - target pool examples: 32 + 32
    rec = run_job(compose_cfg(TINY + ["method=blo", "method.include_target_in_step=true", "runner.steps=4",
                                      "runner.eval_every=4", "runner.threads=1"], tmp_path))
    assert rec["compute"]["train_examples_per_step"] == 64 and rec["curve"][-1]["train_n_kept"] == 32


@pytest.mark.parametrize("match,kept", [(False, 3), (True, 100)])
def test_blo_in_mnist_balance_keeps_the_papers_3_per_step_only_without_match_examples(tmp_path, match, kept):
    """experiment=bads/mnist_balance: pool 320, β = 0.01, batch 100. The scored batch is the
    whole pool (L = min(320, ⌈100/0.01⌉, 5000) = 320); without runner.match_examples BLO keeps
    round(0.01·320) = 3 per step (ERM: 100), with it 100, and the record's warnings say so."""
    rec = run_job(compose_cfg(["experiment=bads/mnist_balance", "method=blo", f"runner.match_examples={match}",
                               "runner.steps=2", "runner.eval_every=2", "runner.threads=1", "progress=false",
                               "runner.device=cpu"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["compute"]["train_examples_per_step"] == kept and rec["curve"][-1]["train_n_kept"] == kept
    assert rec["selection"]["effective_budget"] == pytest.approx(kept / 320)
    assert bool(rec["warnings"]) == match and (not match or "keeps k=100 of each scored batch of L=320" in
                                               rec["warnings"][0]), rec["warnings"]


# ----------------------------------------------------------------------------- behaviour (seconds) + mutation

#: TINY (digits, 600 pool of which 50% symmetric label noise, MLP-64) for 120 steps.
BEHAVIOUR = TINY + ["runner.steps=120", "runner.eval_every=120", "runner.threads=1"]
#: weight AUC clean-vs-noisy measured on seeds 0–4 (docs/methods/*.md): l2rw 0.888–0.909,
#: mwnet 0.914–0.981, blo 0.771–0.901; with the meta-gradient's sign flipped: l2rw
#: 0.405–0.468, mwnet 0.035–0.126, blo 0.383–0.447. Thresholds sit ~0.07 under the worst seed.
MIN_AUC = {"l2rw": 0.8, "mwnet": 0.85, "blo": 0.7}


def flip_meta_gradient(monkeypatch) -> None:
    """The mutation: every method's meta step follows −∂L_m/∂(ε or φ)."""
    orig = lookahead_module.meta_gradient

    def flipped(*args, **kwargs):
        return tuple(-g for g in orig(*args, **kwargs))

    for mod in (lookahead_module, l2rw_module, mwnet_module, blo_module):
        if hasattr(mod, "meta_gradient"):
            monkeypatch.setattr(mod, "meta_gradient", flipped)


def weight_auc(tmp_path, method: str) -> float:
    rec = run_job(compose_cfg(BEHAVIOUR + [f"method={method}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    return rec["selection"]["quality"]["auc_clean_vs_corrupted"]


@pytest.mark.parametrize("method", BILEVEL)
def test_final_weights_rank_clean_above_noisy_on_digits(tmp_path, method):
    auc = weight_auc(tmp_path, method)
    assert auc > MIN_AUC[method], auc


@pytest.mark.parametrize("method", BILEVEL)
def test_a_sign_flip_in_the_meta_step_fails_the_ranking_check(tmp_path, monkeypatch, method):
    """The check above catches a sign error: with −meta-gradient the weights favour the noisy examples."""
    flip_meta_gradient(monkeypatch)
    auc = weight_auc(tmp_path, method)
    assert auc < 0.5 and not auc > MIN_AUC[method], auc


# ----------------------------------------------------------------------------- (c) behaviour (slow)

NOISY = ["dataset=fashion_mnist", "scenario=sym_noise", "scenario.pool_size=5000", "scenario.target_per_class=20",
         "model=lenet5", "runner.steps=300", "runner.eval_every=300", "runner.batch_size=64",
         "runner.target_batch_size=32", "budget=b050", "progress=false", "runner.device=cpu"]


@pytest.mark.slow
@needs_fashion
@pytest.mark.parametrize("method,min_auc,extra", [
    # L2RW at the runner's SGD lr 0.05 oscillates (weights concentrate on a few examples
    # per step): measured weight AUC 0.48 and 0.66 in two runs differing only in thread
    # count. At lr 0.01 it trains stably (measured AUC 0.75). Both with pool_score=last;
    # the default mean over draws ranks better (docs/methods/l2rw.md).
    ("l2rw", 0.65, ["runner.optimizer.lr=0.01"]),
    ("mwnet", 0.8, []),
    ("blo", 0.8, []),
])
def test_clean_examples_outweigh_noisy_ones(tmp_path, method, min_auc, extra):
    """Fashion-MNIST, 50% symmetric noise, 5,000 pool, 200 clean targets, LeNet5, 300 steps."""
    rec = run_job(compose_cfg(NOISY + [f"method={method}", *extra], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    q = rec["selection"]["quality"]
    assert q["auc_clean_vs_corrupted"] > min_auc, q
    assert q["clean_weight_mean"] > q["corrupted_weight_mean"]


@pytest.mark.slow
def test_l2rw_balances_the_imbalance_setting_better_than_erm(tmp_path):
    """experiment=bads/mnist_balance (MNIST-5k 4-vs-9, 3 fours among 320) at scale=small (600 steps)."""
    base = ["experiment=bads/mnist_balance", "scale=small", "progress=false", "runner.device=cpu"]
    bal = {}
    for m in ("erm", "l2rw"):
        rec = run_job(compose_cfg(base + [f"method={m}"], tmp_path))
        assert rec["status"] == "ok", rec.get("reason")
        bal[m] = rec["metrics"]["test_balanced_accuracy"]
    assert bal["l2rw"] > bal["erm"] + 0.15, bal
