"""The lookahead meta-gradient in forward mode (``method.meta_grad=jvp``, ``methods/bilevel/metagrad.py``)
equals the double backward (``double_backward``) it replaces, for every bilevel method's weights,
on every model kind the harness has — and models forward-mode AD cannot run fall back to it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from selbench.core.cost import CostTracker
from selbench.methods.bilevel.lookahead import meta_gradient, one_step_lookahead, reused_step
from selbench.methods.bilevel.metagrad import forward_ad_error
from selbench.methods.bilevel.mwnet import LossToWeight, sum_normalise
from selbench.methods.bilevel.online_blo import EmbeddingScorer
from selbench.runners.models.language import TinyGPT
from selbench.runners.models.vision import Classifier, build_model
from selbench.runners.tasks.language import IGNORE, LanguageAdapter
from selbench.runners.tasks.vision import VisionAdapter

CPU = torch.device("cpu")
#: relative error allowed between the two paths (float64; measured ≤ 1e-13 on every case here)
TOL = 1e-9
B, M, C = 6, 5, 3


def vision(name: str, **kw):
    def make():
        shape = (8,) if name == "mlp" else (1, 8, 8)
        model = build_model(name, shape, C, **kw).double().train()
        return VisionAdapter(model, C, CostTracker(), CPU), shape
    return make


def gpt(dropout: float = 0.0):
    def make():
        model = TinyGPT(17, width=8, depth=2, heads=2, context=6, dropout=dropout).double().train()
        return LanguageAdapter(model, 17, CostTracker(), CPU, pad_id=0), None
    return make


MODELS = {"mlp": vision("mlp", hidden=6, depth=2), "lenet5": vision("lenet5"),
          "convnet_bn": vision("convnet", width=4, depth=2, norm="batch"),  # BatchNorm2d
          "tiny_gpt": gpt(), "tiny_gpt_dropout": gpt(0.3)}


def batches(shape, g):
    if shape is None:  # token ids, right-padded; targets ignore the padding
        def text(n):
            x = torch.randint(1, 17, (n, 6), generator=g)
            y = torch.roll(x, -1, 1)
            y[:, -1], y[: n // 2, 4:] = IGNORE, IGNORE
            x[: n // 2, 5:] = 0
            return x, y
        return (*text(B), *text(M))
    return (torch.randn(B, *shape, generator=g, dtype=torch.float64), torch.randint(0, C, (B,), generator=g),
            torch.randn(M, *shape, generator=g, dtype=torch.float64), torch.randint(0, C, (M,), generator=g))


def weight_model(method: str, ad, y):
    """The method's meta-learned tensors and ``weight_fn``, reduction, reuse, zero_weights (as its step)."""
    torch.manual_seed(7)
    if method == "l2rw":
        eps = torch.zeros(B, dtype=torch.float64, requires_grad=True)
        return [eps], (lambda _l: eps), "sum", True, True
    if method == "mwnet":
        vnet = LossToWeight(hidden=4).double()
        return list(vnet.parameters()), (lambda l: sum_normalise(vnet(l))), "sum", True, False
    scorer = EmbeddingScorer(ad.embed_dim, C, "embed").double()
    with torch.no_grad():
        for p in scorer.parameters():
            p.normal_(0, 0.5)
    emb = torch.randn(B, ad.embed_dim, dtype=torch.float64)  # the scorer's (detached) input
    return list(scorer.parameters()), (lambda _l: B * torch.softmax(scorer(emb, y), 0)), "mean", False, False


def run(make, method: str, params: str, meta_grad: str, lr: float = 0.7):
    """One lookahead + meta-gradient (+ the real step for the reusing methods) from a fixed start."""
    torch.manual_seed(0)
    ad, shape = make()
    x, y, xt, yt = batches(shape, torch.Generator().manual_seed(1))
    wrt, weight_fn, reduction, reuse, zero = weight_model(method, ad, y)
    torch.manual_seed(3)  # dropout masks
    la = one_step_lookahead(ad, x, y, xt, yt, weight_fn, lr, reduction=reduction, params=params, reuse=reuse,
                            meta_grad=meta_grad, zero_weights=zero)
    g = torch.cat([t.reshape(-1) for t in meta_gradient(ad, la, wrt)])
    out = {"meta": g, "target_loss": la.target_loss.detach(), "pool_losses": la.pool_losses}
    if reuse:  # the real step back-propagates the lookahead's own pool forward
        opt = torch.optim.SGD(ad.model.parameters(), lr=0.1)
        w = l2rw_like(g) if method == "l2rw" else la.weights.detach()
        reused_step(SimpleNamespace(cost=ad.cost), opt, la, w, reduction)
        out["after"] = torch.cat([p.detach().reshape(-1) for p in ad.model.parameters()])
        out["buffers"] = [b.clone() for b in ad.model.buffers()]
    return out


def l2rw_like(g):
    w = torch.clamp(-g, min=0)
    return w / w.sum().clamp_min(1e-300) * len(w)


def rel_err(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


CASES = [(m, meth, p) for m in MODELS for meth in ("l2rw", "mwnet", "blo") for p in ("all", "head")]


@pytest.mark.parametrize("model,method,params", CASES)
def test_jvp_meta_gradient_equals_the_double_backward(model, method, params):
    ref = run(MODELS[model], method, params, "double_backward")
    new = run(MODELS[model], method, params, "jvp")
    assert ref["meta"].abs().max() > 1e-8, "a real signal, not 0 = 0"
    assert rel_err(new["meta"], ref["meta"]) < TOL, (rel_err(new["meta"], ref["meta"]), new["meta"], ref["meta"])
    assert torch.allclose(new["target_loss"], ref["target_loss"], rtol=1e-12, atol=0)
    assert torch.allclose(new["pool_losses"], ref["pool_losses"], rtol=1e-12, atol=0)
    if "after" in ref:  # the real step (and BatchNorm's one update of its running statistics) alike
        assert rel_err(new["after"], ref["after"]) < TOL
        for a, b in zip(new["buffers"], ref["buffers"]):
            assert torch.allclose(a.double(), b.double(), rtol=1e-10, atol=1e-12)


def test_the_cost_counts_of_each_path():
    """Forwards / backwards (examples) of one lookahead + meta-gradient, as lookahead's docstring says."""
    counts = {}
    for method in ("l2rw", "mwnet", "blo"):
        for mg in ("jvp", "double_backward"):
            torch.manual_seed(0)
            ad, shape = MODELS["mlp"]()
            x, y, xt, yt = batches(shape, torch.Generator().manual_seed(1))
            wrt, fn, red, reuse, zero = weight_model(method, ad, y)
            la = one_step_lookahead(ad, x, y, xt, yt, fn, 0.5, reduction=red, reuse=reuse, meta_grad=mg,
                                    zero_weights=zero)
            meta_gradient(ad, la, wrt)
            counts[method, mg] = (ad.cost.forward, ad.cost.backward)
    for method in ("l2rw", "mwnet", "blo"):
        assert counts[method, "double_backward"] == (B + M, 2 * B + M)
    assert counts["l2rw", "jvp"] == (B + M, M)          # no inner gradient; the pool forward carries the JVP
    assert counts["mwnet", "jvp"] == counts["blo", "jvp"] == (2 * B + M, B + M)  # + the JVP pass, first order


class _NoForwardAD(torch.autograd.Function):
    """An op with no forward-AD formula (like CPU flash attention)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class _Odd(nn.Module):
    def forward(self, x):
        return _NoForwardAD.apply(x)


def test_forward_ad_support_is_probed_and_cpu_flash_attention_is_reported():
    ad, _ = MODELS["mlp"]()
    x = torch.randn(2, 8, dtype=torch.float64)
    assert forward_ad_error(ad, x, torch.tensor([0, 1]), dict(ad.model.named_parameters())) is None
    odd = VisionAdapter(Classifier(nn.Sequential(nn.Linear(8, 4), _Odd()), 4, C).double(), C, CostTracker(), CPU)
    err = forward_ad_error(odd, x, torch.tensor([0, 1]), dict(odd.model.named_parameters()))
    assert err is not None and "jvp" in err.lower(), err

    class Attn(nn.Module):
        def forward(self, h):
            q = h.view(len(h), 1, 2, 2)
            return nn.functional.scaled_dot_product_attention(q, q, q).reshape(len(h), 4)

    sdpa = VisionAdapter(Classifier(nn.Sequential(nn.Linear(8, 4), Attn()), 4, C), C, CostTracker(), CPU)
    err = forward_ad_error(sdpa, x.float(), torch.tensor([0, 1]), dict(sdpa.model.named_parameters()))
    assert err is not None and "forward AD" in err, err


@pytest.mark.parametrize("method", ["l2rw", "mwnet", "blo"])
def test_a_model_without_forward_ad_falls_back_to_the_double_backward_and_says_so(tmp_path, method):
    from test_blo import make_ctx

    ctx, m, opt = make_ctx(tmp_path, method)
    seen = []
    ctx.warn = seen.append
    body = ctx.model.body
    body.append(_Odd())
    m.setup(ctx, opt)  # the probe runs at setup
    assert m.meta_grad == "double_backward"
    assert len(seen) == 1 and "meta_grad=jvp needs forward-mode AD" in seen[0] and "double_backward" in seen[0], seen
    out = m.step(ctx, 1, torch.arange(32), torch.arange(16))
    assert torch.isfinite(out["loss"])
    body.pop(-1)
    m.setup(ctx, opt)
    assert m.meta_grad == "jvp"


# ----------------------------------------------------------------------------- L2RW's bookkeeping on the device


def test_l2rw_stall_is_tracked_on_the_device_and_reported_once_with_its_steps(tmp_path):
    from test_blo import make_ctx

    from selbench.methods.bilevel.l2rw import STALL_STREAK

    ctx, m, _ = make_ctx(tmp_path, "l2rw")
    seen = []
    ctx.warn = seen.append
    pattern = [True] * 5 + [False] + [True] * (STALL_STREAK + 3)  # the first run of 5 is too short
    for step, zero in enumerate(pattern, start=1):
        m._count_zero(step, torch.tensor(zero))
    assert not seen  # nothing read yet: no host synchronisation per step
    m.pool_weights(ctx)
    m.pool_weights(ctx)
    first = 7 + STALL_STREAK - 1
    assert len(seen) == 1 and f"{STALL_STREAK} all-zero batches in a row (steps 7–{first})" in seen[0], seen
    assert f"{5 + STALL_STREAK} so far" in seen[0], seen  # zero batches counted up to that step
    assert int(m.n_zero_batches) == sum(pattern) and int(m.zero_streak) == STALL_STREAK + 3


def test_l2rw_step_returns_device_tensors(tmp_path):
    from test_blo import make_ctx

    ctx, m, _ = make_ctx(tmp_path, "l2rw")
    out = m.step(ctx, 1, torch.arange(32), torch.arange(16))
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.values()), out
    assert m.last_w.device == m.sum_w.device == m.n_drawn.device == torch.device(ctx.device)


def test_l2rw_skip_all_zero_with_adam_leaves_theta_and_a_fresh_optimiser_state(tmp_path):
    """The skipped step is undone by torch.where: θ as before, Adam's state as if never stepped,
    so the next (non-zero) step is the step a fresh Adam would take."""
    from test_blo import make_ctx

    ctx, m, opt = make_ctx(tmp_path, "l2rw", ["method.inner_lr=0.0", "method.skip_all_zero=true",
                                              "runner.optimizer.name=adam", "runner.optimizer.lr=0.01"])
    before = [p.detach().clone() for p in ctx.model.parameters()]
    out = m.step(ctx, 1, torch.arange(32), torch.arange(16))
    assert out["zero_batch"] == 1
    assert all(torch.equal(p, b) for p, b in zip(ctx.model.parameters(), before))
    for p in ctx.model.parameters():
        st = opt.state[p]
        assert float(st["step"]) == 0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()


@pytest.mark.parametrize("params,path", [("all", "jvp"), ("head", "double_backward")])
def test_auto_takes_jvp_for_the_whole_model_and_the_double_backward_for_a_subset(tmp_path, params, path):
    from test_blo import make_ctx

    for method in ("l2rw", "mwnet", "blo"):
        ctx, m, _ = make_ctx(tmp_path, method, [f"method.lookahead_params={params}"])
        assert str(m.cfg.meta_grad) == "auto" and m.meta_grad == path
        assert m.after_training(ctx) == {"meta_grad": path}  # → record["selection"]["meta_grad"]


def test_a_bad_meta_grad_is_rejected_when_the_config_is_composed(tmp_path):
    from conftest import TINY, compose_cfg
    from omegaconf.errors import ValidationError

    with pytest.raises(Exception) as e:
        compose_cfg(TINY + ["method=mwnet", "method.meta_grad=forward"], tmp_path)
    cause = e.value.__cause__ or e.value
    assert isinstance(cause, ValidationError) and "[auto, jvp, double_backward]" in str(cause), str(cause)
