"""``random_real``: ``ipc`` random real pool images per class, stored at full colour — the byte
budget exactly (``methods/common/storage.py``).  The paper tables' "Random"."""
from __future__ import annotations

from selbench.methods.base import RunContext, Synthesis
from selbench.methods.common.synthesis import BudgetedSynthesizer, SynthConfig, full_colour_synthesis, random_pick
from selbench.methods.registry import register_method


@register_method("random_real", config=SynthConfig)
class RandomReal(BudgetedSynthesizer):
    def synthesize(self, ctx: RunContext) -> Synthesis:
        return full_colour_synthesis(ctx, self.cfg, random_pick, "random_real")
