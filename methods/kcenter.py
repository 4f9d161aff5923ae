"""``kcenter`` (greedy k-center, Sener & Savarese 2018): per class, start from the image nearest
the class mean and repeatedly add the one farthest from everything chosen; ``ipc``
full-colour images per class (the byte budget exactly).  Features as for ``herding``."""
from __future__ import annotations

import torch
from torch import Tensor

from selbench.methods.herding import EmbedSelectConfig, _EmbeddingSelector
from selbench.methods.registry import register_method


def kcenter_order(feats: Tensor, n: int) -> Tensor:
    first = int(((feats - feats.mean(0)) ** 2).sum(1).argmin())
    chosen = [first]
    dmin = ((feats - feats[first]) ** 2).sum(1)
    for _ in range(n - 1):
        j = int(dmin.argmax())
        chosen.append(j)
        dmin = torch.minimum(dmin, ((feats - feats[j]) ** 2).sum(1))
        dmin[chosen] = -1.0
    return torch.tensor(chosen, dtype=torch.long)


@register_method("kcenter", config=EmbedSelectConfig)
class KCenter(_EmbeddingSelector):
    name = "kcenter"
    rule = staticmethod(kcenter_order)
