"""The language task: text scenarios, language models and ``LanguageAdapter``.

``LanguageAdapter`` offers exactly the interface of ``VisionAdapter`` (the contract is
``core.protocols.TaskAdapter``; the shared part is ``runners/tasks/base.py``), so every method
runs on text unchanged:

- ``per_example_loss(x, y, params=None)`` → ``[B]`` mean token NLL over the positions
  whose target is not ``-100`` (the response / continuation / every token of a chunk);
- ``embed(x)`` → ``[B, D]`` mean (default) or last-token final hidden state over the
  real (non-padding) positions (eval mode, detached); inside ``capture_embedding()`` a
  ``per_example_loss`` forward leaves that same pooled state in the box (one forward, not two:
  ``_loss_and_embedding``) — only where the forward is deterministic (no active dropout), so the
  value is ``embed``'s up to float rounding;
- ``scalar_output(params, x, y)`` → for one example, the sum over its target tokens of
  the log-odds ``log p(y_t) − log(1 − p(y_t))`` (DsDm / TRAK's LM output);
- ``param_subset(which)``: ``all`` | ``trainable`` | ``head`` (LoRA adapters when the
  model has them, else the last transformer block and the final norm) | ``lora`` |
  ``last:<k>`` (last k parameter tensors) | ``layers:<k>`` (the last k blocks + final norm) |
  ``linears:<subset>`` (the ``nn.Linear`` parameters of a subset);
- ``per_example_grads(x, y, which, fn)`` → ``[B, P]`` (vmap for the from-scratch model,
  an exact per-example loop for transformers models) and ``grad_features(x, y, spec)`` →
  ``[B, d]`` (projected / factored; the engine in ``core/grads.py``);
  ``per_example_output(x, y)`` → ``[B]`` batched ``scalar_output``;
- ``evaluate(split)`` → ``accuracy`` (next-token accuracy on target tokens), ``loss``
  = ``nll`` (mean target-token NLL), ``perplexity``, ``sequence_loss`` (mean of per-example
  losses, the training objective), ``exact_match`` (every target token is the argmax:
  greedy decoding reproduces the reference), ``choice_accuracy`` when the split has
  multiple-choice variants, and ``nll_<domain>`` / ``perplexity_<domain>`` when it
  spans several domains.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from selbench.core.data import Split
from selbench.datasets.text.examples import IGNORE
from selbench.datasets.text.scenarios import build_text_scenario
from selbench.datasets.text.tokenizer import build_tokenizer
from selbench.core.modes import eval_mode, stochastic
from selbench.runners.tasks.base import AdapterBase
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError
from selbench.runners.models.language import REQUIRED_TOKENIZER, build_lm

MODALITY = "language"


def _tokenizer_cfg(model_cfg) -> dict:
    tok = dict(model_cfg.get("tokenizer") or {"name": "gpt2"})
    need = REQUIRED_TOKENIZER.get(str(model_cfg.get("name")))
    if need and tok.get("name") != need:
        raise ConfigError(f"model={model_cfg.get('name')} needs model.tokenizer.name={need} "
                          f"(got {tok.get('name')!r})")
    if need and model_cfg.get("path"):
        tok.setdefault("path", model_cfg.get("path"))
    return tok


def check_config(cfg) -> None:
    """Cheap checks run before anything is built (``runners/run/validate.py``)."""
    from pathlib import Path

    from selbench.datasets.text.scenarios import KINDS
    from selbench.datasets.text.sources import TEXT_SOURCES
    from selbench.datasets.text.tokenizer import TOKENIZERS
    from selbench.runners.models.language import LM_MODELS

    LM_MODELS.lookup(cfg.model.name)
    TEXT_SOURCES.lookup(cfg.dataset.name)
    kind = cfg.scenario.get("kind", cfg.scenario.get("name"))
    if kind not in KINDS:
        raise ConfigError(f"scenario.kind={kind!r} is not a language scenario (choose from: {', '.join(KINDS)})")
    tok = _tokenizer_cfg(cfg.model)
    if tok.get("name") not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {tok.get('name')!r} (choose from: {', '.join(TOKENIZERS)})")
    seq_len, ctx = cfg.scenario.get("seq_len", 128), cfg.model.get("context")
    if not isinstance(seq_len, int) or seq_len < 8:
        raise ConfigError(f"scenario.seq_len={seq_len!r} must be an integer >= 8")
    if ctx is not None and seq_len > int(ctx):
        raise ConfigError(f"scenario.seq_len={seq_len} exceeds model.context={ctx}")
    paths = cfg.dataset.get("path")
    for p in ([paths] if isinstance(paths, str) else list(paths or [])):
        if not Path(str(p)).is_file():
            raise ConfigError(f"dataset.path={str(p)!r} does not exist or is not a file")


def build_scenario(cfg, seed: int):
    tok = build_tokenizer(_tokenizer_cfg(cfg.model))
    seq_len = int(cfg.scenario.get("seq_len", 128))
    ctx = cfg.model.get("context")
    if ctx is not None and seq_len > int(ctx):
        raise ConfigError(f"scenario.seq_len={seq_len} exceeds model.context={ctx}")
    return build_text_scenario(cfg.dataset, cfg.scenario, tok, seed=seed,
                               max_pool=cfg.scale.get("max_pool"), max_test=cfg.scale.get("max_test"))


def build_adapter(cfg, scenario, cost, device: torch.device) -> "LanguageAdapter":
    model_cfg = dict(cfg.model)
    name = model_cfg.pop("name")
    embedding = str(model_cfg.get("embedding", "mean"))
    model = build_lm(name, scenario.num_classes, **model_cfg).to(device)
    pad_id = scenario.tokenizer.pad_id if scenario.tokenizer is not None else 0
    return LanguageAdapter(model, scenario.num_classes, cost, device, pad_id=pad_id,
                           eval_batch_size=int(cfg.runner.eval_batch_size), embedding=embedding,
                           domain_names=list(scenario.class_names))


def target_lengths(y: Tensor) -> Tensor:
    """Index after the last counted target of each row (0 for a row with none)."""
    T = y.shape[-1]
    has = (y != IGNORE)
    last = T - torch.flip(has, dims=[-1]).float().argmax(-1)
    return torch.where(has.any(-1), last, torch.zeros_like(last))


def input_lengths(x: Tensor, pad_id: int) -> Tensor:
    """Index after the last non-padding input of each row (right padding)."""
    T = x.shape[-1]
    real = x != pad_id
    last = T - torch.flip(real, dims=[-1]).float().argmax(-1)
    return torch.where(real.any(-1), last, torch.ones_like(last))


def token_nll(logits: Tensor, y: Tensor) -> Tensor:
    """``[..., T]`` NLL of each target (0 where the target is ``-100``)."""
    return F.cross_entropy(logits.transpose(1, -1) if logits.dim() == 3 else logits.reshape(-1, logits.shape[-1]),
                           y if logits.dim() == 3 else y.reshape(-1), ignore_index=IGNORE,
                           reduction="none").reshape(y.shape)


def masked_mean_nll(logits: Tensor, y: Tensor) -> Tensor:
    mask = (y != IGNORE)
    return (token_nll(logits, y) * mask).sum(-1) / mask.sum(-1).clamp_min(1)


class LanguageAdapter(AdapterBase):
    modality = "language"

    def __init__(self, model: nn.Module, vocab_size: int, cost: CostTracker, device: torch.device, pad_id: int = 0,
                 eval_batch_size: int = 64, embedding: str = "mean", domain_names: list[str] | None = None):
        if embedding not in ("mean", "last"):
            raise ConfigError(f"model.embedding={embedding!r} (choose from: mean, last)")
        super().__init__(model, vocab_size, cost, device, eval_batch_size)
        self.pad_id, self.embedding = pad_id, embedding
        self.domain_names = domain_names or []

    def _trim(self, x: Tensor, y: Tensor | None = None, inputs: bool = False) -> tuple[Tensor, Tensor | None]:
        """Drop columns after the batch's last useful position (causal: nothing earlier changes): its
        last target, or (no ``y``, or ``inputs``: what ``embed`` pools) its last real input.

        Only for a batch on the host: on an accelerator the batch's length would be a device → host
        read every forward (a sync per step); the padded positions cost compute there, not a stall,
        and give torch.compile one shape."""
        if x.device.type != "cpu":
            return x, y
        n = target_lengths(y) if y is not None else input_lengths(x, self.pad_id)
        if inputs and y is not None:
            n = torch.maximum(n, input_lengths(x, self.pad_id).to(n.device))
        L = int(n.max().clamp_min(1))
        return x[..., :L], (None if y is None else y[..., :L])

    def per_example_loss(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        if self._capture is not None and params is None and not stochastic(self.model):
            return self._loss_and_embedding(x, y, self._capture)
        x, y = self._trim(x, y)
        return masked_mean_nll(self.forward(x, params), self.to_device(y))

    def _loss_and_embedding(self, x: Tensor, y: Tensor, box) -> Tensor:
        """The losses, and ``embed(x)`` into ``box.value`` from the same forward: the pooled final
        hidden state over the real positions (the batch is trimmed to its inputs too, which adds
        no target).  ``embed`` runs in eval mode; this forward's mode is the caller's, so the two
        agree (up to float rounding) only without active dropout, which ``per_example_loss`` checks."""
        x, y = self._trim(x, y, inputs=True)
        x = self.to_device(x)
        self.cost.count(forward=len(x))
        h = self.model.hidden(x)
        box.value = self._pool(h.detach(), x)
        return masked_mean_nll(self.model.output(h), self.to_device(y))

    def _pool(self, h: Tensor, x: Tensor) -> Tensor:
        lengths = input_lengths(x, self.pad_id).to(h.device)
        if self.embedding == "last":
            return h[torch.arange(len(h), device=h.device), lengths - 1]
        mask = (torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        with eval_mode(self.model):
            out = []
            for i in range(0, len(x), self.eval_batch_size):
                xb, _ = self._trim(x[i:i + self.eval_batch_size])
                xb = self.to_device(xb)
                self.cost.count(forward=len(xb))
                out.append(self._pool(self.model.hidden(xb), xb).detach())
            return torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=self.device)

    SUBSETS = ("head", "lora", "layers:<k>")

    def _subset(self, which, named):
        lora = {k: v for k, v in named.items() if "lora_" in k}
        if which == "lora":
            if not lora:
                raise ConfigError("parameter subset 'lora' but the model has no LoRA adapters (set model.lora)")
            return lora
        if which == "head":
            return lora or self._layers(1, named)
        if which.startswith("layers:"):
            return self._layers(int(which.split(":")[1]), named)
        return None

    def _layers(self, k: int, named: dict[str, Tensor]) -> dict[str, Tensor]:
        prefixes = self.model.layer_prefixes
        chosen = prefixes[-1:] + prefixes[:-1][-k:] if k > 0 else prefixes[-1:]
        return {n: p for n, p in named.items() if any(n.startswith(pre) for pre in chosen)}

    def scalar_output(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Sum of token log-odds ``log p − log(1 − p)`` of one example's targets."""
        logits = functional_call(self.model, params, (x.unsqueeze(0),))[0]
        mask = y != IGNORE
        ys = y.clamp_min(0)
        correct = logits.gather(-1, ys[:, None])[:, 0]
        hit = torch.arange(logits.shape[-1], device=logits.device) == ys[:, None]  # one_hot is not vmap-safe
        others = logits.masked_fill(hit, float("-inf"))
        return ((correct - torch.logsumexp(others, dim=-1)) * mask).sum()

    def per_example_output(self, x: Tensor, y: Tensor) -> Tensor:
        """``[B]`` batched ``scalar_output`` (sum of target-token log-odds)."""
        x, y = self._trim(x, y)
        logits = self.forward(x)
        y = self.to_device(y)
        mask = y != IGNORE
        ys = y.clamp_min(0)
        correct = logits.gather(-1, ys[..., None])[..., 0]
        others = logits.masked_fill(F.one_hot(ys, logits.shape[-1]).bool(), float("-inf"))
        return ((correct - torch.logsumexp(others, dim=-1)) * mask).sum(-1)

    def _single_loss(self, params, x, y):
        logits = functional_call(self.model, params, (x.unsqueeze(0),))
        return masked_mean_nll(logits, y.unsqueeze(0))[0]

    def _prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self._trim(x, y)
        return self.to_device(x), self.to_device(y)

    def per_example_grads(self, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss",
                          chunk: int = 64) -> Tensor:
        return super().per_example_grads(x, y, which, fn, chunk)

    @torch.no_grad()
    def _batch_stats(self, x: Tensor, y: Tensor):
        """Per-example (sum NLL, #targets, #correct) over target tokens."""
        x, y = self._trim(x, y)
        x, y = self.to_device(x), self.to_device(y)
        self.cost.count(forward=len(x))
        logits = self.model(x).float()
        mask = y != IGNORE
        nll = token_nll(logits, y) * mask
        correct = (logits.argmax(-1) == y) & mask
        return nll.sum(-1).cpu(), mask.sum(-1).cpu(), correct.sum(-1).cpu()

    def _stats(self, x: Tensor, y: Tensor):
        parts = [self._batch_stats(x[i:i + self.eval_batch_size], y[i:i + self.eval_batch_size])
                 for i in range(0, len(x), self.eval_batch_size)]
        return tuple(torch.cat(p) for p in zip(*parts)) if parts else (torch.zeros(0),) * 3

    def evaluate(self, split: Split) -> dict:
        with eval_mode(self.model):
            nll, n, correct = self._stats(split.x, split.y)
            n_tot = int(n.sum())
            mean = float(nll.sum() / max(n_tot, 1))
            has = n > 0
            out = {
                "accuracy": float(correct.sum() / max(n_tot, 1)),
                "loss": mean,
                "nll": mean,
                "perplexity": math.exp(min(mean, 50.0)),
                "sequence_loss": float((nll[has] / n[has]).mean()) if has.any() else float("nan"),
                "exact_match": float((correct[has] == n[has]).float().mean()) if has.any() else float("nan"),
                "target_tokens": n_tot,
            }
            dom = getattr(split, "domain", None)
            if dom is not None and len(torch.unique(dom)) > 1:
                for d in torch.unique(dom).tolist():
                    m = dom == d
                    name = self.domain_names[d] if d < len(self.domain_names) else str(d)
                    dn = float(nll[m].sum() / max(int(n[m].sum()), 1))
                    out[f"nll_{name}"], out[f"perplexity_{name}"] = dn, math.exp(min(dn, 50.0))
            cx = getattr(split, "choice_x", None)
            if cx is not None and len(cx):
                N, C, T = cx.shape
                cn, cc, _ = self._stats(cx.reshape(N * C, T), split.choice_y.reshape(N * C, T))
                per_tok = (cn / cc.clamp_min(1)).reshape(N, C)
                out["choice_accuracy"] = float((per_tok.argmin(1) == split.answer).float().mean())
                out["choice_chance"] = 1.0 / C
            return out
