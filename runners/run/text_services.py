"""What the runner lends methods that read text (``ctx.extra``), so that they stay written
against the core alone: ``methods/`` may not import the tokenizers or the model loaders.

For a language scenario ``make_context`` puts into ``ctx.extra``:

- ``"texts"``: ``texts(x) -> list[str]``, the decoded text of token-id rows ``x`` (padding
  dropped) through the scenario's own tokenizer;
- ``"instruct_lm"``: ``instruct_lm() -> (model, tokenizer)``, the packaged
  SmolLM2-135M-Instruct as a frozen fp32 ``transformers`` causal LM in eval mode and its
  Hugging Face tokenizer (chat template). It is loaded on first call through
  ``runners.models.language.load_smollm2`` (which reuses the fp32 copy under the selbench
  cache, so a load is about a second, not the ~25 s GGUF de-quantisation) and kept for the
  process: every run of a sweep or a test session shares one copy.

Vision scenarios get neither key.
"""
from __future__ import annotations

import functools
from typing import Callable

from torch import Tensor


@functools.lru_cache(maxsize=1)
def _instruct_lm():
    from selbench.datasets.text.tokenizer import load_smollm2_tokenizer
    from selbench.runners.models.language import load_smollm2

    model = load_smollm2().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, load_smollm2_tokenizer()


def instruct_lm():
    """``(model, tokenizer)``: SmolLM2-135M-Instruct, frozen, one copy per process (see module doc)."""
    return _instruct_lm()


def decoder(tokenizer) -> Callable[[Tensor], list[str]]:
    pad = int(tokenizer.pad_id)

    def texts(x: Tensor) -> list[str]:
        rows = x.reshape(len(x), -1).cpu().tolist()
        return [tokenizer.decode([i for i in r if i != pad]) for r in rows]

    return texts


def text_services(scenario) -> dict:
    """The ``ctx.extra`` entries for ``scenario`` (empty unless it is a text scenario)."""
    if scenario.modality != "language" or scenario.tokenizer is None:
        return {}
    return {"texts": decoder(scenario.tokenizer), "instruct_lm": instruct_lm}
