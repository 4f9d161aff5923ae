"""FisherSFT-style selection: the greedy of ``spice`` without the conflict penalty (λ = 0),
i.e. greedy ``log det(I + α Σ_S g gᵀ)`` with exact gains.  docs/methods/spice.md."""
from __future__ import annotations

from dataclasses import dataclass

from selbench.methods.base import RunContext, Selection
from selbench.methods.gradients.features import GradMethodConfig, GradSelector
from selbench.methods.registry import register_method
from selbench.methods.gradients.spice import Fisher, check_logdet_config, run_logdet_selector


@dataclass
class FisherLogdetConfig(GradMethodConfig):
    tau: float = 0.01
    alpha_scale: float = 1.0
    fisher: Fisher = Fisher.full


@register_method("fisher_logdet", config=FisherLogdetConfig)
class FisherLogdet(GradSelector):

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        check_logdet_config(cfg)

    def select(self, ctx: RunContext) -> Selection:
        return run_logdet_selector(self, ctx, 0.0)
