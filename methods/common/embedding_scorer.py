"""The weight model on a detached embedding and the label, shared by online BLO's scorer and
BADS's weight net (``docs/methods/online_blo.md``, ``docs/methods/bads.md``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selbench.core.errors import ConfigError
from selbench.methods.common.choice import Choice


class ScorerFeatures(Choice):
    """The weight model's input (see :class:`EmbeddingScorer`)."""

    embed = "embed"
    embed_label = "embed_label"
    embed_x_label = "embed_x_label"


class EmbeddingScorer(nn.Module):
    """Weight model ``s(z; φ)`` on a detached embedding ``e`` and the (possibly noisy) label ``y``.

    ``features``:
    - ``embed``: ``s = v·e + b`` (no label);
    - ``embed_label``: ``s = v·[e ⊕ onehot(y)] + b`` (BADS's weight-net input). The label
      enters additively, so it can shift a class up or down but cannot express whether
      the label *agrees* with the content;
    - ``embed_x_label``: ``s = v_y·e + b_y`` (linear on ``e ⊗ onehot(y)``: one linear
      scorer per label), which can.
    ``hidden > 0`` puts a ReLU MLP on the chosen input instead of the linear map. The
    output layer starts at zero, so selection starts uniform at random.
    """

    FEATURES = tuple(f.value for f in ScorerFeatures)

    def __init__(self, embed_dim: int, num_classes: int, features: str = "embed_label", hidden: int = 0):
        super().__init__()
        if str(features) not in self.FEATURES:
            raise ConfigError(f"method.features={str(features)!r} (choose from: {', '.join(self.FEATURES)})")
        self.num_classes, self.features = num_classes, str(features)
        d = {"embed": embed_dim, "embed_label": embed_dim + num_classes,
             "embed_x_label": embed_dim * num_classes + num_classes}[features]
        last = nn.Linear(d if hidden <= 0 else hidden, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = last if hidden <= 0 else nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), last)

    def forward(self, emb: Tensor, y: Tensor) -> Tensor:
        if self.features != "embed":
            onehot = F.one_hot(y.to(emb.device), self.num_classes).to(emb.dtype)
            if self.features == "embed_label":
                emb = torch.cat([emb, onehot], dim=1)
            else:
                emb = torch.cat([(onehot.unsqueeze(2) * emb.unsqueeze(1)).flatten(1), onehot], dim=1)
        return self.net(emb).squeeze(-1)
