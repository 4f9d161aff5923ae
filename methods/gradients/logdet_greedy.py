"""Greedy maximisation of ``F(S) = log det(I + α Σ_{i∈S} g_i g_iᵀ)`` (FisherSFT / SPICE) and
the selection-quality numbers every gradient selector records.

**Exact gains, all candidates at once.**  With ``M_S = I + α Σ_S g gᵀ`` the marginal gain is
``Δ(i|S) = log(1 + α q_i)``, ``q_i = g_iᵀ M_S⁻¹ g_i`` (matrix-determinant lemma).  ``M_S⁻¹`` is
kept as ``I − Σ_j w_j w_jᵀ`` (Sherman–Morrison: adding ``g`` with ``u = M_S⁻¹ g`` appends
``w = sqrt(α / (1 + α gᵀu)) · u``), and every candidate's ``q_i`` is updated in one
vectorised step, ``q ← q − (G w)²``: O(N·d + |S|·d) per pick, no d×d matrix, no Python loop
over candidates.  ``diag=True`` is the cheap diagonal-Fisher variant: ``M_S`` is replaced by
its diagonal ``D = 1 + α Σ_S g²`` (``q_i = Σ_j g_ij² / D_j``).

**SPICE's penalty.**  ``score(i|S) = Δ(i|S) − λ · max(0, −cos(g_i, ḡ_S))`` with ``ḡ_S`` the
mean selected gradient (λ = 0 is FisherSFT's plain greedy).

**Early stop and fill.**  Once the best available gain falls below ``τ ×`` the first pick's
gain the greedy stops; the remaining ``k − n_greedy`` slots are filled with the
highest-scoring remaining candidates under the scores at the stop (one vectorised top-k),
and ``n_greedy`` says how many came from the greedy.

**Windows.**  ``window > 0`` streams over the pool in windows of that many candidates (a
seeded permutation), picking ``k · |window| / N`` (cumulatively rounded) from each while the
factor, ``ḡ_S`` and the first gain carry over (SPICE's streaming; the paper also updates its
proxy between windows, which this does not).
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
        if self.diag:
            self.D += self.alpha * g * g
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


def _greedy_block(G: Tensor, n: int, state: LogDetState, lam: float, tau: float):
    """Pick up to ``n`` rows of ``G`` into ``state``; returns (local picks, gains, scores, final scores, stopped)."""
    N = len(G)
    norms = G.norm(dim=1).clamp_min(1e-30)
    q = state.q(G)
    avail = torch.ones(N, dtype=torch.bool, device=G.device)
    picks, gains, scores = [], [], []
    stopped = False
    score = None
    for _ in range(min(n, N)):
        gain = torch.log1p(state.alpha * q)
        score = gain.clone()
        if lam > 0 and state.n:
            cos = (G @ state.sum) / (norms * state.sum.norm().clamp_min(1e-30))
            score -= lam * (-cos).clamp_min(0)
        score[~avail] = -math.inf
        best_gain = float(gain[avail].max())
        if state.first_gain is None:
            state.first_gain = best_gain
        elif tau > 0 and best_gain < tau * state.first_gain:
            stopped = True
            break
        i = int(score.argmax())
        picks.append(i)
        gains.append(float(gain[i]))
        scores.append(float(score[i]))
        avail[i] = False
        w = state.add(G[i])
        if state.diag:
            q = state.q(G)
        else:
            q = (q - (G @ w) ** 2).clamp_min(0)
    final = torch.log1p(state.alpha * q)
    if lam > 0 and state.n:
        cos = (G @ state.sum) / (norms * state.sum.norm().clamp_min(1e-30))
        final = final - lam * (-cos).clamp_min(0)
    return picks, gains, scores, final, avail, stopped


def greedy_logdet(G: Tensor, k: int, alpha: float, lam: float = 0.0, tau: float = 0.0, diag: bool = False,
                  window: int = 0, generator: torch.Generator | None = None) -> GreedyResult:
    """Greedy ``k`` of the rows of ``G`` (``[N, d]``) for ``log det(I + α Σ g gᵀ)`` minus SPICE's penalty."""
    G = G.double()
    N, d = G.shape
    k = min(int(k), N)
    state = LogDetState(d, k, alpha, diag, device=G.device)
    if window and window < N:
        order = torch.randperm(N, generator=generator)
        blocks = [order[s:s + window] for s in range(0, N, window)]
    else:
        blocks = [torch.arange(N)]
    chosen, pick_gains, pick_scores = [], [], []
    leftover_idx, leftover_score = [], []
    stopped_any = False
    done = 0
    for b, idx in enumerate(blocks):
        quota = round(k * sum(len(x) for x in blocks[:b + 1]) / N) - done  # cumulative rounding: quotas sum to k
        picks, gains, scores, final, avail, stopped = _greedy_block(G[idx], quota, state, lam, tau)
        chosen += [int(idx[p]) for p in picks]
        pick_gains += gains
        pick_scores += scores
        done += quota
        leftover_idx.append(idx[avail])
        leftover_score.append(final[avail])
        stopped_any |= stopped
    n_greedy = len(chosen)
    all_scores = torch.full((N,), -math.inf, dtype=torch.float64)
    rest_idx, rest_score = torch.cat(leftover_idx), torch.cat(leftover_score)
    all_scores[rest_idx] = rest_score.cpu()
    if n_greedy:
        all_scores[torch.tensor(chosen)] = torch.tensor(pick_gains, dtype=torch.float64)
    if n_greedy < k:  # early stop (or window rounding): fill by the highest remaining score
        top = rest_score.topk(k - n_greedy).indices
        chosen += rest_idx[top].tolist()
    finite_min = all_scores[torch.isfinite(all_scores)].min() if torch.isfinite(all_scores).any() else 0.0
    all_scores = torch.where(torch.isfinite(all_scores), all_scores, torch.as_tensor(finite_min))
    return GreedyResult(torch.tensor(chosen, dtype=torch.long), torch.tensor(pick_gains, dtype=torch.float64),
                        torch.tensor(pick_scores, dtype=torch.float64),
                        all_scores.float(), n_greedy, stopped_any)


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
