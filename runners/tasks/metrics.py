"""Metrics: how good the trained model is (``classification_metrics``) and how good the
selection is (``selection_quality``: a method's pool weights scored against ground truth
it never saw)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def classification_metrics(logits: Tensor, y: Tensor, num_classes: int) -> dict:
    pred = logits.argmax(1)
    per_class = []
    for c in range(num_classes):
        m = y == c
        per_class.append(float((pred[m] == c).float().mean()) if m.any() else float("nan"))
    present = [a for a in per_class if a == a]
    return {
        "accuracy": float((pred == y).float().mean()),
        "balanced_accuracy": sum(present) / max(len(present), 1),
        "loss": float(F.cross_entropy(logits, y)),
        "per_class_accuracy": per_class,
    }


def auc(scores: Tensor, positive: Tensor) -> float | None:
    """Probability that a random positive outranks a random negative (ties count ½).

    Mann–Whitney U from average ranks; ``None`` when one of the classes is empty.
    """
    scores, positive = scores.double().flatten(), positive.bool().flatten()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = torch.argsort(scores)
    sorted_s = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average ranks over ties
    uniq, inverse, counts = torch.unique(sorted_s, return_inverse=True, return_counts=True)
    if len(uniq) < len(scores):
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, torch.arange(1, len(scores) + 1, dtype=torch.float64))
        ranks[order] = (sums / counts)[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def selection_quality(weights: Tensor, truth: dict[str, Tensor], bins: int = 20,
                      domain_names: list[str] | None = None) -> dict:
    """Metrics of per-pool-example weights ``w ≥ 0`` (a selection is a 0/1 weight).

    ``domain_weight_share`` is keyed by domain name (``domain_names[d]``; the number only
    when the scenario names none), so a reader sees *which* source a method up-weighted.
    """
    w = weights.detach().double().cpu().flatten()
    total = float(w.sum())
    out: dict = {
        "weight_mean": float(w.mean()) if len(w) else 0.0,
        "effective_fraction": float((w > 0).double().mean()) if len(w) else 0.0,
    }
    lo, hi = (float(w.min()), float(w.max())) if len(w) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1)
    out["histogram"] = {"edges": edges.tolist()}

    clean = truth.get("is_clean")
    if clean is not None and len(clean) == len(w) and not bool(clean.all()):
        clean = clean.bool()
        out["auc_clean_vs_corrupted"] = auc(w, clean)
        out["clean_weight_mean"] = float(w[clean].mean()) if clean.any() else None
        out["corrupted_weight_mean"] = float(w[~clean].mean())
        out["clean_weight_share"] = float(w[clean].sum() / total) if total > 0 else None
        out["histogram"]["clean"] = torch.histc(w[clean], bins, lo, hi).tolist()
        out["histogram"]["corrupted"] = torch.histc(w[~clean], bins, lo, hi).tolist()

    minority = truth.get("is_minority")
    if minority is not None and len(minority) == len(w) and bool(minority.any()):
        minority = minority.bool()
        out["minority_weight_share"] = float(w[minority].sum() / total) if total > 0 else None
        out["minority_pool_fraction"] = float(minority.double().mean())
        out["auc_minority_vs_majority"] = auc(w, minority)

    # any other boolean ground truth (e.g. text scenarios' in_target_domain, is_duplicate)
    for key, flag in truth.items():
        if key in ("is_clean", "is_minority") or flag.dtype != torch.bool or len(flag) != len(w):
            continue
        if bool(flag.any()) and not bool(flag.all()):
            name = key.removeprefix("is_")
            out[f"auc_{name}"] = auc(w, flag)
            out[f"{name}_weight_share"] = float(w[flag].sum() / total) if total > 0 else None
            out[f"{name}_pool_fraction"] = float(flag.double().mean())

    domain = truth.get("domain")
    if domain is not None and len(domain) == len(w):
        names = domain_names or []
        out["domain_weight_share"] = {
            (names[int(d)] if int(d) < len(names) else str(int(d))): float(w[domain == d].sum() / total) if total > 0 else None
            for d in torch.unique(domain)}
    return out
