"""IFD, instruction-following difficulty (Li, Zhang, Li, Chen, Chen, Wang, Wang, Zhou, Xiao 2024,
"From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for
Instruction Tuning", NAACL; a baseline of the SPICE paper): for an instruction ``Q`` and its
response ``A = (a_1 … a_n)`` under a scoring LM θ,

    IFD_θ(Q, A) = s_θ(A | Q) / s_θ(A),   s_θ(A | Q) = −1/n Σ_t log p_θ(a_t | Q, a_<t),
                                          s_θ(A)     = −1/n Σ_t log p_θ(a_t | a_<t).

A high IFD means the instruction helps little to produce the response (a hard, informative pair);
the paper keeps the top-β by IFD.  **IFD > 1** means the response is *less* likely given the
instruction than alone; the paper reads such pairs as misaligned and filters them out.  Here
(``above_one=drop``, the default) they are ranked after every pair with IFD ≤ 1 (closest to 1
first) and only used when the others cannot fill the budget (a warning says so);
``above_one=keep`` ranks by IFD alone.

**Scoring model** (``scorer``):

- ``proxy`` (default): the runner's model warmed up in place on a random ``proxy_fraction`` of
  the pool (``proxy_data``; the paper's brief experience is pool data only, so the target set is
  not in it unless ``proxy_data=both``) for ``proxy_steps`` steps, then restored exactly — the warm-up of
  the SPICE selectors (``methods/gradients/features.py``), standing in for the paper's "brief
  experience" model (1 epoch on 1,000 pool pairs chosen by k-means clusters; here a random subset);
- ``model``: the runner's model as it is (with ``model=smollm2`` this is the pretrained LM,
  the paper's setting of a pretrained base model);
- ``smollm2``: the packaged SmolLM2-135M-Instruct the runner lends (``ctx.extra["instruct_lm"]``)
  on the decoded text (chat-formatted prompt), whatever the runner's model.

**Token accounting.**  Both losses average over the *same* tokens: the response tokens after the
first (the unconditioned pass has no context to predict ``a_1`` from), so the ratio compares like
with like; the paper's code scores ``a_1`` in the conditioned pass only.

**Scenarios.**  IFD is undefined without an instruction: on data without prompt/response pairs
(``dataset=shakespeare`` / ``corpus``, or ``scenario=pretrain_selection``, which joins pairs into
documents) the run is refused before launch with one line; a ``textfile`` without prompt records
is refused when the pool is seen (``ConfigError``, the run is recorded as failed).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.modes import eval_mode
from selbench.methods.base import MethodConfig, RunContext, RunSettings, Selection, Selector
from selbench.methods.common.proxy import ProxyData, warm_up
from selbench.methods.registry import register_method
from selbench.methods.common.text_lm import IGNORE, decode_pairs, has_prompts, instruct_lm, prompt_lengths, response_nll

#: datasets whose records can be prompt/response pairs (textfile: when its JSONL has "prompt")
PAIR_DATASETS = ("instructions", "textfile")


class Scorer(str, Enum):
    proxy = "proxy"
    model = "model"
    smollm2 = "smollm2"


class AboveOne(str, Enum):
    drop = "drop"   # the paper: IFD > 1 is misaligned; ranked last, used only to fill the budget
    keep = "keep"


@dataclass
class IFDConfig(MethodConfig):
    scorer: Scorer = Scorer.proxy
    proxy_steps: int = 100
    proxy_data: ProxyData = ProxyData.pool_random
    proxy_fraction: float = 0.05
    above_one: AboveOne = AboveOne.drop
    include_target: bool = True   # train on the selection + the target set (as `random`)


def check_instruction_data(name: str, run_cfg) -> None:
    """One line before launch when the run's data cannot have prompt/response pairs."""
    if run_cfg is None or RunSettings.of(run_cfg).runner != "language":
        return
    ds, kind = str(run_cfg.dataset.get("name")), str(run_cfg.scenario.get("kind", run_cfg.scenario.get("name")))
    if ds not in PAIR_DATASETS or kind == "pretrain_selection":
        raise ConfigError(f"method={name} needs instruction/response pairs, but dataset={ds} scenario={kind} has "
                          f"none (use dataset=instructions or a textfile of prompt/response records, with "
                          f"scenario=instruction_mixture or domain_mixture)")


def split_rows(x: Tensor, y: Tensor, pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(conditioned y, response-alone x, response-alone y, #scored tokens): both score the response
    tokens after the first."""
    p = prompt_lengths(y)
    y_cond = y.clone()
    x_alone = torch.full_like(x, pad_id)
    y_alone = torch.full_like(y, IGNORE)
    for i in range(len(y)):
        y_cond[i, int(p[i])] = IGNORE          # a_1: not scorable without the instruction
        r = y[i, int(p[i]):]
        r = r[r != IGNORE]
        x_alone[i, :len(r) - 1], y_alone[i, :len(r) - 1] = r[:-1], r[1:]
    return y_cond, x_alone, y_alone, (y_alone != IGNORE).sum(1)


@torch.no_grad()
def runner_losses(ctx: RunContext, chunk: int = 256) -> tuple[Tensor, Tensor]:
    pad = int(getattr(ctx.adapter, "pad_id", 0))
    cond, alone = [], []
    with eval_mode(ctx.model):
        for i in range(0, ctx.n_pool, chunk):
            x, y = ctx.pool.x[i:i + chunk], ctx.pool.y[i:i + chunk]
            y_cond, x_a, y_a, n = split_rows(x, y, pad)
            c = ctx.adapter.per_example_loss(x, y_cond).float().cpu()
            a = ctx.adapter.per_example_loss(x_a, y_a).float().cpu()
            cond.append(torch.where(n > 0, c, torch.nan))
            alone.append(torch.where(n > 0, a, torch.nan))
    return torch.cat(cond), torch.cat(alone)


def rank_ifd(ifd: Tensor, above_one: AboveOne) -> Tensor:
    """Pool positions best first: IFD ≤ 1 descending, then (drop) IFD > 1 ascending, NaN last."""
    finite = torch.isfinite(ifd)
    key = torch.where(finite, ifd.double(), torch.tensor(float("-inf"), dtype=torch.float64))
    if above_one is AboveOne.drop:
        over = finite & (ifd > 1)
        key = torch.where(over, -1.0 - key, key)   # after every IFD ≤ 1 (≥ 0); nearer 1 first
    return key.argsort(descending=True, stable=True)


@register_method("ifd", config=IFDConfig)
class IFD(Selector):
    budget_use = "hard"
    modalities = ("language",)
    #: refused (ConfigError before launch) on text without prompt/response pairs: tests read this
    needs_instruction_pairs: ClassVar[bool] = True

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.proxy_steps) < 0:
            raise ConfigError(f"method.proxy_steps={cfg.proxy_steps} must be >= 0")
        if not 0.0 < float(cfg.proxy_fraction) <= 1.0:
            raise ConfigError(f"method.proxy_fraction={cfg.proxy_fraction} must be in (0, 1]")
        check_instruction_data(str(cfg.name), run_cfg)

    def select(self, ctx: RunContext) -> Selection:
        cfg = self.cfg
        if not has_prompts(ctx.pool.y):
            raise ConfigError(f"method={cfg.name} needs instruction/response pairs, but no pool example has a "
                              f"prompt (a textfile of documents?)")
        scorer = Scorer(cfg.scorer)
        if scorer is Scorer.smollm2:
            prompts, responses = decode_pairs(ctx, ctx.pool.x, ctx.pool.y, cfg.name)
            cond, alone = response_nll(instruct_lm(ctx, cfg.name), prompts, responses)
            ctx.cost.count(forward=2 * ctx.n_pool)
        elif scorer is Scorer.proxy:
            saved = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
            try:
                warm_up(ctx, cfg, torch.Generator().manual_seed(10_007 * int(ctx.seed) + 1))
                cond, alone = runner_losses(ctx)
            finally:
                ctx.model.load_state_dict(saved)
        else:
            cond, alone = runner_losses(ctx)
        ifd = cond / alone
        order = rank_ifd(ifd, AboveOne(cfg.above_one))
        k = ctx.k_budget
        n_ok = int((torch.isfinite(ifd) & ((ifd <= 1) | (AboveOne(cfg.above_one) is AboveOne.keep))).sum())
        if n_ok < k:
            ctx.warn(f"ifd: only {n_ok} pool pairs have a usable IFD (finite, <= 1 with above_one=drop) for a "
                     f"budget of {k}; the rest filled with IFD > 1 nearest 1, then unscorable pairs")
        fin = ifd[torch.isfinite(ifd)]
        info = {"scorer": scorer.value, "ifd_mean": float(fin.mean()) if len(fin) else None,
                "ifd_above_one": float((fin > 1).float().mean()) if len(fin) else None,
                "n_unscorable": int((~torch.isfinite(ifd)).sum())}
        scores = torch.nan_to_num(ifd, nan=0.0, posinf=0.0).float()
        return Selection(order[:k].sort().values, target_repeats=int(cfg.include_target), scores=scores, info=info)
