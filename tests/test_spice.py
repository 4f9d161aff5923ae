"""SPICE and the gradient selectors: exact greedy gains, the conflict penalty doing its job on a
scenario with conflicting sources (label noise), the fill after an early stop, the proxy
restored, and the record's numbers."""
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_cfg, selbench
from selbench.core.cost import CostTracker
from selbench.methods.gradients.features import pool_target_features
from selbench.methods.gradients import spice_online
from selbench.methods.gradients.logdet_greedy import (greedy_logdet, logdet, reference_alpha, selection_quality,
                                                     top_k_gains)
from selbench.methods.registry import get_method
from selbench.runners.run.job import run_job


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_greedy_incremental_gains_equal_logdet_differences(lam):
    torch.manual_seed(0)
    G = torch.randn(300, 24) * 3.0
    a = reference_alpha(G)
    r = greedy_logdet(G, 30, a, lam=lam)
    assert r.n_greedy == 30 and len(set(r.indices.tolist())) == 30
    S = []
    for i, g in zip(r.indices.tolist(), r.pick_gains.tolist()):
        before = logdet(G[S], a)
        S.append(i)
        assert logdet(G[S], a) - before == pytest.approx(g, abs=1e-8)
    if lam == 0:  # the greedy picks the argmax of the exact gain at every step
        S = []
        for i in r.indices.tolist()[:5]:
            base = logdet(G[S], a)
            gains = torch.tensor([logdet(G[S + [j]], a) - base if j not in S else -1 for j in range(len(G))])
            assert int(gains.argmax()) == i
            S.append(i)


def _authors_window(G, k, alpha, lam, omega, diag):
    """An independent reference of the SPICE code's per-window selection (spice/select.py,
    greedy with the conflict penalty; the paper's ω stop on the chosen pick's gain), one candidate
    at a time: diag Fisher ``den += α (|g|·g)²``, or the exact log-det gain."""
    G = G.double()
    den, sel, gains = torch.ones(G.shape[1], dtype=torch.float64), [], []
    for _ in range(k):
        best = None
        for i in range(len(G)):
            if i in sel:
                continue
            g = G[i]
            if diag:
                gain = math.log1p(alpha * float((g * g / den).sum()))
            else:
                gain = logdet(G[sel + [i]], alpha) - logdet(G[sel], alpha)
            pen = 0.0
            if sel:
                c = float(g @ G[sel].mean(0)) / (float(g.norm() * G[sel].mean(0).norm()) + 1e-30)
                pen = lam * abs(c) if c < 0 else 0.0
            if best is None or gain - pen > best[0]:
                best = (gain - pen, gain, i)
        if gains and omega > 0 and best[1] <= omega * gains[0]:
            break
        sel.append(best[2])
        gains.append(best[1])
        if diag:
            den = den + alpha * (G[best[2]].abs() * G[best[2]]) ** 2
    return sel, gains


@pytest.mark.parametrize("diag", [False, True])
def test_a_window_selects_as_the_authors_greedy_with_the_omega_stop_and_no_fill(diag):
    torch.manual_seed(3)
    G = torch.randn(48, 6) * torch.linspace(0.2, 3.0, 48)[:, None]
    a = reference_alpha(G)
    ref, ref_gains = _authors_window(G, 24, a, lam=0.1, omega=0.5, diag=diag)
    r = greedy_logdet(G, 24, a, lam=0.1, tau=0.5, diag=diag, fill=False)
    assert r.indices.tolist() == ref and r.pick_gains.tolist() == pytest.approx(ref_gains, abs=1e-9)
    assert r.stopped_early and len(ref) < 24  # the ω stop binds and nothing fills the window


def test_top_k_rule_is_the_released_ranking_by_first_gain_with_the_omega_stop():
    torch.manual_seed(4)
    G = torch.randn(64, 5) * torch.rand(64, 1) * 4
    a = reference_alpha(G)
    r = top_k_gains(G, 32, a, tau=0.5)
    gain = [math.log1p(a * float((g.double() ** 2).sum())) for g in G]
    order = sorted(range(64), key=lambda i: -gain[i])
    ref = [i for i in order[:32]]
    ref = ref[:next((j for j, i in enumerate(ref) if gain[i] <= 0.5 * gain[ref[0]]), len(ref))]
    assert r.indices.tolist() == ref and r.n_greedy == len(ref) < 32


def test_early_stop_fills_by_top_remaining_score_and_says_how_many_came_from_the_greedy():
    torch.manual_seed(0)
    G = torch.randn(200, 4)   # 4 dims: gains collapse after a few picks
    r = greedy_logdet(G, 50, reference_alpha(G), lam=0.1, tau=0.2)
    assert r.stopped_early and 0 < r.n_greedy < 50 and len(set(r.indices.tolist())) == 50
    rest = torch.ones(200, dtype=torch.bool)
    rest[r.indices[: r.n_greedy]] = False
    fill = r.indices[r.n_greedy:]
    assert r.scores[fill].min() >= r.scores[rest & ~torch.isin(torch.arange(200), fill)].max()


def _ctx(tmp_path, method, overrides=()):
    from selbench.runners.run.context import make_context
    from selbench.runners.tasks import vision

    cfg = compose_cfg(TINY + [f"method={method}", "scenario.noise.rate=0.4", *overrides], tmp_path)
    torch.manual_seed(0)
    cost = CostTracker()
    scen = vision.build_scenario(cfg, 0)
    ad = vision.build_adapter(cfg, scen, cost, torch.device("cpu"))
    ctx = make_context(cfg, scen, ad, cost, method_cls=get_method(method).cls, steps=10)
    return ctx, get_method(method).cls(OmegaConf.to_object(cfg.method))


def test_spice_has_lower_conflict_than_fisher_logdet_and_higher_logdet_than_random(tmp_path):
    """Digits with 40% label noise: noisy examples' gradients point against clean ones.  At equal
    budget and on the same features (the static variant) SPICE's penalty must buy lower pairwise
    conflict than the unpenalised greedy, and both greedy selections must carry more information
    (log-det, same α) than random subsets."""
    ctx, spice = _ctx(tmp_path, "spice", ["method.protocol=static"])
    _, fisher = _ctx(tmp_path, "fisher_logdet")
    s, f = spice.select(ctx), fisher.select(ctx)
    assert len(s.pool_indices) == len(f.pool_indices) == ctx.k_budget
    assert s.info["conflict"] < f.info["conflict"], (s.info["conflict"], f.info["conflict"])
    G = pool_target_features(ctx, spice.cfg)["pool"]
    assert s.info["logdet_alpha"] == f.info["logdet_alpha"] == pytest.approx(reference_alpha(G))
    rand = [selection_quality(G, torch.randperm(ctx.n_pool, generator=torch.Generator().manual_seed(r))[:ctx.k_budget])
            for r in range(5)]
    assert s.info["logdet"] > max(q["logdet"] for q in rand)
    assert f.info["logdet"] >= s.info["logdet"] - 1e-6  # the penalty trades information for agreement
    # and the conflict number is the one recomputed from the features
    assert s.info["conflict"] == pytest.approx(selection_quality(G, s.pool_indices)["conflict"])


def test_the_proxy_warm_up_leaves_the_runner_model_untouched_and_features_are_cached(tmp_path):
    ctx, m = _ctx(tmp_path, "spice", ["cache_dir=" + str(tmp_path / "cache")])
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    a = pool_target_features(ctx, m.cfg)
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    b = pool_target_features(ctx, m.cfg)
    assert not a["cached"] and b["cached"] and torch.equal(a["pool"], b["pool"])
    m.cfg.proj_seed = 1  # a different projection is a different entry
    assert not pool_target_features(ctx, m.cfg)["cached"]


@pytest.mark.parametrize("method", ["spice", "fisher_logdet", "less", "grad_norm"])
def test_gradient_selectors_record_logdet_conflict_and_timings(tmp_path, method):
    rec = run_job(compose_cfg(TINY + [f"method={method}", "runner.steps=4", "runner.eval_every=2", "budget.fraction=0.1"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    sel = rec["selection"]
    for k in ("logdet", "logdet_alpha", "conflict", "grad_seconds", "greedy_seconds", "features_per_second"):
        assert math.isfinite(sel[k]), k
    assert rec["budget_use"] == "hard" and sel["n_selected"] == int(0.1 * rec["scenario_info"]["n_pool"])


def test_spice_online_refreshes_its_proxy_every_T_windows_and_restores_the_model(tmp_path, monkeypatch):
    """The authors' protocol: each window's gradients come from the proxy as it is now, and the proxy
    steps on its own picks every T windows, so the model seen by windows changes exactly at every
    T-th window boundary (never within a block of T)."""
    ctx, m = _ctx(tmp_path, "spice", ["method.window=32", "method.per_window=4", "method.refresh_every=3",
                                      "method.proxy_steps=5"])
    seen, real = [], spice_online.grad_features
    monkeypatch.setattr(spice_online, "grad_features", lambda ad, *a, **k: (
        seen.append(torch.cat([p.detach().reshape(-1).clone() for p in ad.model.parameters()])), real(ad, *a, **k))[1])
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    s = m.select(ctx)
    info = s.info
    assert len(s.pool_indices) == ctx.k_budget == len(set(s.pool_indices.tolist()))
    assert info["n_windows"] == len(seen) >= 7 and info["proxy_updates"] == (len(seen) - 1) // 3
    for w in range(1, len(seen)):
        assert torch.equal(seen[w], seen[w - 1]) == (w % 3 != 0), w
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())


def test_spice_online_windows_stop_at_omega_without_fill_and_stream_until_the_budget(tmp_path):
    ctx, m = _ctx(tmp_path, "spice")
    info = m.select(ctx).info
    assert info["protocol"] == "online" and info["windows_stopped_early"] > 0
    assert info["picks_per_window"] < 64 and info["n_greedy"] == ctx.k_budget
    assert 0 < info["pool_seen"] * ctx.n_pool <= info["n_windows"] * 128


def test_the_default_config_is_the_authors_online_spice_and_less(tmp_path):
    """What `selbench --cfg job` shows: SPICE's online protocol and LESS's max-over-tasks aggregation
    with Adam preconditioning and checkpoints, both warmed up on the pool only."""
    out = selbench("--cfg", "job", "method=spice", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    m = OmegaConf.create(out.stdout).method
    assert (m.protocol, m.rule, m.window, m.per_window, m.omega, m.refresh_every, m.proxy_data) == \
        ("online", "greedy", 128, 64, 0.5, 10, "pool_random")
    m = OmegaConf.create(selbench("--cfg", "job", "method=less", cwd=tmp_path).stdout).method
    assert (m.aggregate, m.preconditioner, m.checkpoints, m.proxy_data, m.proxy_fraction) == \
        ("max", "adam", 4, "pool_random", 0.05)
