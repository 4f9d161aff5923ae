"""The per-example gradient engine (core/grads.py): exact gradients equal a per-example backward
loop, the blockwise projection is the dense one and keeps inner products (JL), and the
factored (LoGra) projection equals (P_out ⊗ P_in) applied to the exact per-example gradient."""
import pytest
import torch
import torch.nn.functional as F

from selbench.core import grads as G
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError
from selbench.runners.models.language import build_lm
from selbench.runners.models.vision import build_model
from selbench.runners.tasks.language import LanguageAdapter
from selbench.runners.tasks.vision import VisionAdapter


def _vision(hidden=16, classes=3):
    torch.manual_seed(0)
    m = build_model("mlp", (1, 8, 8), classes, hidden=hidden)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0, 2])
    return VisionAdapter(m, classes, CostTracker(), torch.device("cpu")), x, y


def _language():
    torch.manual_seed(0)
    m = build_lm("tiny_gpt", 50, width=16, depth=2, heads=2, context=12)
    x = torch.randint(1, 50, (4, 12))
    y = x.roll(-1, 1).clone()
    y[:, :3] = -100          # prompt positions are not targets
    y[1, 8:] = -100          # a shorter example
    return LanguageAdapter(m, 50, CostTracker(), torch.device("cpu"), pad_id=0), x, y


def _loop(ad, x, y, which, fn):
    """Reference: one ordinary backward per example."""
    params = ad.param_subset(which)
    rows = []
    for i in range(len(x)):
        ad.model.zero_grad()
        xi, yi = x[i:i + 1], y[i:i + 1]
        out = ad.per_example_loss(xi, yi) if fn == "loss" else ad.per_example_output(xi, yi)
        g = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True)
        rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                               for gi, p in zip(g, params.values())]))
    return torch.stack(rows)


@pytest.mark.parametrize("fn", ["loss", "output"])
@pytest.mark.parametrize("task", ["vision", "language"])
def test_engine_gradients_equal_a_per_example_backward_loop(task, fn):
    ad, x, y = _vision() if task == "vision" else _language()
    which = "all" if task == "vision" else "head"
    g = G.per_example_grads(ad, x, y, which, fn)
    torch.testing.assert_close(g, _loop(ad, x, y, which, fn), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ad.per_example_grads(x, y, which, fn), g)  # the adapter delegates to the engine
    exact = ad.grad_features(x, y, G.GradSpec(params=which, fn=fn, proj="none", chunk=4))  # streamed in chunks
    torch.testing.assert_close(exact, g, rtol=1e-5, atol=1e-7)


def test_per_example_output_is_the_batched_scalar_output():
    for ad, x, y in (_vision(), _language()):
        params = dict(ad.model.named_parameters())
        xs, ys = ad.prepare_batch(x, y)
        ref = torch.stack([ad.scalar_output(params, xs[i], ys[i]) for i in range(len(x))])
        torch.testing.assert_close(ad.per_example_output(x, y), ref, rtol=1e-5, atol=1e-5)


def test_blockwise_projection_is_the_dense_one_and_seeded():
    g = torch.randn(5, 1000)
    bp = G.BlockProjector(1000, 64, seed=3, block=128)
    torch.testing.assert_close(bp(g), g @ bp.dense(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(G.BlockProjector(1000, 64, seed=3, block=128, max_cache_bytes=0)(g), bp(g))
    assert not torch.allclose(G.BlockProjector(1000, 64, seed=4, block=128)(g), bp(g))


@pytest.mark.parametrize("proj", ["dense", "factored"])
def test_projected_inner_products_track_the_exact_ones_within_jl_tolerance(proj):
    ad, _, _ = _vision(hidden=64, classes=10)
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    exact = G.per_example_grads(ad, x, y, "linears:all", "loss")
    d = 4096
    feats = ad.grad_features(x, y, G.GradSpec(params="linears:all", proj=proj, dim=d, seed=1))
    K, Kp = exact @ exact.T, feats @ feats.T
    n = exact.norm(dim=1)
    err = (Kp - K).abs() / (n[:, None] * n[None, :])
    # Gaussian JL: std of the normalised error <= sqrt(2/d') (d' = dims per layer product for factored)
    tol = 6 * (2 / (d if proj == "dense" else 400)) ** 0.5
    assert err.max() < tol, (proj, float(err.max()))
    assert feats.shape[1] <= 2 * d


@pytest.mark.parametrize("fn", ["loss", "output"])
@pytest.mark.parametrize("task", ["vision", "language"])
def test_factored_projection_equals_the_dense_kronecker_projection_of_the_exact_gradient(task, fn):
    """(P_out ⊗ P_in) vec([∂W | ∂b]) of the exact per-example gradient, layer by layer; for the
    language model ∂W = Σ_t b_t a_tᵀ over positions, so this also checks the sum over positions."""
    ad, x, y = _vision(hidden=32, classes=10) if task == "vision" else _language()
    x = x if task == "language" else torch.randn(6, 1, 8, 8)
    which = "linears:all" if task == "vision" else "linears:head"
    subset = ad.param_subset(which)
    layers = G.linear_layers(ad.model, subset)
    proj = G.FactoredProjector(layers, dim=40, seed=2)
    assert any(L.p_in is not None for L in proj.layers) and any(L.p_out is not None for L in proj.layers)
    feats = G.factored_features(ad, x, y, proj, fn)
    exact = dict(zip(subset, G.per_example_grads(ad, x, y, which, fn).split([p.numel() for p in subset.values()], 1)))
    names = {id(p): n for n, p in subset.items()}
    ref = []
    for j, L in enumerate(proj.layers):
        gw = exact[names[id(L.module.weight)]].reshape(len(x), L.module.out_features, L.module.in_features)
        if L.bias:
            gw = torch.cat([gw, exact[names[id(L.module.bias)]][..., None]], dim=2)
        ref.append(gw.reshape(len(x), -1) @ proj.dense_layer_matrix(j).T)
    torch.testing.assert_close(feats, torch.cat(ref, 1), rtol=1e-4, atol=1e-5)
    # and the streamed driver gives the same features
    spec = G.GradSpec(params=which, fn=fn, proj="factored", dim=40, seed=2, chunk=4)
    torch.testing.assert_close(ad.grad_features(x, y, spec), feats, rtol=1e-4, atol=1e-6)


def test_factored_refuses_non_linear_parameters_and_lora_linears_are_linear():
    ad, x, y = _language()
    with pytest.raises(ConfigError, match="not Linear"):
        ad.grad_features(x, y, G.GradSpec(params="head", proj="factored"))
    assert all("ln" not in k for k in ad.param_subset("linears:head"))


def test_the_factored_pass_leaves_the_model_untouched():
    ad, x, y = _vision()
    before = {k: v.clone() for k, v in ad.model.state_dict().items()}
    flags = [p.requires_grad for p in ad.model.parameters()]
    ad.model.train()
    ad.grad_features(x, y, G.GradSpec(params="linears:all", dim=16))
    assert ad.model.training and flags == [p.requires_grad for p in ad.model.parameters()]
    assert all(p.grad is None for p in ad.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in ad.model.state_dict().items())
    assert G.model_state_hash(ad.model) == G.model_state_hash(ad.model)
