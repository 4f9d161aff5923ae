"""SelectIT (Liu, Zeng, Wang, Wong, Chao, Zhang 2024, "SelectIT: Selective Instruction Tuning for
LLMs via Uncertainty-Aware Self-Reflection", NeurIPS; a baseline of the SPICE paper): an
instruction-tuned LM rates each (instruction, response) pair, and the rating's *uncertainty*
discounts it.

- **Token level.**  A rating prompt asks for a score 1…K (K = 5); ``P'_s`` is the LM's next-token
  probability of the digit ``s``, renormalised over the K digits.  With ``S_base = argmax_s P'_s``

      S_token = S_base · 1/(K−1) · Σ_{s=1..K} (P'_{S_base} − P'_s),

  a confident rating (a peaked distribution) keeps its value, a flat one shrinks toward 0.
  (The official code sums over the number of *prompts* instead of K; this follows the paper.)
- **Sentence level.**  ``R`` rating prompts that ask the same question in different words give
  ``S_token^(1..R)``;  ``S_sentence = mean_r S_token^(r) / (1 + α · std_r S_token^(r))``
  (α = 0.2, the paper's).  ``prompts=1`` is the token-level score alone.
- **Model level** (a size-weighted mix of several LMs' scores) is not implemented: one rater.

**Departures.**  The paper rates with LLaMA-2 7B/13B/70B; here the rater is the packaged
SmolLM2-135M-Instruct the runner lends (``ctx.extra["instruct_lm"]``), on CPU, whatever the runner's model — a far
weaker judge (measured in docs/methods/baselines.md and ``tests/test_selection_baselines.py``).
The rating prompts are this project's paraphrases of the paper's (``RATING_PROMPTS``), sent
through the chat template with the assistant's reply opened at ``Score:`` so the next token is
the digit.  The instruction is capped at ``max_tokens/2`` and the response at ``max_tokens`` rater
tokens (their ends cut).  On data
without prompts (document chunks) the prompt asks how well-written and informative the text is
as training data, the same score otherwise (``info["documents"]`` says so).  Top-β by score.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.common.text_lm import decode_pairs, has_prompts, instruct_lm, next_token_probs

RATING_PROMPTS = (
    "Rate from 1 to 5 how accurately and helpfully the response follows the instruction.",
    "On a scale of 1 to 5, score how correct and useful the answer to the given instruction is.",
    "Judge the response to the instruction: give 1 for a wrong or irrelevant reply and 5 for a precise, "
    "helpful one.",
    "How well does the response answer the instruction? Give a score between 1 and 5.",
    "Evaluate the quality of the response to this instruction with one number from 1 (poor) to 5 (excellent).",
)
DOCUMENT_PROMPTS = (
    "Rate from 1 to 5 how well-written and informative the following text is as training data.",
    "On a scale of 1 to 5, score how coherent and useful the following text is.",
    "Judge the text: give 1 for garbled or meaningless text and 5 for clear, informative writing.",
    "How good is the following text as an example of fluent language? Give a score between 1 and 5.",
    "Evaluate the quality of this text with one number from 1 (poor) to 5 (excellent).",
)
LEVELS = 5


@dataclass
class SelectITConfig(MethodConfig):
    prompts: int = 1            # rating prompts R (1 = token level; ≥ 2 adds the sentence level)
    alpha: float = 0.2          # sentence level: mean / (1 + α · std) across prompts
    max_tokens: int = 160       # response cap in rater tokens (the instruction: half of it)
    include_target: bool = True  # train on the selection + the target set (as `random`)


def token_level(p: Tensor) -> Tensor:
    """``[N, K]`` digit probabilities → ``[N]`` S_token (the paper's Token-R)."""
    p = p.double() / p.double().sum(-1, keepdim=True).clamp_min(1e-30)
    best = p.argmax(-1)
    top = p.gather(-1, best[:, None])
    return (best + 1).double() * (top - p).sum(-1) / (p.shape[-1] - 1)


def sentence_level(s: Tensor, alpha: float) -> Tensor:
    """``[N, R]`` token-level scores → ``[N]`` S_sentence (std over prompts, population form)."""
    if s.shape[1] == 1:
        return s[:, 0]
    return s.mean(1) / (1 + float(alpha) * s.std(1, unbiased=False))


def rating_texts(lm, prompts: list[str], responses: list[str], ask: str, documents: bool) -> list[str]:
    _, tok = lm
    out = []
    for q, a in zip(prompts, responses):
        body = f"Text:\n{a}" if documents else f"Instruction:\n{q}\n\nResponse:\n{a}"
        msg = f"{ask}\n\n{body}\n\nReply with the score only."
        chat = tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False, add_generation_prompt=True)
        out.append(chat + "Score: ")
    return out


def selectit_scores(lm, prompts: list[str], responses: list[str], n_prompts: int, alpha: float, max_tokens: int,
                    documents: bool) -> tuple[Tensor, Tensor]:
    """(S_sentence ``[N]``, S_token ``[N, R]``) under the rater ``lm = (model, hf_tokenizer)``."""
    _, tok = lm
    digits = [tok.convert_tokens_to_ids(str(s)) for s in range(1, LEVELS + 1)]
    asks = (DOCUMENT_PROMPTS if documents else RATING_PROMPTS)[:n_prompts]
    # the pair is capped inside the template (instruction to max_tokens/2, response to max_tokens rater
    # tokens, their ends cut), so the rating question and the opened "Score:" reply always stay
    def cut(text: str, n: int) -> str:
        return tok.convert_tokens_to_string(tok.tokenize(text)[:n])

    qs, rs = [cut(q, max_tokens // 2) for q in prompts], [cut(r, max_tokens) for r in responses]
    per = [token_level(next_token_probs(lm, rating_texts(lm, qs, rs, ask, documents), digits,
                                        max_tokens=2 * max_tokens + 256)) for ask in asks]
    s_tok = torch.stack(per, 1) if per else torch.zeros(len(responses), 0)
    return sentence_level(s_tok, alpha), s_tok


@register_method("selectit", config=SelectITConfig)
class SelectIT(Selector):
    budget_use = "hard"
    modalities = ("language",)

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if not 1 <= int(cfg.prompts) <= len(RATING_PROMPTS):
            raise ConfigError(f"method.prompts={cfg.prompts} must be in [1, {len(RATING_PROMPTS)}]")
        if float(cfg.alpha) < 0:
            raise ConfigError(f"method.alpha={cfg.alpha} must be >= 0")
        if int(cfg.max_tokens) < 8:
            raise ConfigError(f"method.max_tokens={cfg.max_tokens} must be >= 8")

    def select(self, ctx: RunContext) -> Selection:
        cfg = self.cfg
        documents = not has_prompts(ctx.pool.y)
        prompts, responses = decode_pairs(ctx, ctx.pool.x, ctx.pool.y, cfg.name)
        score, s_tok = selectit_scores(instruct_lm(ctx, cfg.name), prompts, responses, int(cfg.prompts),
                                       float(cfg.alpha), int(cfg.max_tokens), documents)
        ctx.cost.count(forward=int(cfg.prompts) * ctx.n_pool)
        idx = score.argsort(descending=True, stable=True)[:ctx.k_budget]
        info = {"documents": documents, "prompts": int(cfg.prompts), "score_mean": float(score.mean()),
                "score_std": float(score.std()) if len(score) > 1 else 0.0,
                "prompt_agreement": float(torch.corrcoef(s_tok.T)[0, 1:].mean()) if s_tok.shape[1] > 1 else None}
        return Selection(idx.sort().values, target_repeats=int(cfg.include_target), scores=score.float(), info=info)
