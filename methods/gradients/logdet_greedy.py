"""Greedy maximisation of ``F(S) = log det(I + α Σ_{i∈S} g_i g_iᵀ)`` (FisherSFT / SPICE) and
the selection-quality numbers every gradient selector records.

**Exact gains, all candidates at once.**  With ``M_S = I + α Σ_S g gᵀ`` the marginal gain is
``Δ(i|S) = log(1 + α q_i)``, ``q_i = g_iᵀ M_S⁻¹ g_i`` (matrix-determinant lemma).  ``M_S⁻¹`` is
kept as ``I − Σ_j w_j w_jᵀ`` (Sherman–Morrison: adding ``g`` with ``u = M_S⁻¹ g`` appends
``w = sqrt(α / (1 + α gᵀu)) · u``), and every candidate's ``q_i`` is updated in one
vectorised step, ``q ← q − (G w)²``: O(N·d + |S|·d) per pick, no d×d matrix, no Python loop
over candidates.  ``diag=True`` is the SPICE code's released diagonal Fisher: ``q_i = Σ_j g_ij² / D_j``
with ``D ← D + α (|g|·g)²`` after each pick (AdaFisher's ``h = |g|·g``, squared; so ``α g⁴``, which
barely moves ``D`` for small gradients and makes the greedy close to top-k by gradient norm).

**SPICE's penalty.**  ``score(i|S) = Δ(i|S) − λ · max(0, −cos(g_i, ḡ_S))`` with ``ḡ_S`` the
mean selected gradient (λ = 0 is FisherSFT's plain greedy).

**Early stop.**  As the authors' code (``spice/select.py``): the greedy stops once the gain of the
pick the score chooses is ``<= τ ×`` the first pick's gain (SPICE's ω = 0.5 per window).  The
static variant then fills the remaining ``k − n_greedy`` slots with the highest remaining scores
(one top-k; ``n_greedy`` says how many came from the greedy); SPICE's windows do not fill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class GreedyResult:
    indices: Tensor        #: [k] pool indices, greedy order first, then the fill
    pick_gains: Tensor     #: [n_greedy] Δ(i|S) at the moment each was picked
    pick_scores: Tensor    #: [n_greedy] penalised scores at pick time
    scores: Tensor         #: [N] pick-time gain for the selected, gain at the end for the others
    n_greedy: int
    stopped_early: bool
    info: dict = field(default_factory=dict)


class LogDetState:
    """The running factor of ``M_S⁻¹`` (or its diagonal), ``Σ_S g`` and the first gain."""

    def __init__(self, d: int, k: int, alpha: float, diag: bool, dtype=torch.float64, device="cpu"):
        self.alpha, self.diag = float(alpha), bool(diag)
        self.W = torch.zeros(0 if diag else k, d, dtype=dtype, device=device)
        self.D = torch.ones(d, dtype=dtype, device=device)
        self.n = 0
        self.sum = torch.zeros(d, dtype=dtype, device=device)
        self.first_gain: float | None = None

    def q(self, G: Tensor) -> Tensor:
        if self.diag:
            return (G * G) @ (1.0 / self.D)
        q = (G * G).sum(1)
        if self.n:
            q = q - ((G @ self.W[:self.n].T) ** 2).sum(1)
        return q.clamp_min(0)

    def add(self, g: Tensor) -> Tensor | None:
        """Add ``g`` to S; returns the new factor row ``w`` (None in diagonal mode)."""
        self.sum += g
        if self.diag:  # the authors' AdaFisher update: D += α h², h = |g|·g (so α g⁴)
            self.D += self.alpha * (g.abs() * g) ** 2
            self.n += 1
            return None
        u = g - self.W[:self.n].T @ (self.W[:self.n] @ g) if self.n else g.clone()
        c = 1.0 + self.alpha * float(g @ u)
        w = math.sqrt(self.alpha / c) * u
        if self.n >= len(self.W):  # more picks than preallocated rows: grow
            self.W = torch.cat([self.W, torch.zeros(max(len(self.W), 1), len(w), dtype=w.dtype, device=w.device)])
        self.W[self.n] = w
        self.n += 1
        return w


def greedy_logdet(G: Tensor, k: int, alpha: float, lam: float = 0.0, tau: float = 0.0, diag: bool = False,
                  fill: bool = True) -> GreedyResult:
    """Greedy ``k`` of the rows of ``G`` (``[N, d]``) for ``log det(I + α Σ g gᵀ)`` minus SPICE's penalty;
    stops once the chosen pick's gain is ``<= τ ×`` the first pick's (``τ = 0``: never), then fills
    the rest by the highest remaining score (``fill``) or returns fewer than ``k`` (SPICE's windows)."""
    G = G.double()
    N, d = G.shape
    k = min(int(k), N)
    state = LogDetState(d, k, alpha, diag, device=G.device)
    norms = G.norm(dim=1).clamp_min(1e-30)
    q = state.q(G)
    avail = torch.ones(N, dtype=torch.bool, device=G.device)
    picks, gains, pick_scores = [], [], []
    stopped = False

    def scored() -> tuple[Tensor, Tensor]:
        gain = torch.log1p(state.alpha * q)
        score = gain.clone()
        if lam > 0 and state.n:
            cos = (G @ state.sum) / (norms * state.sum.norm().clamp_min(1e-30))
            score -= lam * (-cos).clamp_min(0)
        return gain, score

    for _ in range(k):
        gain, score = scored()
        score[~avail] = -math.inf
        i = int(score.argmax())
        if state.first_gain is None:
            state.first_gain = float(gain[i])
        elif tau > 0 and float(gain[i]) <= tau * state.first_gain:  # the authors' test: the chosen pick's gain
            stopped = True
            break
        picks.append(i)
        gains.append(float(gain[i]))
        pick_scores.append(float(score[i]))
        avail[i] = False
        w = state.add(G[i])
        q = state.q(G) if state.diag else (q - (G @ w) ** 2).clamp_min(0)
    final = scored()[1].cpu()
    chosen = torch.tensor(picks, dtype=torch.long)
    all_scores = final.clone()
    all_scores[chosen] = torch.tensor(gains, dtype=torch.float64)
    n_greedy = len(picks)
    if fill and n_greedy < k:  # early stop: fill by the highest remaining score at the stop
        rest = avail.nonzero().squeeze(1).cpu()
        chosen = torch.cat([chosen, rest[final[rest].topk(k - n_greedy).indices]])
    return GreedyResult(chosen, torch.tensor(gains, dtype=torch.float64),
                        torch.tensor(pick_scores, dtype=torch.float64), all_scores.float(), n_greedy, stopped)


def top_k_gains(G: Tensor, k: int, alpha: float, tau: float = 0.0) -> GreedyResult:
    """The SPICE code's ``top_k`` rule (its run script's choice): every row's first-pick gain
    ``log(1 + α ‖g‖²)`` with no update (so top-k by gradient norm), taken in order while the gain
    stays ``> τ ×`` the largest."""
    gain = torch.log1p(float(alpha) * (G.double() ** 2).sum(1)).cpu()
    order = gain.argsort(descending=True)[:min(int(k), len(G))]
    keep = gain[order] > tau * gain[order[0]] if tau > 0 and len(order) else torch.ones(len(order), dtype=torch.bool)
    n = int(keep.long().cumprod(0).sum())
    return GreedyResult(order[:n], gain[order[:n]], gain[order[:n]], gain.float(), n, n < len(order))


# -- what every gradient selector records ----------------------------------------------------------
def reference_alpha(G: Tensor) -> float:
    """``α`` with ``α · median ‖g‖² = 1``: scale-aware (the defaults hold whatever the gradients'
    scale), and the same for every method that sees the same features."""
    med = float((G.double() ** 2).sum(1).median()) if len(G) else 1.0
    return 1.0 / med if med > 0 else 1.0


def logdet(G_S: Tensor, alpha: float) -> float:
    """``log det(I_d + α G_Sᵀ G_S)`` (computed as the k×k ``I_k + α G_S G_Sᵀ`` when k < d)."""
    G_S = G_S.double()
    if len(G_S) == 0:
        return 0.0
    k, d = G_S.shape
    M = torch.eye(k, dtype=torch.float64) + alpha * G_S @ G_S.T if k <= d else \
        torch.eye(d, dtype=torch.float64) + alpha * G_S.T @ G_S
    return float(torch.linalg.slogdet(M)[1])


def conflict(G_S: Tensor, chunk: int = 2048) -> dict:
    """Mean over pairs i ≠ j of ``max(0, −cos(g_i, g_j))`` (conflict) and of ``cos`` itself."""
    k = len(G_S)
    if k < 2:
        return {"conflict": 0.0, "mean_cos": 1.0}
    Gn = torch.nn.functional.normalize(G_S.double(), dim=1)
    neg = cos = 0.0
    for s in range(0, k, chunk):
        C = Gn[s:s + chunk] @ Gn.T
        rows = torch.arange(s, min(s + chunk, k))
        C[torch.arange(len(rows)), rows] = 0.0
        neg += float((-C).clamp_min(0).sum())
        cos += float(C.sum())
    pairs = k * (k - 1)
    return {"conflict": neg / pairs, "mean_cos": cos / pairs}


def selection_quality(G: Tensor, idx: Tensor, alpha: float | None = None) -> dict:
    """The record's comparable numbers: log-det of the selected set with ``reference_alpha`` of the
    pool's features (the same α for every method), and its pairwise gradient conflict."""
    a = reference_alpha(G) if alpha is None else alpha
    G_S = G[idx.long()]
    return {"logdet": logdet(G_S, a), "logdet_alpha": a, **conflict(G_S)}
