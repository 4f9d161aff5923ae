"""AutoPalette's palette-network losses on the soft assignment ``m`` ``[N, K, H, W]`` (mean over
images), as the authors compute them (``distill/dm_quant.py``, ``distill/distill_quant.py``):

- **maximum colour** ``L_m = −mean_k max_p m_k(p)``: every colour should own some pixel with
  confidence, so no palette entry goes unused;
- **palette balance** ``L_b = −H(mean_p m(p))``: the image's average colour usage should be even
  (maximum entropy ``log K``);
- **confidence** ``L_c = mean_p H(m(p))``: each pixel's assignment should be close to one-hot, so the
  soft image the distillation sees is close to the argmax image that is stored;
- **pixel similarity** ``L_s`` (:func:`affinity_loss`): on a random 30% of the pixels, the pairwise
  affinity of their assignment probabilities ``A = mᵀm`` (columns L2-normalised) should match the
  affinity of a median-cut one-hot assignment of the same image, ``‖A_m − A_mc‖²_F / S``. The
  median-cut map (:func:`median_cut_assignment`) is recomputed from the current images every
  iteration. The affinity is invariant to how the K entries are numbered, so the median cut only says
  which pixels should share a colour, not which colour.

The authors compute all four on a *detached* copy of the synthetic images: they train only the
palette network, never the pixels (``methods/distill/autopalette.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selbench.methods.distill.median_cut import median_cut

_EPS = 1e-16  # the authors' entropy guard: −Σ p log(p + 1e-16)


def _entropy(p: Tensor) -> Tensor:
    return -(p * (p + _EPS).log()).sum(1)


def max_colour_loss(m: Tensor) -> Tensor:
    return -m.flatten(2).max(2).values.mean()


def balance_loss(m: Tensor) -> Tensor:
    return -_entropy(m.mean((2, 3))).mean()


def confidence_loss(m: Tensor) -> Tensor:
    return _entropy(m).mean()


def affinity_loss(m: Tensor, ref: Tensor, pixels: Tensor) -> Tensor:
    """``m``, ``ref`` ``[N, K, H, W]``; ``pixels`` ``[N, S]``: the sampled pixel positions of each image."""
    k = m.shape[1]
    at = pixels.unsqueeze(1).expand(-1, k, -1)
    f, t = m.flatten(2).gather(2, at), ref.flatten(2).gather(2, at)     # [N, K, S]
    a_m = F.normalize(f.transpose(1, 2) @ f, dim=1)                      # [N, S, S]
    a_t = F.normalize(t.transpose(1, 2) @ t, dim=1)
    return ((a_m - a_t) ** 2).sum((1, 2)).div(pixels.shape[1]).mean()


def sample_pixels(n: int, hw: int, ratio: float, generator: torch.Generator) -> Tensor:
    """``[n, ⌊hw·ratio⌋]`` distinct pixel positions per image (without replacement)."""
    s = max(1, int(hw * ratio))
    return torch.stack([torch.randperm(hw, generator=generator)[:s] for _ in range(n)])


def median_cut_assignment(x: Tensor, colours: int, lo: Tensor, hi: Tensor) -> Tensor:
    """One-hot median-cut assignment ``[N, K, H, W]`` of each image, cut in 8-bit pixel space.

    The authors un-normalise to [0, 1] and cut with PIL; here the pool's per-channel range
    (``pixel_grid``) maps values back to [0, 1] (clamped) and our median cut does the split, so the
    widest-channel choice is made on pixel values, not on normalised ones."""
    lo, hi = lo.to(x.device), hi.to(x.device)
    px = ((x.detach() - lo) / (hi - lo)).clamp(0, 1)
    idx = torch.stack([median_cut(img, colours)[0] for img in px.cpu()]).to(x.device)
    return F.one_hot(idx, colours).permute(0, 3, 1, 2).to(x.dtype)


def usage_entropy(m: Tensor) -> float:
    """Mean over images of H(mean_p m(p)) in nats (log K = perfectly balanced)."""
    return float(-balance_loss(m).detach())


def hard_colours_used(m: Tensor) -> Tensor:
    """Palette entries that own at least one pixel under argmax, per image ``[N]``."""
    k = m.shape[1]
    idx = m.argmax(1).flatten(1)
    return torch.stack([torch.bincount(i, minlength=k).gt(0).sum() for i in idx])


def hard_usage_entropy(m: Tensor) -> float:
    """Mean over images of the entropy (nats) of the argmax colour histogram: what storage sees."""
    k = m.shape[1]
    counts = torch.stack([torch.bincount(i, minlength=k) for i in m.argmax(1).flatten(1)]).float()
    p = counts / counts.sum(1, keepdim=True)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())
