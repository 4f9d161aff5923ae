"""The BADS paper's score-based baselines (cds, classact, askllm): each prefers what it should
on a scenario built to show it, keeps the harness's equal examples per step, and refuses bad
values before launch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, compose_cfg
from selbench.core.errors import ConfigError
from selbench.methods.bads.score_filter import keep_probability
from selbench.runners.run.job import run_job
from selbench.runners.run.validate import validate_overrides
from selbench.runners.tasks.metrics import auc

#: a seconds-long text domain mixture whose domains differ in kind (plays vs Python docs vs code):
#: target = Shakespeare, the rest of the pool is off-domain
CORPUS = ["runner=language", "dataset=corpus", "dataset.sources=[shakespeare,pydoc,humaneval]",
          "dataset.max_docs_per_source=120", "scenario=domain_mixture", "scenario.target_domain=shakespeare",
          "scenario.pool_size=240", "scenario.target_size=16", "scenario.test_size=32", "scenario.val_size=16",
          "scenario.seq_len=32", "model.width=32", "model.depth=1", "model.heads=2", "model.context=32",
          "model.tokenizer.max_vocab=512", "runner.steps=40", "runner.eval_every=40", "runner.batch_size=16",
          "runner.target_batch_size=8", "runner.device=cpu", "runner.threads=1", "progress=false", "budget=b020"]

#: instruction pairs; target = WordNet definitions, pool also chatterbot, humaneval and fortunes
INSTRUCTIONS = ["runner=language", "dataset=instructions", "dataset.sources=[wordnet,humaneval,chatterbot,fortunes]",
                "scenario=instruction_mixture", "scenario.target_domains=[wordnet]", "scenario.target_per_domain=8",
                "scenario.pool_size=48", "scenario.test_per_domain=16", "scenario.val_per_domain=8",
                "scenario.seq_len=48", "scenario.choices=0", "model.width=32", "model.depth=1", "model.heads=2",
                "model.context=48", "model.tokenizer.max_vocab=512", "runner.steps=4", "runner.eval_every=4",
                "runner.batch_size=8", "runner.target_batch_size=4", "runner.device=cpu", "runner.threads=1",
                "progress=false", "budget=b020"]


def _npz(rec) -> dict:
    return dict(np.load(Path(rec["run_dir"]) / "selection.npz"))


def _in_domain_auc(rec) -> float:
    z = _npz(rec)
    return auc(torch.as_tensor(z["pool_weights"]), torch.as_tensor(z["truth_in_target_domain"]).bool())


def test_cds_prefers_in_domain_text_over_off_domain_text(tmp_path):
    rec = run_job(compose_cfg(CORPUS + ["method=cds"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    q = rec["selection"]["quality"]
    assert _in_domain_auc(rec) > 0.8, q
    assert q["in_target_domain_weight_share"] > 1.5 * q["in_target_domain_pool_fraction"], q


@pytest.mark.slow  # the 135M asker reads 48 prompts: about a minute on a busy 2-core machine
@pytest.mark.parametrize("online", [False, True])
def test_askllm_prefers_in_domain_text_over_off_domain_text(tmp_path, online):
    """The asker (SmolLM2-135M-Instruct) is run once: the second case reads its cached scores.
    Offline the weights are the 0/1 top-β selection (its AUC is capped by the budget), so the
    check is its in-domain share; online they are keep probabilities, a smooth function of the
    score's rank, so their AUC is the score's."""
    cache = tmp_path.parent / "askllm_cache"
    rec = run_job(compose_cfg(INSTRUCTIONS + ["method=askllm", f"method.online={str(online).lower()}",
                                              f"cache_dir={cache}"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    q = rec["selection"]["quality"]
    if online:
        assert _in_domain_auc(rec) > 0.75, q
    assert q["in_target_domain_weight_share"] > 1.5 * q["in_target_domain_pool_fraction"], q
    assert rec["compute"]["train_examples_per_step"] == 8  # runner.batch_size, offline or online


def test_classact_scores_separate_learnable_from_label_noise(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=classact"], tmp_path))  # digits, 50% symmetric label noise
    assert rec["status"] == "ok", rec.get("reason")
    z = _npz(rec)
    clean = torch.as_tensor(z["truth_is_clean"]).bool()
    assert auc(torch.as_tensor(z["scores"]), clean) > 0.85
    assert rec["selection"]["quality"]["clean_weight_share"] > 0.8  # the top 20% are mostly clean


@pytest.mark.parametrize("match,expect", [("true", 64), ("false", None)])
def test_cds_trains_on_the_harness_batch_per_step(tmp_path, match, expect):
    """Under runner.match_examples every step keeps runner.batch_size examples of the scored batch
    (as many as every other method trains on); without it the paper's round(β·L) of L = ⌈B/β⌉."""
    rec = run_job(compose_cfg(TINY + ["method=cds", "budget.fraction=0.3", f"runner.match_examples={match}"],
                              tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    c = rec["compute"]
    L = int(np.ceil(64 / 0.3))
    k = expect if expect is not None else round(0.3 * L)
    assert c["train_examples_per_step"] == k and c["train_examples"] == k * rec["steps"]
    assert rec["selection"]["effective_budget"] == pytest.approx(k / L)
    assert rec["curve"][-1]["train_n_kept"] == k


def test_cds_scores_rank_clean_labels_above_noisy_ones(tmp_path):
    rec = run_job(compose_cfg(TINY + ["method=cds"], tmp_path))
    assert rec["selection"]["quality"]["auc_clean_vs_corrupted"] > 0.8


def test_keep_probability_is_the_exact_keep_rate_of_top_k_of_a_random_batch():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(60, generator=g)
    p = keep_probability(s, 20, 5)
    kept, drawn = torch.zeros(60), torch.zeros(60)
    for _ in range(4000):
        b = torch.randperm(60, generator=g)[:20]
        drawn[b] += 1
        kept[b[torch.topk(s[b], 5).indices]] += 1
    assert torch.allclose(p.float(), kept / drawn, atol=0.04)
    assert float(p.sum()) * 20 / 60 == pytest.approx(5, abs=1e-6)  # k kept per batch of L


@pytest.mark.parametrize("overrides,match", [
    (["method=classact", "method.folds=1"], "method.folds=1"),
    (["method=classact", "method.early_fraction=1.5"], "method.early_fraction=1.5"),
    (["method=cds", "method.adapt_epochs=0"], "method.adapt_epochs=0"),
    (["method=cds", "method.large_batch=8"], "method.large_batch=8"),
    (["runner=language", "method=askllm", "method.prompt=nothing"], "must contain the placeholder"),
    (["method=askllm", "dataset=digits"], "does not support the vision runner"),
])
def test_a_bad_value_is_one_line_before_launch(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_overrides(overrides)
