"""Ask-LLM: ask an instruction-tuned LM whether an example is useful (Sachdeva et al., *How to
Train Data-Efficient LLMs*, 2024), the "AskLLM-O" baseline of the BADS paper. The asker is
the packaged SmolLM2-135M-Instruct (lent by the runner as ``ctx.extra["instruct_lm"]``).
Docs: ``docs/methods/baselines.md`` (AskLLM).

**Score.**  For each pool example ``z`` (its text, ``ctx.extra["texts"]``) the asker gets one
chat turn (``DEFAULT_PROMPT``: ``shots`` target examples as the task description, the
candidate, and the question "Is this text similar to the examples? yes or no"), and

    score(z) = P(yes) / (P(yes) + P(no))

from the next-token distribution after the assistant tag, summing the first-token
probabilities of ``yes``/``Yes``/`` yes``/`` Yes`` and of the same forms of ``no``.
Texts are cut to ``max_chars`` characters (prompt length sets the cost of a 135M model on
CPU).

**Selection.**  ``online=false`` (default): the top ``⌊β·N_pool⌋`` by score, trained on with
the target set (``include_target``, as ``random``), batches of ``runner.batch_size``.
``online=true`` (AskLLM-O): each step draws a scored batch and keeps its top fraction
(``methods/bads/score_filter.py``; ``k`` = the runner's batch under equal compute, ``ctx.kept_count``).

Departures: Sachdeva et al. ask a large LM a fixed *quality* question ("informative
signal for pre-training"); the BADS paper asks about usefulness for the target tasks.
Here the target task is described by ``shots`` of its own examples, since the scenarios
carry no task name, and the default question asks for similarity to them: the 135M
asker answered it better than a usefulness question (``DEFAULT_PROMPT``'s measurements);
``method.prompt`` takes any other wording. The asker is frozen, so re-scoring a batch returns the score it got
before: the online variant scores the pool once (cached) and differs from the offline one
only in *which* examples it keeps (the top of each batch rather than of the pool). The
asker's forward passes are not counted as the task model's (``cost.forward``); their time
is the ``select`` phase. Scores are cached through ``ctx.cache`` keyed by the prompt, the
shots, ``max_chars``, the data and the tokenizer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.grads import data_fingerprint
from selbench.core.sampling import CyclicSampler
from selbench.methods.base import MethodConfig, RunContext, weighted_step
from selbench.methods.registry import register_method
from selbench.methods.bads.score_filter import ScoreFilter

#: one user turn; ``{shots}`` = the target examples, ``{example}`` = the candidate. Measured with the
#: 135M asker on 48 pool examples of the instruction mixture (target: wordnet definitions; pool also
#: chatterbot, humaneval, fortunes), AUC of the score for in- vs off-target-domain: this wording 0.93,
#: "Is the following candidate useful training data for this task?" (question before the candidate)
#: 0.81, "…the same kind of text as these examples?" 0.83. With target chatterbot every wording was
#: at chance (0.48-0.53): a 135M asker separates only stark domain differences.
DEFAULT_PROMPT = "Examples:\n{shots}\n\nText: {example}\n\nIs this text similar to the examples? Answer yes or no."
YES, NO = ("yes", "Yes", " yes", " Yes"), ("no", "No", " no", " No")


@dataclass
class AskLLMConfig(MethodConfig):
    #: false: top-β of the pool (offline); true: top-β of each drawn batch (AskLLM-O)
    online: bool = False
    prompt: str = DEFAULT_PROMPT
    #: target examples shown as the task description (the first ``shots`` of a seeded shuffle)
    shots: int = 2
    #: characters kept of each text (candidate and shots)
    max_chars: int = 200
    #: prompts per asker forward pass
    llm_batch: int = 16
    #: offline: train on the selection plus the target set (the BADS paper's Random_Select convention)
    include_target: bool = True
    #: online: size L of the scored batch; null = ⌈batch_size / β⌉, capped
    large_batch: Optional[int] = None
    max_large_batch: int = 4096


@register_method("askllm", config=AskLLMConfig)
class AskLLM(ScoreFilter):
    """Ask-LLM scores, offline or online top-β (module docstring)."""

    modalities = ("language",)

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if "{example}" not in cfg.prompt:
            raise ConfigError(f"method.prompt={cfg.prompt!r} must contain the placeholder {{example}} "
                              f"(and {{shots}} when method.shots > 0)")
        if cfg.shots and "{shots}" not in cfg.prompt:
            raise ConfigError(f"method.prompt lacks {{shots}} but method.shots={cfg.shots} (set shots=0 or add it)")
        for key, lo in (("shots", 0), ("max_chars", 16), ("llm_batch", 1)):
            v = getattr(cfg, key)
            if v is None or v < lo:
                raise ConfigError(f"method.{key}={v!r} must be ≥ {lo}")
        cls.check_batch_config(cfg, run_cfg)

    # -- scores ---------------------------------------------------------------------------------
    def pool_scores(self, ctx: RunContext) -> Tensor:
        for need in ("texts", "instruct_lm"):
            if need not in ctx.extra:
                raise ConfigError(f"askllm needs ctx.extra[{need!r}] (a text scenario run by the language runner)")
        cfg = self.cfg
        shots = self._shots(ctx)
        tok = ctx.extra.get("tokenizer")
        key = {"prompt": cfg.prompt, "shots": shots, "max_chars": cfg.max_chars,
               "pool": data_fingerprint(ctx.pool.x.cpu()), "tokenizer": tok.identity() if tok is not None else None}

        def compute() -> dict:
            t0 = time.perf_counter()
            texts = ctx.extra["texts"](ctx.pool.x)
            shared = cfg.prompt.split("{example}")[0].replace("{shots}", shots)  # every prompt's common start
            s = p_yes(ctx.extra["instruct_lm"], [self._prompt(t, shots) for t in texts], cfg.llm_batch, shared,
                      ctx.device)
            return {"scores": s, "seconds": torch.tensor(time.perf_counter() - t0)}

        out = ctx.cache.get_or_compute("askllm_scores", key, compute) if ctx.cache is not None else compute()
        return out["scores"].double()

    def _shots(self, ctx: RunContext) -> str:
        n = min(int(self.cfg.shots), len(ctx.target))
        if n == 0:
            return ""
        g = torch.Generator().manual_seed(15_485_863 * int(ctx.seed) + 1)
        pick = torch.randperm(len(ctx.target), generator=g)[:n]
        texts = ctx.extra["texts"](ctx.target.x[pick])
        return "\n".join(f"- {cut(t, self.cfg.max_chars)}" for t in texts)

    def _prompt(self, text: str, shots: str) -> str:
        return self.cfg.prompt.replace("{shots}", shots).replace("{example}", cut(text, self.cfg.max_chars))

    # -- offline: a fixed top-β set; online: ScoreFilter's batch filtering -----------------------
    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        if self.cfg.online:
            return
        keep = torch.topk(self.scores, ctx.k_budget).indices.sort().values
        self.selected = keep
        self.train_set = torch.cat([keep, -1 - torch.arange(len(ctx.target))]) if self.cfg.include_target else keep
        self.fixed = CyclicSampler(len(self.train_set), ctx.generator)
        w = torch.zeros(ctx.n_pool)
        w[keep] = ctx.n_pool / len(keep)  # mean 1, as the online weights
        self.weights = w

    def step(self, ctx, step, pool_idx, target_idx):
        if self.cfg.online:
            return super().step(ctx, step, pool_idx, target_idx)
        idx = self.train_set[self.fixed.next(ctx.examples.train)]
        pool, tgt = idx[idx >= 0], -1 - idx[idx < 0]
        x = torch.cat([ctx.pool.x[pool], ctx.target.x[tgt].to(ctx.pool.x.device)])
        y = torch.cat([ctx.pool.y[pool], ctx.target.y[tgt].to(ctx.pool.y.device)])
        loss = weighted_step(ctx, self.optimizer, x, y)
        return {"loss": float(loss), "n_pool_in_batch": float(len(pool))}

    def effective_budget(self, ctx):
        return super().effective_budget(ctx) if self.cfg.online else len(self.selected) / max(ctx.n_pool, 1)


def cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + " …"


@torch.no_grad()
def p_yes(instruct_lm, prompts: list[str], batch: int, shared: str = "", device=None) -> Tensor:
    """``P(yes) / (P(yes) + P(no))`` of the asker's first answer token for each user prompt.

    ``shared`` is a prefix of every prompt: its keys / values are computed once and reused
    (the shots are most of a prompt), and the vocabulary head runs only on
    the answer position."""
    import copy

    model, tok = instruct_lm()
    if device is not None:
        model.to(device)  # the process's one copy follows the run onto its device
    device = next(model.parameters()).device
    yes = sorted({tok(w, add_special_tokens=False)["input_ids"][0] for w in YES})
    no = sorted({tok(w, add_special_tokens=False)["input_ids"][0] for w in NO})
    mark = "\x00CANDIDATE\x00"
    if any(not p.startswith(shared) for p in prompts):
        shared = ""
    chat = tok.apply_chat_template([{"role": "user", "content": shared + mark}], tokenize=False,
                                   add_generation_prompt=True)
    head, tail = chat.split(mark)
    prefix = tok(head, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    out_prefix = model.model(input_ids=prefix, use_cache=True)
    ids = tok([p[len(shared):] + tail for p in prompts], add_special_tokens=False)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths per batch: little padding
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    P = prefix.shape[1]
    out = torch.zeros(len(ids), dtype=torch.float64)
    for s in range(0, len(order), batch):
        rows = [ids[i] for i in order[s:s + batch]]
        T, B = max(len(r) for r in rows), len(rows)
        x = torch.tensor([r + [pad] * (T - len(r)) for r in rows], device=device)  # right padding: causal, harmless
        mask = torch.cat([torch.ones(B, P, dtype=torch.long), torch.tensor([[1] * len(r) + [0] * (T - len(r))
                                                                          for r in rows])], 1).to(device)
        cache = copy.deepcopy(out_prefix.past_key_values)
        cache.batch_repeat_interleave(B)
        h = model.model(input_ids=x, attention_mask=mask, past_key_values=cache, use_cache=True,
                        position_ids=(P + torch.arange(T, device=device)).expand(B, T)).last_hidden_state
        last = h[torch.arange(B, device=device), torch.tensor([len(r) - 1 for r in rows], device=device)]
        p = torch.softmax(model.lm_head(last).float(), -1)
        py, pn = p[:, yes].sum(-1), p[:, no].sum(-1)
        out[torch.tensor(order[s:s + batch])] = (py / (py + pn).clamp_min(1e-30)).double().cpu()
    return out
