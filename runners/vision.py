"""The vision task: image scenarios and the classifier adapter."""
from __future__ import annotations

import torch

from selbench.datasets.scenarios import build_scenario as _build_image_scenario
from selbench.runners.adapter import VisionAdapter
from selbench.runners.models import build_model

MODALITY = "vision"


def build_scenario(cfg, seed: int):
    return _build_image_scenario(cfg.dataset, cfg.scenario, seed=seed,
                                 max_pool=cfg.scale.get("max_pool"), max_test=cfg.scale.get("max_test"))


def build_adapter(cfg, scenario, cost, device: torch.device) -> VisionAdapter:
    model_cfg = dict(cfg.model)
    name = model_cfg.pop("name")
    model = build_model(name, tuple(scenario.pool.x.shape[1:]), scenario.num_classes, **model_cfg).to(device)
    return VisionAdapter(model, scenario.num_classes, cost, device, eval_batch_size=int(cfg.runner.eval_batch_size))
