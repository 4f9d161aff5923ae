"""AutoPalette's palette network (Yuan et al., NeurIPS 2024; the authors' ``ColorCNN`` in
``distill/color_networks/color_cnn.py``): a per-pixel head shared by every synthetic image,
``Conv1×1(C→256)–ReLU–Conv1×1(256→K, no bias)``, softmax over the K colours.

- ``assign(x)`` → ``m`` ``[N, K, H, W]``: soft assignment of each pixel to the K colours;
- ``palette(x, m)`` → ``[N, K, C]``: per-image colours ``c_k = Σ_p m_k(p) x(p) / Σ_p m_k(p)``;
- ``soft(x)`` → the image ``Σ_k m_k(p) c_k`` used while training (differentiable);
- ``hard(x)`` → (indices ``[N, H, W]``, palette ``[N, K, C]``, image): the stored form. Every pixel
  takes its argmax colour and the palette is recomputed from that hard assignment (the mean of the
  pixels each entry owns; 0 for an entry that owns none), as the authors' ``training=False`` path
  does, so each image has at most K distinct colours and each colour is its pixels' mean.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class PaletteNet(nn.Module):
    def __init__(self, channels: int, colours: int, hidden: int = 256):
        super().__init__()
        self.colours = colours
        # the authors' last 1×1 conv has no bias: a constant logit shift would not change the softmax anyway
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, colours, 1, bias=False))

    def assign(self, x: Tensor) -> Tensor:
        return torch.softmax(self.net(x), dim=1)

    @staticmethod
    def palette(x: Tensor, m: Tensor) -> Tensor:
        num = torch.einsum("nkhw,nchw->nkc", m, x)
        return num / (m.sum((2, 3)).unsqueeze(-1) + 1e-8)

    def soft(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(soft-quantised image, assignment m)."""
        m = self.assign(x)
        return torch.einsum("nkhw,nkc->nchw", m, self.palette(x, m)), m

    @torch.no_grad()
    def hard(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        idx = self.assign(x).argmax(1)
        onehot = torch.nn.functional.one_hot(idx, self.colours).permute(0, 3, 1, 2).to(x.dtype)
        pal = self.palette(x, onehot)
        return idx, pal, compose(idx, pal)


def compose(idx: Tensor, pal: Tensor) -> Tensor:
    """Image from per-pixel indices ``[N, H, W]`` and palettes ``[N, K, C]``."""
    n, h, w = idx.shape
    flat = torch.gather(pal, 1, idx.reshape(n, -1, 1).expand(-1, -1, pal.shape[-1]))
    return flat.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


def colours_used(x: Tensor, decimals: int = 5) -> Tensor:
    """Distinct colours of each image ``[N, C, H, W]`` → ``[N]``."""
    flat = x.round(decimals=decimals).permute(0, 2, 3, 1).reshape(len(x), -1, x.shape[1])
    return torch.tensor([len(torch.unique(f, dim=0)) for f in flat])
