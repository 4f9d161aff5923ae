"""AutoPalette's colour losses on the soft assignment ``m`` ``[N, K, H, W]`` (mean over images):

- **maximum colour** ``L_m = −mean_k max_p m_k(p)``: every colour should own some pixel
  with confidence, so no palette entry goes unused;
- **palette balance** ``L_b = −H(mean_p m(p))``: the image's average colour usage should be
  even (maximum entropy ``log K``);
- **pixel similarity** ``L_s = ‖soft(x) − target‖²`` (mean): the quantised image should stay
  close to a reference; the paper's code compares with a median-cut quantisation, here the
  reference is the unquantised synthetic image (``target=original``, cheap) or its median-cut
  version computed at initialisation (``target=median_cut``).
"""
from __future__ import annotations

import torch
from torch import Tensor


def max_colour_loss(m: Tensor) -> Tensor:
    return -m.flatten(2).max(2).values.mean()


def balance_loss(m: Tensor) -> Tensor:
    usage = m.flatten(2).mean(2).clamp_min(1e-12)  # [N, K]
    return (usage * usage.log()).sum(1).mean()     # = −H


def pixel_similarity_loss(soft: Tensor, target: Tensor) -> Tensor:
    return ((soft - target) ** 2).mean()


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
