"""SemDeDup (Abbas, Tirumala, Simig, Ganguli, Morcos 2023, "SemDeDup: Data-efficient learning at
web-scale through semantic deduplication"; a baseline of the DsDm paper): embed every pool
example, cluster the embeddings with (spherical) k-means, and within each cluster drop the
semantic near-duplicates; then sample the budget uniformly from the survivors.

Within a cluster the examples are ordered by cosine similarity to the centroid, *least* similar
first (the paper keeps, of each group of duplicates, the one farthest from the centroid), and
example ``j`` is dropped when

    M_j = max_{i before j} cos(e_i, e_j) > 1 − ε,

exactly the paper's ``triu`` rule (not transitive: ``j`` is dropped even if its near-duplicate
``i`` was dropped itself).  ``⌊β·N⌋`` examples are then drawn uniformly from the survivors (the
DsDm paper's use: deduplicate, then sample); if fewer survive, all survivors are kept and the
rest filled with the least-duplicated dropped ones (lowest ``M``), with a warning.

**Embeddings.**  Text: MiniLM (``all-MiniLM-L6-v2``) of the decoded example, the paper's choice
of a pretrained sentence encoder at small scale (it uses OPT-125M / CLIP).  Vision: the raw
pixels minus the pool's mean image (so that a shared background does not make every pair
similar), projected to ``proj_dim`` dims by a seeded Gaussian matrix when larger (JL keeps the
cosines); a fixed embedding, not a trained one.

**Defaults derived from the pool** (the paper tunes both by hand for 440M LAION images:
50,000 clusters and ε for a target kept fraction):

- ``clusters=0`` → ``round(sqrt(N/2))`` (a k-means rule of thumb; LAION's 50k clusters of ~9k);
- ``eps=0`` → ``eps_scale ×`` the median over the pool of ``1 − max cos`` to the nearest other
  member of its cluster: ε is a fixed fraction of the typical nearest-neighbour distance of *this*
  embedding on *this* pool, so pixel spaces and sentence spaces get thresholds of their own scale.

Departures: the k-means is a few seeded Lloyd iterations on CPU (the paper: faiss); the budget
is always filled (SemDeDup alone keeps a fraction set by ε).  ``Selection.scores`` is ``−M``
(higher = less duplicated).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.registry import register_method
from selbench.methods.common.text_lm import text_features


class Embedding(str, Enum):
    auto = "auto"     # MiniLM on text, centred pixels on vision
    model = "model"   # the runner's (untrained) model: adapter.embed


@dataclass
class SemDeDupConfig(MethodConfig):
    clusters: int = 0          # k-means clusters; 0 = round(sqrt(N / 2))
    eps: float = 0.0           # duplicates: cos > 1 − eps within a cluster; 0 = eps_scale × median NN distance
    eps_scale: float = 0.1
    kmeans_iters: int = 30
    embedding: Embedding = Embedding.auto
    proj_dim: int = 256        # vision pixels: Gaussian projection to this many dims when larger
    include_target: bool = True  # train on the selection + the target set (as `random`)


def embed_pool(ctx: RunContext, cfg) -> Tensor:
    if Embedding(cfg.embedding) is Embedding.model:
        x = ctx.pool.x
        e = torch.cat([ctx.adapter.embed(x[i:i + 512]).float().cpu() for i in range(0, len(x), 512)])
    elif ctx.modality == "vision":
        e = ctx.pool.x.reshape(ctx.n_pool, -1).float()
        e = e - e.mean(0)
        if e.shape[1] > int(cfg.proj_dim):
            g = torch.Generator().manual_seed(8_191)  # a fixed embedding: the same for every run seed
            e = e @ torch.randn(e.shape[1], int(cfg.proj_dim), generator=g)
    else:
        e = text_features(ctx, ctx.pool.x, ctx.pool.y, cfg.name)
    return torch.nn.functional.normalize(e.double(), dim=1)


def spherical_kmeans(e: Tensor, k: int, iters: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(labels ``[N]``, unit centroids ``[k, d]``); k-means++ seeding on cosine distance."""
    n = len(e)
    k = max(1, min(int(k), n))
    cent = [int(torch.randint(n, (1,), generator=gen))]
    d = (1 - e @ e[cent[0]]).clamp_min(0)
    for _ in range(k - 1):
        if d.sum() <= 0:
            break
        cent.append(int(torch.multinomial(d.float(), 1, generator=gen)))
        d = torch.minimum(d, (1 - e @ e[cent[-1]]).clamp_min(0))
    c = e[cent].clone()
    labels = (e @ c.T).argmax(1)
    for _ in range(int(iters)):
        s = torch.zeros_like(c).index_add_(0, labels, e)
        keep = s.norm(dim=1) > 0
        c[keep] = torch.nn.functional.normalize(s[keep], dim=1)
        new = (e @ c.T).argmax(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, c


def duplicate_scores(e: Tensor, labels: Tensor, cent: Tensor) -> tuple[Tensor, Tensor]:
    """(``M`` ``[N]``: max cosine to an earlier member of the cluster in farthest-from-centroid
    order, −1 for the first; ``nn`` ``[N]``: max cosine to any other member, −1 for singletons)."""
    M = torch.full((len(e),), -1.0, dtype=e.dtype)
    nn = torch.full((len(e),), -1.0, dtype=e.dtype)
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[(e[idx] @ cent[c]).argsort()]  # least similar to the centroid first
        sim = e[idx] @ e[idx].T
        if len(idx) > 1:
            M[idx[1:]] = torch.triu(sim, diagonal=1).max(0).values[1:]
            nn[idx] = (sim - 3 * torch.eye(len(idx), dtype=sim.dtype)).max(1).values
    return M, nn


def auto_eps(nn: Tensor, scale: float) -> float:
    d = (1 - nn[nn > -1]).clamp_min(0)
    d = d[d > 1e-6]
    return max(float(scale) * float(d.median()), 1e-6) if len(d) else 1e-6


@register_method("semdedup", config=SemDeDupConfig)
class SemDeDup(Selector):
    budget_use = "hard"

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        if int(cfg.clusters) < 0:
            raise ConfigError(f"method.clusters={cfg.clusters} must be >= 0 (0 = round(sqrt(N/2)))")
        if not 0.0 <= float(cfg.eps) < 2.0:
            raise ConfigError(f"method.eps={cfg.eps} must be in [0, 2) (0 = derived from the pool)")
        if float(cfg.eps_scale) <= 0:
            raise ConfigError(f"method.eps_scale={cfg.eps_scale} must be > 0")
        if int(cfg.kmeans_iters) < 1 or int(cfg.proj_dim) < 1:
            raise ConfigError(f"method.kmeans_iters={cfg.kmeans_iters} and method.proj_dim={cfg.proj_dim} "
                              f"must be positive")

    def select(self, ctx: RunContext) -> Selection:
        cfg, n, k = self.cfg, ctx.n_pool, ctx.k_budget
        e = embed_pool(ctx, cfg)
        gen = torch.Generator().manual_seed(int(ctx.seed) * 7_727 + 11)
        n_clusters = int(cfg.clusters) or max(1, round(math.sqrt(n / 2)))
        labels, cent = spherical_kmeans(e, n_clusters, int(cfg.kmeans_iters), gen)
        M, nn = duplicate_scores(e, labels, cent)
        eps = float(cfg.eps) or auto_eps(nn, float(cfg.eps_scale))
        keep = M <= 1 - eps
        survivors = torch.nonzero(keep).flatten()
        if len(survivors) >= k:
            sel = survivors[torch.randperm(len(survivors), generator=ctx.generator)[:k]]
        else:
            dropped = torch.nonzero(~keep).flatten()
            fill = dropped[M[dropped].argsort()[:k - len(survivors)]]
            ctx.warn(f"semdedup: {len(survivors)} of {n} pool examples survive deduplication (eps={eps:.3g}), "
                     f"fewer than the budget {k}; filled with the {len(fill)} least-duplicated dropped ones")
            sel = torch.cat([survivors, fill])
        info = {"clusters": int(labels.unique().numel()), "eps": eps, "n_survivors": int(len(survivors)),
                "duplicate_fraction": 1 - len(survivors) / max(n, 1),
                "median_nn_cosine": float(nn[nn > -1].median()) if (nn > -1).any() else None}
        return Selection(sel.sort().values, target_repeats=int(cfg.include_target), scores=(-M).float(), info=info)
