"""Behaviour of the selection baselines of issue 16: ``semdedup``, ``ifd``, ``selectit``, and the
coreset selectors ``herding`` / ``kcenter`` (which share their greedy with the byte-budget
synthesizers ``herding_real`` / ``kcenter_real``).  Numbers quoted in the docstrings were measured
here; docs/methods/baselines.md has the commands."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_cfg
from selbench.core.data import Split
from selbench.core.errors import ConfigError
from selbench.methods.base import RunContext, StepExamples
from selbench.methods.coresets.select import CoresetSelectConfig, class_quotas
from selbench.methods.coresets.herding import Herding, HerdingReal
from selbench.methods.gradients.ifd import AboveOne, rank_ifd, split_rows
from selbench.methods.coresets.kcenter import KCenter, KCenterReal
from selbench.methods.gradients.selectit import selectit_scores, sentence_level, token_level
from selbench.methods.datamodels.semdedup import SemDeDup, SemDeDupConfig
from selbench.methods.common.text_lm import IGNORE, response_nll
from selbench.runners.run.job import run_job
from selbench.runners.run.text_services import instruct_lm
from selbench.runners.run.validate import check_config
from selbench.runners.tasks import task_module

TEXT = ["runner=language", "dataset.genres=[roman,tragedies]", "scenario.target_domain=roman", "scenario.pool_size=64",
        "scenario.target_size=8", "scenario.test_size=16", "scenario.seq_len=32", "model.width=32", "model.depth=1",
        "model.heads=2", "model.context=32", "model.tokenizer.max_vocab=256", "runner.steps=8", "runner.eval_every=4",
        "runner.batch_size=8", "runner.target_batch_size=4", "runner.device=cpu", "runner.threads=1", "progress=false",
        "scale=debug"]
INSTR = ["runner=language", "dataset=instructions", "scenario=instruction_mixture",
         "scenario.pool_size=64", "scenario.seq_len=48", "scenario.target_per_domain=4", "scenario.test_per_domain=8",
         "scenario.val_per_domain=8",
         "model.width=32", "model.depth=1", "model.heads=2", "model.context=48", "model.tokenizer.max_vocab=512",
         "runner.steps=8", "runner.eval_every=4", "runner.batch_size=8", "runner.target_batch_size=4",
         "runner.device=cpu", "runner.threads=1", "progress=false", "scale=debug"]

QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Define the word 'happy'.", "Happy means feeling or showing pleasure or contentment."),
      ("Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b"),
      ("How many days are in a week?", "There are seven days in a week."),
      ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'."),
      ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
      ("Name a fruit that is yellow.", "A banana is a yellow fruit."),
      ("What is 2 + 2?", "2 + 2 equals 4.")]
GENERIC = ["I'm not sure, let me think about it.", "That is a good question.", "Sure, I can help with that.",
           "Thank you for asking.", "I don't know.", "Let me check and get back to you.", "Interesting question!",
           "I can answer that."]
GARBAGE = ["asdf qwer zxcv the the of lorem", "Purple monkey dishwasher seventeen.", "ok",
           "I like turtles and the sea is wet banana.", "zzzz 9 9 9 kk ll", "The moon is made of cheese and spoons.",
           "no no no no no no", "flarp blorp snarg"]


class _Cost:
    def count(self, **kw) -> None:
        pass


def _vision_ctx(x: torch.Tensor, y: torch.Tensor, budget: float, seed: int) -> RunContext:
    return RunContext(pool=Split(x, y), target=Split(x[:0], y[:0]), num_classes=int(y.max()) + 1, modality="vision",
                      adapter=None, budget=budget, seed=seed, generator=torch.Generator().manual_seed(seed),
                      device=torch.device("cpu"), cost=_Cost(), steps=1, examples=StepExamples(64, 0),
                      make_optimizer=None)


def _digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.tensor(d.images, dtype=torch.float32)[idx, None] / 16, torch.tensor(d.target)[idx]


def _auc(hi: torch.Tensor, lo: torch.Tensor) -> float:
    """P(a score of ``hi`` > a score of ``lo``), ties half."""
    d = hi[:, None] - lo[None, :]
    return float((d > 0).double().mean() + 0.5 * (d == 0).double().mean())


# ---------------------------------------------------------------------------------------- semdedup
def test_semdedup_removes_planted_near_duplicates_on_pixels():
    """60 of 300 digits are replaced by near-copies (σ = 1% of the pixel range) of 60 others: with
    the derived ε every planted pair loses one member, and a 50% budget never holds both members of
    a pair, while random draws do (about 15 of 60 pairs at β = 0.5)."""
    x, y = _digits(300, 0)
    g = torch.Generator().manual_seed(1)
    src, dst = torch.arange(60), torch.arange(60, 120)
    x[dst] = (x[src] + 0.01 * torch.randn(x[src].shape, generator=g)).clamp(0, 1)
    y[dst] = y[src]
    ctx = _vision_ctx(x, y, 0.5, 0)
    sel = SemDeDup(SemDeDupConfig(name="semdedup")).select(ctx)
    chosen = torch.zeros(300, dtype=torch.bool)
    chosen[sel.pool_indices] = True
    assert len(sel.pool_indices) == ctx.k_budget
    assert int((chosen[src] & chosen[dst]).sum()) == 0
    assert 240 - 12 <= sel.info["n_survivors"] <= 240  # every planted copy dropped, ≤ 5% of the rest
    draws = (torch.randperm(300, generator=torch.Generator().manual_seed(s))[:150] for s in range(5))
    both_random = [int((m[src] & m[dst]).sum()) for m in
                   (torch.zeros(300, dtype=torch.bool).index_fill_(0, d, True) for d in draws)]
    assert min(both_random) > 0


def test_semdedup_drops_exact_copies_in_a_text_pool(tmp_path):
    """The text scenario's own duplication (25% of pool slots overwritten by copies), MiniLM
    embeddings: the selection holds no two identical rows; random at the same budget does."""
    over = TEXT + ["scenario.duplication={rate: 0.25}", "budget.fraction=0.5"]
    cfg = compose_cfg(over + ["method=semdedup"], tmp_path)
    rec = run_job(cfg)
    assert rec["status"] == "ok", rec.get("reason")
    pool = task_module("language").build_scenario(cfg, int(cfg.seed)).pool

    def identical_pairs(weights: np.ndarray) -> int:
        rows = [tuple(pool.x[i].tolist()) for i in np.flatnonzero(weights > 0)]
        return len(rows) - len(set(rows))

    w = np.load(Path(rec["run_dir"]) / "selection.npz")["pool_weights"]
    assert identical_pairs(w) == 0 and rec["selection"]["n_survivors"] < len(pool)
    rnd = run_job(compose_cfg(over + ["method=random"], tmp_path))
    assert identical_pairs(np.load(Path(rnd["run_dir"]) / "selection.npz")["pool_weights"]) > 0


def test_semdedup_refuses_bad_values_before_launch():
    with pytest.raises(ConfigError, match="method.eps=2.5"):
        check_config(compose_cfg(["dataset=digits", "method=semdedup", "method.eps=2.5"]))


# --------------------------------------------------------------------------------------------- ifd
def test_ifd_scores_the_same_response_tokens_with_and_without_the_instruction():
    # prompt of 3 tokens (targets masked), response 5 6 7 8, right padding
    x = torch.tensor([[1, 2, 3, 5, 6, 7, 0, 0]])
    y = torch.tensor([[IGNORE, IGNORE, 5, 6, 7, 8, IGNORE, IGNORE]])
    y_cond, x_alone, y_alone, n = split_rows(x, y, pad_id=0)
    assert y_cond.tolist() == [[IGNORE, IGNORE, IGNORE, 6, 7, 8, IGNORE, IGNORE]]
    assert x_alone[0, :3].tolist() == [5, 6, 7] and y_alone[0, :3].tolist() == [6, 7, 8] and int(n) == 3
    assert sorted(y_cond[y_cond != IGNORE].tolist()) == sorted(y_alone[y_alone != IGNORE].tolist())


def test_ifd_ranks_above_one_last_as_the_paper_filters_them():
    ifd = torch.tensor([0.2, 0.9, 1.5, 1.05, float("nan"), 0.5])
    assert rank_ifd(ifd, AboveOne.drop).tolist() == [1, 5, 0, 3, 2, 4]
    assert rank_ifd(ifd, AboveOne.keep).tolist() == [2, 3, 1, 5, 0, 4]


@pytest.fixture(scope="module")
def smollm2_ifd():
    lm = instruct_lm()
    prompts = [q for q, _ in QA]
    answers = [a for _, a in QA]
    swapped = answers[3:] + answers[:3]
    cond, alone = response_nll(lm, prompts * 3, answers + GENERIC + swapped)
    ifd = cond / alone
    return ifd[:8], ifd[8:16], ifd[16:]


def test_ifd_ranks_instruction_independent_responses_above_answer_bearing_ones(smollm2_ifd):
    """What IFD measures (SmolLM2-135M-Instruct as the scorer): the instruction helps an
    answer-bearing response most, so its IFD is *lowest*.  Measured: answer-bearing 0.05–0.45
    (mean 0.32), generic 0.21–0.89 (mean 0.60), another question's answer 0.68–1.26 (mean 0.88,
    2 of 8 above 1, dropped first by the paper's filter)."""
    answer, generic, swapped = smollm2_ifd
    assert torch.isfinite(torch.cat(smollm2_ifd)).all()
    assert _auc(generic, answer) >= 0.65 and _auc(swapped, answer) >= 0.9
    assert (swapped > 1).any() and not (answer > 1).any()


@pytest.mark.xfail(strict=True, reason="IFD rates how little the instruction helps: an answer-bearing response "
                                       "gets the LOWEST IFD (AUC of answer over generic 0.28 with SmolLM2-135M)")
def test_ifd_ranks_answer_bearing_responses_above_generic_ones_as_issue_16_expects(smollm2_ifd):
    answer, generic, _ = smollm2_ifd
    assert _auc(answer, generic) > 0.5


def test_ifd_is_refused_before_launch_on_text_without_instructions():
    with pytest.raises(ConfigError, match="method=ifd needs instruction/response pairs.*dataset=shakespeare"):
        check_config(compose_cfg(TEXT + ["method=ifd"]))


def test_ifd_runs_on_an_instruction_mixture_at_its_budget(tmp_path):
    rec = run_job(compose_cfg(INSTR + ["method=ifd", "budget.fraction=0.25"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["budget_use"] == "hard" and rec["selection"]["effective_budget"] == pytest.approx(0.25, abs=0.02)
    assert rec["selection"]["scorer"] == "proxy" and 0.2 < rec["selection"]["ifd_mean"] < 5


# ---------------------------------------------------------------------------------------- selectit
def test_selectit_token_and_sentence_levels_follow_the_paper():
    p = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0],    # certain 5 → 5 · 1 = 5
                      [0.2, 0.2, 0.2, 0.2, 0.2],    # flat → 0
                      [0.1, 0.1, 0.1, 0.1, 0.6]])   # 5 · (4 · 0.5)/4 = 2.5
    assert token_level(p).tolist() == pytest.approx([5.0, 0.0, 2.5])
    s = torch.tensor([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    out = sentence_level(s, 0.2)
    assert out[0] == pytest.approx(2.0) and out[1] == pytest.approx(2.0 / (1 + 0.2 * (2 / 3) ** 0.5))


@pytest.fixture(scope="module")
def smollm2_selectit():
    lm = instruct_lm()
    prompts = [q for q, _ in QA] * 2
    score, s_tok = selectit_scores(lm, prompts, [a for _, a in QA] + GARBAGE, 1, 0.2, 160, False)
    return score[:8], score[8:]


def test_selectit_scores_are_finite_ratings(smollm2_selectit):
    good, garbage = smollm2_selectit
    s = torch.cat([good, garbage])
    assert torch.isfinite(s).all() and (s >= 0).all() and (s <= 5).all() and s.std() > 0


@pytest.mark.xfail(strict=True, reason="SmolLM2-135M-Instruct is not a usable judge here: its digit distribution is "
                                       "nearly flat and barely content-dependent (AUC of good over garbage 0.64 "
                                       "with 1 prompt, 0.55 with 3; 8 vs 8 pairs)")
def test_selectit_rates_a_clearly_better_response_above_garbage(smollm2_selectit):
    good, garbage = smollm2_selectit
    assert _auc(good, garbage) >= 0.8


@pytest.mark.slow
def test_selectit_runs_on_document_chunks_with_the_document_prompts(tmp_path):
    rec = run_job(compose_cfg(TEXT + ["method=selectit"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["selection"]["documents"] is True


# ------------------------------------------------------------------------------ herding / kcenter
def test_class_quotas_add_up_and_cover_every_class_the_budget_allows():
    counts = torch.tensor([50, 3, 0, 20, 1])
    g = torch.Generator().manual_seed(0)
    q = class_quotas(counts, 10, g)
    assert int(q.sum()) == 10 and (q[counts > 0] >= 1).all() and q[2] == 0 and (q <= counts).all()
    assert int(class_quotas(counts, 2, g).sum()) == 2 and class_quotas(counts, 2, g)[[0, 3]].tolist() == [1, 1]
    assert class_quotas(counts, 1000, g).tolist() == counts.tolist()


@pytest.mark.parametrize("cls", [Herding, KCenter])
def test_coreset_selectors_cover_the_classes_better_than_random_at_a_tiny_budget(cls):
    """10 of 400 digits (β = 2.5%), 3 seeds, features of a ConvNet trained 30 steps.  Class-balanced
    (the default) covers all 10 classes; the greedy alone (``balance=false``) still covers more than
    random.  Measured at 100 embed steps, 5 seeds: herding 7.4, k-center 9.2, random 5.4 classes."""
    assert cls.order is {Herding: HerdingReal, KCenter: KCenterReal}[cls].order  # one greedy, two budgets
    covered = {True: [], False: [], "random": []}
    for seed in range(3):
        x, y = _digits(400, seed)
        for balance in (True, False):
            ctx = _vision_ctx(x, y, 10 / 400, seed)
            sel = cls(CoresetSelectConfig(name=cls.__name__.lower(), embed_steps=30, balance=balance)).select(ctx)
            assert len(sel.pool_indices) == 10
            covered[balance].append(len(y[sel.pool_indices].unique()))
        rnd = torch.randperm(400, generator=torch.Generator().manual_seed(seed))[:10]
        covered["random"].append(len(y[rnd].unique()))
    assert covered[True] == [10, 10, 10]
    assert np.mean(covered[False]) > np.mean(covered["random"])
