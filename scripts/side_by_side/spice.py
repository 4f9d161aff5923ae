"""SPICE side by side with the authors' code, on CPU, same data, model, window order, gradients and seed.

    git clone <the fetch tool's mirror of Chang-pw/SPICE> /tmp/spice_src
    .venv/bin/python scripts/side_by_side/spice.py --authors /tmp/spice_src --seed 0

Not part of the project's code or tests: it imports the authors' ``spice/select.py``
(``greedy_select_with_conflict_penalty``, ``greedy_select_with_metrics``, ``top_k_select``) and
``spice/adafisher.py`` (``compute_per_sample_grads``) and drives them with the control flow of their
``train.py`` main loop (which needs an HF model and ``accelerate``, so it cannot be called as is):
a window of 128 from a permutation, their per-sample gradients of the current proxy, their
selection of up to 64, the picks accumulated, one proxy step every ``update_frequency`` (T = 2
here, so that a short run has proxy updates) windows.  Adapted, and only these: the data (digits
pool without noise, an example is a pool index), the device (CPU), the model (selbench's digits
MLP, warmed up on 5% of the pool as ours, gradients of all its parameters in eval mode), the window
order (ours), the proxy's optimiser step (the harness's optimiser on the mean loss of the picks; their
AdamW sums micro-batch means) and the stop at the run's budget (their loop stops at a step count).
Their code has no exact log-det and no early stop in its penalised path, and uses ``alpha_fisher = 1``;
our side runs the matching variant (``fisher=diag omega=0``, α = 1).  Window level, on four windows
of the warmed-up proxy: every selection path of theirs against ours, and the paper's formula
(exact log-det, ω = 0.5, scale-aware α: our default) against their released penalised path.
Prints the agreement (JSON).
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests"))
_ap = argparse.ArgumentParser()
_ap.add_argument("--authors", required=True)
_ap.add_argument("--seed", type=int, default=0)
_args = _ap.parse_args()
_here = pathlib.Path(__file__).resolve().parent   # this file is spice.py: keep it from shadowing their package
sys.path[:] = [_args.authors] + [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
import torch  # noqa: E402
from scipy.stats import spearmanr
from omegaconf import OmegaConf
from conftest import TINY, compose_cfg
from spice.select import greedy_select_with_conflict_penalty, greedy_select_with_metrics, top_k_select
from spice.adafisher import compute_per_sample_grads
from selbench.core.cost import CostTracker
from selbench.core.grads import grad_features, GradSpec
from selbench.methods.registry import get_method
from selbench.methods.common.proxy import warm_up, train_in_place
from selbench.methods.gradients import spice_online
from selbench.methods.gradients.logdet_greedy import greedy_logdet, top_k_gains
from selbench.runners.run.context import make_context
from selbench.runners.tasks import vision

torch.set_num_threads(1)
SEED = _args.seed
import tempfile  # noqa: E402
tmp = pathlib.Path(tempfile.mkdtemp())
ov = ["method=spice", "scenario.noise.rate=0.0", "method.params=all", "method.projection=none",
      "method.fisher=diag", "method.omega=0", "method.refresh_every=2", "method.proxy_steps=50",
      "budget.fraction=0.4267", f"seed={SEED}"]
cfg = compose_cfg(TINY + ov, tmp)
torch.manual_seed(SEED)
cost = CostTracker()
scen = vision.build_scenario(cfg, SEED)
ad = vision.build_adapter(cfg, scen, cost, torch.device("cpu"))
ctx = make_context(cfg, scen, ad, cost, method_cls=get_method("spice").cls, steps=10)
m = get_method("spice").cls(OmegaConf.to_object(cfg.method))
print("k", ctx.k_budget, "pool", ctx.n_pool)

def ours_online(alpha_abs=True):
    if alpha_abs:  # the authors' alpha_fisher = 1 on raw gradients
        orig = spice_online.reference_alpha
        spice_online.reference_alpha = lambda G: 1.0
    try:
        sel = m.select(ctx)
    finally:
        if alpha_abs:
            spice_online.reference_alpha = orig
    return sel

# --- the authors' train.py loop, re-driven: their per-sample gradients and their selection, our
# model, data, window order and optimiser (train.py itself needs an HF model + accelerate) -------
def authors_online(rule):
    saved = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    opt = ctx.make_optimizer([p for p in ctx.model.parameters() if p.requires_grad])
    gen = torch.Generator().manual_seed(10_007 * SEED + 1)
    warm_up(ctx, m.cfg, gen, opt=opt)
    order = torch.randperm(ctx.n_pool, generator=torch.Generator().manual_seed(10_007 * SEED + 2))
    model = ctx.model
    def fwd(ex):  # data loading adapted: an example is a pool index
        i = torch.tensor(ex)
        return ad.per_example_loss(ctx.pool.x[i], ctx.pool.y[i]).mean()
    picks, acc, cursor, step = [], [], 0, 0
    while len(picks) < ctx.k_budget:
        win = order[cursor:cursor + 128].tolist(); cursor += 128
        model.eval()  # selbench's engine takes gradients in eval mode
        g_list = compute_per_sample_grads(model, win, fwd, lambda: opt.zero_grad(set_to_none=True), "cpu")
        model.train()
        quota = min(64, ctx.k_budget - len(picks))
        if rule == "penalty":
            r = greedy_select_with_conflict_penalty(g_list, 1.0, quota, 0.1, "diag")
        else:
            r = top_k_select(g_list, 1.0, quota, "diag", None)
        kept = [win[j] for j in r["selected"]]
        picks += kept; acc += kept; step += 1
        if step % 2 == 0 and len(picks) < ctx.k_budget:
            train_in_place(ctx, ctx.pool.subset(torch.tensor(acc)), 1, len(acc), gen, opt=opt)
            acc = []
    model.load_state_dict(saved)
    return picks

out = {}
for rule in ("penalty", "top_k"):
    if rule == "top_k":
        m.cfg.rule = "top_k"
    ours = ours_online().pool_indices.tolist()
    theirs = authors_online(rule)
    out[f"online_{rule}"] = {"k": len(ours), "overlap": len(set(ours) & set(theirs)) / len(ours)}
m.cfg.rule = "greedy"

# --- window level: one window's exact gradients of the warmed-up proxy through both codes --------
saved = {k: v.clone() for k, v in ctx.model.state_dict().items()}
warm_up(ctx, m.cfg, torch.Generator().manual_seed(10_007 * SEED + 1))
order = torch.randperm(ctx.n_pool, generator=torch.Generator().manual_seed(99 + SEED))
spec = GradSpec(params="all", proj="none")
res = {"penalty_diag": [], "halflife_greedy": [], "top_k": [], "paper_full_vs_released_diag": []}
for w in range(4):
    win = order[w * 128:(w + 1) * 128]
    G = grad_features(ad, ctx.pool.x[win], ctx.pool.y[win], spec).double()
    gl = list(G)
    a = 1.0
    th = greedy_select_with_conflict_penalty(gl, a, 64, 0.1, "diag")["selected"]
    us = greedy_logdet(G, 64, a, lam=0.1, diag=True, fill=False).indices.tolist()
    res["penalty_diag"].append((len(set(th) & set(us)) / 64, th == us))
    th = greedy_select_with_metrics(gl, a, 64, "diag", 0.5)["selected"]
    us = greedy_logdet(G, 64, a, lam=0.0, tau=0.5, diag=True, fill=False).indices.tolist()
    res["halflife_greedy"].append((len(set(th) & set(us)) / max(len(th), 1), th == us, len(th)))
    t = top_k_select(gl, a, 64, "diag", 0.5)
    ts = dict(t["scores"]); us_r = top_k_gains(G, 64, a, tau=0.5)
    rho = spearmanr([ts[i] for i in range(len(gl))], us_r.scores.tolist()).correlation
    res["top_k"].append((len(set(t["selected"]) & set(us_r.indices.tolist())) / max(len(t["selected"]), 1),
                         t["selected"] == us_r.indices.tolist(), float(rho)))
    # the paper's formula (exact log-det, scale-aware alpha, omega 0.5) vs the released path
    from selbench.methods.gradients.logdet_greedy import reference_alpha
    paper = greedy_logdet(G, 64, reference_alpha(G), lam=0.1, tau=0.5, fill=False).indices.tolist()
    rel = greedy_select_with_conflict_penalty(gl, a, 64, 0.1, "diag")["selected"]
    res["paper_full_vs_released_diag"].append((len(set(paper) & set(rel[:len(paper)])) / max(len(paper), 1), len(paper)))
ctx.model.load_state_dict(saved)
out["window"] = res
print(json.dumps(out))
