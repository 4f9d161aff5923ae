"""DsDm and its estimator: TRAK scores equal to the ``traker`` package's on the same models,
checkpoints and projection; cached proxies; a clearly positive LDS; DsDm preferring the sources
that help the target; the text baselines preferring target-like text; errors before launch."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from conftest import TINY, compose_cfg
from selbench.core.cache import ArtifactCache
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError
from selbench.core.grads import BlockProjector, FactoredProjector, linear_layers, model_state_hash
from selbench.methods.datamodels import trak
from selbench.methods.datamodels.dsir import log_importance
from selbench.methods.registry import get_method
from selbench.runners.run.job import run_job
from selbench.runners.run.validate import validate_overrides

#: digits, a 16-unit MLP (≈1.2k parameters), 40% label noise: seconds per TRAK model
SMALL = TINY + ["model.hidden=16", "scenario.noise.rate=0.4", "runner.threads=1"]


def _ctx(tmp_path, method, overrides=(), base=SMALL):
    from selbench.runners.run.context import make_context
    from selbench.runners.tasks import task_module

    cfg = compose_cfg(list(base) + [f"method={method}", *overrides], tmp_path)
    runner = task_module(cfg.runner.name)
    torch.manual_seed(0)
    cost = CostTracker()
    scen = runner.build_scenario(cfg, 0)
    ad = runner.build_adapter(cfg, scen, cost, torch.device("cpu"))
    ctx = make_context(cfg, scen, ad, cost, method_cls=get_method(method).cls, steps=int(cfg.runner.steps))
    return ctx, OmegaConf.to_object(cfg.method), scen


def _traker_projector(kind, mcfg, model, n_pool):
    """``traker`` projector applying *our* projection of model ``model_id`` to its per-example gradients."""
    from trak.projectors import AbstractProjector
    from trak.utils import vectorize

    names = [n for n, _ in model.named_parameters()]
    P = sum(p.numel() for p in model.parameters())

    class Same(AbstractProjector):
        def __init__(self):
            super().__init__(P, trak.proj_dim_for(mcfg, n_pool), 0, "normal", "cpu")
            if kind == "factored":
                self.proj_dim = FactoredProjector(linear_layers(model, dict(model.named_parameters())), self.proj_dim).dim

        def project(self, grads, model_id):
            seed = trak.model_spec(mcfg, model_id, n_pool).seed
            if kind == "dense":
                return BlockProjector(P, self.proj_dim, seed)(vectorize(grads, device="cpu"))
            fp = FactoredProjector(linear_layers(model, dict(model.named_parameters())),
                                   trak.proj_dim_for(mcfg, n_pool), seed)
            out = []
            for L in fp.layers:  # (P_out ⊗ P_in) vec([W | b]) = vec(P_out [W | b] P_inᵀ)
                G = grads[f"{L.name}.weight"]
                if L.bias:
                    G = torch.cat([G, grads[f"{L.name}.bias"][..., None]], dim=-1)
                G = G if L.p_out is None else torch.einsum("ko,boi->bki", L.p_out, G)
                G = G if L.p_in is None else torch.einsum("boi,ki->bok", G, L.p_in)
                out.append(G.reshape(len(G), -1))
            assert set(grads) <= set(names)
            return torch.cat(out, dim=1)

    return Same()


@pytest.mark.parametrize("projection", ["dense", "factored"])
def test_trak_scores_agree_with_traker_on_the_same_models_checkpoints_and_projection(tmp_path, projection):
    """``traker`` (fp32, CPU, its functional per-example gradients, score computer and averaging)
    fed our proxy checkpoints and our projection must rank the [pool × target] scores as we do,
    with the same 1 − p per model; with another projection seed the agreement drops (the check
    can fail)."""
    from trak import TRAKer

    ctx, mcfg, _ = _ctx(tmp_path, "dsdm", ["method.n_models=2", f"method.projection={projection}",
                                           "method.proj_dim=64", "method.lam=0", "method.proxy_steps=40",
                                           "method.params=" + ("all" if projection == "dense" else "linears:all")])
    init_hash = model_state_hash(ctx.model)
    feats = trak.model_features(ctx, mcfg)
    ours = trak.trak_scores(feats, 0.0)
    assert model_state_hash(ctx.model) == init_hash  # the runner's model is restored
    states = [ctx.cache.get_or_compute("trak_proxy", trak.proxy_key(ctx, mcfg, m, init_hash),
                                       lambda: pytest.fail("proxy checkpoint not cached")) for m in range(2)]
    tr = TRAKer(model=ctx.model, task="image_classification", train_set_size=ctx.n_pool,
                save_dir=str(tmp_path / "trak"), device="cpu", use_half_precision=False, lambda_reg=0.0,
                projector=_traker_projector(projection, mcfg, ctx.model, ctx.n_pool), logging_level=40)
    X, Y = ctx.pool.x, ctx.pool.y
    for m, st in enumerate(states):
        tr.load_checkpoint(st, model_id=m)
        for i in range(0, len(X), 200):
            tr.featurize(batch=(X[i:i + 200], Y[i:i + 200]), num_samples=len(X[i:i + 200]))
    tr.finalize_features()
    for m, st in enumerate(states):
        tr.start_scoring_checkpoint("target", st, model_id=m, num_targets=len(ctx.target))
        tr.score(batch=(ctx.target.x, ctx.target.y), num_samples=len(ctx.target))
    ref = torch.as_tensor(np.asarray(tr.finalize_scores("target"))).double()
    rho = spearmanr(ref.flatten().numpy(), ours.flatten().numpy()).statistic
    assert ref.shape == ours.shape == (ctx.n_pool, len(ctx.target))
    print(f"spearman vs traker ({projection}): {rho:.6f}")
    assert rho >= 0.95, rho
    for m, f in enumerate(feats):  # the 1 − p term, model by model
        tr.saver.load_current_store(m)
        assert np.allclose(np.asarray(tr.saver.current_store["out_to_loss"])[:, 0], f["q"].numpy(), atol=1e-5)
    mcfg.proj_seed += 1   # another projection of the same checkpoints: the agreement must drop
    other = trak.trak_scores(trak.model_features(ctx, mcfg), 0.0)
    assert spearmanr(ref.flatten().numpy(), other.flatten().numpy()).statistic < 0.9


def test_proxy_checkpoints_and_features_come_from_the_cache_on_a_rerun(tmp_path):
    ctx, mcfg, _ = _ctx(tmp_path, "dsdm", ["method.n_models=2", "method.proxy_steps=20"])
    ctx.cache = ArtifactCache(tmp_path / "cache")
    first = trak.datamodel(ctx, mcfg)
    assert ctx.cache.misses == 4 and ctx.cache.hits == 0   # 2 proxies + 2 feature sets
    again = trak.datamodel(ctx, mcfg)
    assert ctx.cache.hits == 2 and torch.equal(first["scores"], again["scores"])
    assert len(list((tmp_path / "cache" / "trak_proxy").glob("*.pt"))) == 2


def test_trak_config_errors_are_one_line_before_launch():
    for bad, word in [("method.n_models=0", "n_models"), ("method.subset_fraction=1.5", "subset_fraction"),
                      ("method.lam=-1", "lam"), ("method.retrain=-1", "retrain"),
                      ("method.lam_ablation=[0,-1]", "lam_ablation")]:
        with pytest.raises(ConfigError, match=word):
            validate_overrides(["method=lds_subset" if "retrain" in bad or "ablation" in bad else "method=dsdm",
                                "dataset=digits", bad])
    for m in ("dsir", "classifier"):  # text-only methods are refused on vision before anything runs
        with pytest.raises(ConfigError, match=m):
            validate_overrides([f"method={m}", "dataset=digits"])


def test_dsdm_selects_the_helpful_source_above_its_pool_share_and_beats_random(tmp_path):
    """40% of the pool has a wrong label (hurts the clean target): DsDm's subset is mostly clean,
    and the model trained on it has a lower test loss than random's at the same budget."""
    recs = {m: run_job(compose_cfg(SMALL + [f"method={m}"], tmp_path)) for m in ("dsdm", "random")}
    assert all(r["status"] == "ok" for r in recs.values())
    share = {m: r["selection"]["quality"]["clean_weight_share"] for m, r in recs.items()}
    assert share["dsdm"] > 0.6 + 0.15 and share["dsdm"] > share["random"] + 0.1, share
    assert recs["dsdm"]["metrics"]["test_loss"] < recs["random"]["metrics"]["test_loss"]


def test_lds_is_clearly_positive_on_digits(tmp_path):
    """K = 8 retrainings on random halves of the pool, each one an ordinary run; the records feed
    ``analysis.lds``.  (Measured with K = 20: LDS 0.35; docs/methods/dsdm.md.)"""
    from selbench.analysis.lds import lds_groups

    recs = [run_job(compose_cfg(SMALL + ["method=lds_subset", f"method.subset={k}", "budget.fraction=0.5",
                                         "runner.steps=40"], tmp_path)) for k in range(8)]
    assert all(r["status"] == "ok" and r["selection"]["target_repeats"] == 0 for r in recs)
    [row] = lds_groups(recs)
    assert row["subsets"] == 8 and row["targets"] == 100
    assert row["lds_output"] > 0.2 and row["lds_loss"] > 0.2, row


def test_lds_math_signs_and_grouping():
    from selbench.analysis.lds import lds

    rng = np.random.default_rng(0)
    pred = rng.normal(size=(10, 5))
    perfect = lds(pred, 2 * pred + 1, -pred)
    assert perfect["lds_output"] == pytest.approx(1) and perfect["lds_loss"] == pytest.approx(1)
    noise = lds(pred, rng.normal(size=(10, 5)), rng.normal(size=(10, 5)))
    assert abs(noise["lds_output"]) < 0.5 and math.isfinite(noise["lds_mean_loss"])


def _lds_records(pred, out, loss, seed=0, lam=0.01, by_lam=None):
    """``lds_subset`` records as the runner writes them: ``pred`` [K, T], ``out`` / ``loss`` [K, R, T]
    (a NaN row = that retraining is missing); ``by_lam``: {λ: [K, T]} ablation predictions."""
    recs = []
    for k in range(out.shape[0]):
        for r in range(out.shape[1]):
            if np.isnan(out[k, r]).any():
                continue
            sel = {"lds_subset": k, "lds_retrain": r, "lds_predicted": pred[k].tolist(),
                   "lds_actual_output": out[k, r].tolist(), "lds_actual_loss": loss[k, r].tolist()}
            if by_lam is not None:
                sel["lds_predicted_by_lam"] = {repr(float(v)): p[k].tolist() for v, p in by_lam.items()}
            recs.append({"method": "lds_subset", "status": "ok", "seed": seed, "dataset": "synthetic",
                         "scenario": "s", "budget": 0.5, "selection": sel,
                         "config": {"seed": seed, "results_dir": f"/r{r}", "method": {
                             "name": "lds_subset", "subset": k, "retrain": r, "lam": lam, "n_models": 4}}})
    return recs


def _reference_lds(pred, mean_out):
    """Independent reference: Pearson correlation of the ranks, per target, averaged."""
    from scipy.stats import rankdata

    return float(np.mean([np.corrcoef(rankdata(pred[:, t]), rankdata(mean_out[:, t]))[0, 1]
                          for t in range(pred.shape[1])]))


def test_lds_of_averaged_retrainings_beats_one_noisy_retraining_when_the_noise_is_independent():
    """Retrained output = datamodel signal + training noise.  Independent noise per retraining
    averages out (R = 8: the LDS rises well above one retraining's); noise shared by every
    retraining does not (then averaging changes nothing)."""
    from selbench.analysis.lds import lds_groups

    rng = np.random.default_rng(0)
    K, R, T = 30, 8, 40
    pred = rng.normal(size=(K, T))
    for shared in (False, True):
        noise = 2.0 * (np.repeat(rng.normal(size=(K, 1, T)), R, 1) if shared else rng.normal(size=(K, R, T)))
        out = pred[:, None, :] + noise
        [row] = lds_groups(_lds_records(pred, out, np.logaddexp(0, -out)))
        assert row["subsets"] == K and row["retrains"] == R and row["targets"] == T
        assert row["lds_output"] == pytest.approx(_reference_lds(pred, out.mean(1)), abs=1e-12)
        if shared:
            assert row["lds_output"] == pytest.approx(row["lds_output_1"], abs=1e-12)
            assert row["noise_share"] == pytest.approx(0, abs=1e-12)
        else:
            assert row["noise_share"] == pytest.approx(4 / 5, abs=0.05)   # noise var 4, signal var 1
            assert row["lds_output_1"] == pytest.approx(
                np.mean([_reference_lds(pred, out[:, r]) for r in range(R)]), abs=1e-12)
            assert 0.2 < row["lds_output_1"] < 0.6 and row["lds_output"] > row["lds_output_1"] + 0.25, row
            assert row["lds_loss"] > row["lds_loss_1"] + 0.25, row


def test_lds_averages_the_retrainings_present_and_matches_scipy():
    """A subset with a missing retraining is averaged over the ones it has; the score equals
    ``scipy.stats.spearmanr`` on those means."""
    from selbench.analysis.lds import lds_groups

    rng = np.random.default_rng(1)
    pred, out = rng.normal(size=(6, 5)), rng.normal(size=(6, 3, 5))
    out[2, 1] = np.nan
    loss = -out
    [row] = lds_groups(_lds_records(pred, out, loss))
    mean = np.nanmean(out, 1)
    want = np.mean([spearmanr(pred[:, t], mean[:, t]).statistic for t in range(5)])
    assert row["retrains"] == 2 and row["retrains_max"] == 3
    assert row["lds_output"] == pytest.approx(want, abs=1e-12)
    assert row["lds_loss"] == pytest.approx(want, abs=1e-12)   # loss = −output here


def test_lds_rows_per_ridge_with_the_configured_one_for_the_claims():
    from selbench.analysis.lds import lds_groups, lds_table

    rng = np.random.default_rng(2)
    pred, out = rng.normal(size=(5, 4)), rng.normal(size=(5, 2, 4))
    by_lam = {0.0: -pred, 0.01: pred, 1.0: pred + rng.normal(size=pred.shape)}
    recs = _lds_records(pred, out, -out, by_lam=by_lam) + _lds_records(pred, out, -out, seed=1, by_lam=by_lam)
    main = lds_groups(recs)
    assert [(r["seed"], r["lam"], r["configured"]) for r in main] == [(0, 0.01, True), (1, 0.01, True)]
    rows = [r for r in lds_groups(recs, ablation=True) if r["seed"] == 0]
    assert [r["lam"] for r in rows] == [0.0, 0.01, 1.0] and sum(r["configured"] for r in rows) == 1
    by = {r["lam"]: r for r in rows}
    assert by[0.0]["lds_output"] == pytest.approx(-by[0.01]["lds_output"])
    assert by[1.0]["lds_output"] != pytest.approx(by[0.01]["lds_output"])
    assert len(lds_table(recs).data) == 6


def test_lds_subset_retrainings_share_the_subset_and_prediction_but_not_the_training(tmp_path):
    """Retraining 1 of a subset: the same subset and datamodel predictions (every ridge of the
    ablation solved from the same features) as retraining 0, another initialisation and batch
    order, so another trained model."""
    from selbench.methods.datamodels.lds_subset import lam_key

    base = SMALL + ["method=lds_subset", "method.subset=3", "budget.fraction=0.5", "runner.steps=40",
                    "method.n_models=2", "method.proxy_steps=20", "method.lam_ablation=[0,1]"]
    recs = [run_job(compose_cfg(base + [f"method.retrain={r}"], tmp_path)) for r in (0, 1)]
    assert all(r["status"] == "ok" for r in recs)
    a, b = (r["selection"] for r in recs)
    assert a["lds_predicted"] == b["lds_predicted"] and a["lds_predicted_by_lam"] == b["lds_predicted_by_lam"]
    assert set(a["lds_predicted_by_lam"]) == {lam_key(v) for v in (0, 0.01, 1)}
    assert a["lds_predicted_by_lam"][lam_key(0.01)] == a["lds_predicted"]
    assert a["lds_predicted_by_lam"][lam_key(1)] != a["lds_predicted"]
    assert (a["lds_retrain"], b["lds_retrain"]) == (0, 1)
    assert np.abs(np.subtract(a["lds_actual_output"], b["lds_actual_output"])).mean() > 0.05


def test_dsir_log_importance_is_the_count_weighted_log_ratio():
    P = torch.tensor([[2.0, 0, 1], [0, 3, 0]]).to_sparse().coalesce()
    T = torch.tensor([[1.0, 0, 1]]).to_sparse().coalesce()
    p = (torch.tensor([1.0, 0, 1]) + 1) / 5
    q = (torch.tensor([2.0, 3, 1]) + 1) / 9
    want = torch.tensor([[2.0, 0, 1], [0, 3, 0]]) @ (p.log() - q.log())
    assert torch.allclose(log_importance(P, T, 1.0).float(), want, atol=1e-5)


TEXT = ["runner=language", "dataset.genres=[roman,comedies,histories]", "scenario.target_domain=roman",
        "scenario.pool_size=240", "scenario.target_size=24", "scenario.test_size=16", "scenario.seq_len=48",
        "model.width=32", "model.depth=1", "model.heads=2", "model.context=48", "model.tokenizer.max_vocab=512",
        "runner.steps=8", "runner.batch_size=16", "runner.device=cpu", "runner.threads=1", "progress=false",
        "budget.fraction=0.2"]


@pytest.mark.parametrize("method", ["dsir", "classifier", "embed_sim", "dsdm"])
def test_text_selectors_prefer_target_like_text(tmp_path, method):
    """Pool of three Shakespeare genres, target = Roman plays: the selection's Roman share must be
    above the pool's."""
    ctx, mcfg, scen = _ctx(tmp_path, method, ["method.n_models=2", "method.proxy_steps=40"] if method == "dsdm" else [], base=TEXT)
    sel = get_method(method).cls(mcfg).select(ctx)
    dom = scen.truth["domain"]
    roman = scen.class_names.index("roman")
    pool_share = float((dom == roman).float().mean())
    sel_share = float((dom[sel.pool_indices] == roman).float().mean())
    assert len(sel.pool_indices) == ctx.k_budget and sel.scores is not None
    assert sel_share > pool_share + 0.1, (sel_share, pool_share)


@pytest.mark.slow
def test_preset_pretrain_selection_dsdm_beats_random_and_prefers_the_rare_target_source(tmp_path):
    """The language preset, shrunk as in docs/methods/dsdm.md (1,500 chunks, 1,024-token vocabulary,
    100 steps), β = 0.2, seed 0: DsDm's target NLL below random's, and pydoc (a target task, ~5%
    of the pool) selected at more than twice its pool share."""
    base = ["experiment=dsdm/pretrain_selection", "runner.device=cpu", "progress=false", "seed=0", "budget=b020",
            "model.tokenizer.max_vocab=1024", "scenario.pool_size=1500", "runner.steps=100", "runner.eval_every=50",
            "scenario.test_per_task=100"]
    recs = {m: run_job(compose_cfg(base + [f"method={m}"], tmp_path)) for m in ("dsdm", "random")}
    assert all(r["status"] == "ok" for r in recs.values())
    assert recs["dsdm"]["metrics"]["test_nll"] < recs["random"]["metrics"]["test_nll"]
    counts = recs["dsdm"]["scenario_info"]["pool_domain_counts"]
    pool_share = counts["pydoc"] / sum(counts.values())
    assert recs["dsdm"]["selection"]["quality"]["domain_weight_share"]["pydoc"] > 2 * pool_share
