"""Equal compute, resolved once: how many pool and target examples each training step draws, how
many the real update trains on, and how many of a scored large batch an online filter keeps.

``StepExamples.of(run_cfg, method_cls)`` is the one reader of ``runner.batch_size``,
``runner.target_batch_size`` and ``runner.match_examples``: the run context
(``runners/run/context.py``) puts its answer on ``RunContext.examples``, ``check_config`` reads the
same answer before launch, and no method re-derives it. :class:`RunSettings` is the one reader of
the rest of the runner config a method's ``check_config`` may need. No other method module reads
``cfg.runner``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from selbench.core.errors import ConfigError


def matched_batches(batch_size: int, target_batch_size: int, target_in_update: bool, match: bool) -> tuple[int, int]:
    """(pool batch, target batch) a method draws per step.  Under ``runner.match_examples`` a
    method whose real update also trains on the target batch (``Reweighter.target_in_update``,
    BADS) gets pool + target = ``batch_size``, keeping the configured pool : target ratio."""
    if not (match and target_in_update):
        return batch_size, target_batch_size
    if batch_size < 2:
        raise ConfigError(f"runner.batch_size={batch_size} cannot hold a pool and a target example "
                          f"under runner.match_examples=true")
    pool = min(batch_size - 1, max(1, round(batch_size * batch_size / (batch_size + target_batch_size))))
    return pool, batch_size - pool


@dataclass(frozen=True)
class StepExamples:
    """Equal compute, resolved once: how many pool and target examples each training step draws
    and how many the real update trains on (``ctx.examples``; :meth:`of` is the one place that
    reads ``runner.batch_size`` / ``target_batch_size`` / ``match_examples``).  Methods that
    score a large batch and keep part of it take their kept count from :meth:`kept`."""

    #: pool examples a step draws (a reweighter's pool batch; a fixed training set's batch)
    pool: int
    #: target examples a reweighter draws per step
    target: int
    #: ``runner.match_examples``: every method's real update trains on ``runner.batch_size`` examples
    matched: bool = False
    #: the real update trains on the target batch too (``Reweighter.target_in_update``)
    target_in_update: bool = False

    @classmethod
    def of(cls, run_cfg: Any, method_cls: Any = None) -> "StepExamples":
        """The answer for ``method_cls`` under the composed config (also what ``check_config`` reads)."""
        rc = run_cfg.runner
        tiu = bool(getattr(method_cls, "target_in_update", False))
        match = bool(rc.get("match_examples", False))
        pool, target = matched_batches(int(rc.batch_size), int(rc.target_batch_size), tiu, match)
        return cls(pool, target, match, tiu)

    @property
    def train(self) -> int:
        """Examples each real update trains on (``runner.batch_size`` under ``matched``)."""
        return self.pool + (self.target if self.target_in_update else 0)

    def kept(self, large_batch: int | None, cap: int, n_pool: int, budget: float, *,
             with_target: bool = False) -> tuple[int, int, str | None]:
        """``(L, k, note)`` for a method that scores a large pool batch of ``L`` and trains on the
        ``k`` it keeps (online batch filtering: ``cds``, ``classact``, ``askllm``, ``blo``).

        ``L = large_batch`` or ``⌈pool / β⌉`` (so β·L ≈ the pool batch), capped by ``cap`` and the
        pool; ``k = round(β·L)``.  Under ``matched``, ``k`` is the ``train`` examples every update
        trains on (less the target batch when the update also takes it, ``with_target``), whatever
        the caps did to ``L``; ``note`` then says when that departs from ``round(β·L)`` or when
        ``L`` is too small to select anything (None otherwise)."""
        uncapped = large_batch if large_batch is not None else math.ceil(self.pool / max(budget, 1e-12))
        L = int(max(1, min(uncapped, cap, n_pool)))
        k = int(max(1, min(L, round(budget * L))))
        if not self.matched:
            return L, k, None
        want = int(max(1, self.train - (self.target if with_target else 0)))
        k_matched = min(L, want)
        note = None
        if k_matched < want:
            note = (f"the scored batch L={L} is smaller than the {want} pool examples runner.match_examples "
                    f"asks for; every step trains on all {L} scored examples (no selection)")
        elif k_matched != k and (large_batch is not None or L < uncapped):  # else k ≈ the pool batch anyway
            note = (f"runner.match_examples keeps k={k_matched} of each scored batch of L={L} "
                    f"(k/L={k_matched / L:.3g}) instead of round(β·L)={k} (β={budget:g}); "
                    f"runner.match_examples=false keeps the paper's {k}")
        return L, k_matched, note

    def check_large_batch(self, large_batch: int | None, *, with_target: bool = False) -> None:
        """Before launch: a configured ``large_batch`` must hold the examples a matched step keeps."""
        if not self.matched:
            return
        want = self.train - (self.target if with_target else 0)
        if with_target and want < 1:
            raise ConfigError(f"method.include_target_in_step under runner.match_examples needs runner.batch_size "
                              f"({self.train}) > runner.target_batch_size ({self.target})")
        if large_batch is not None and large_batch < want:
            raise ConfigError(f"method.large_batch={large_batch} < the {want} examples runner.match_examples "
                              f"keeps per step (raise it, or set it to null)")


@dataclass(frozen=True)
class RunSettings:
    """What a method's ``check_config`` may know of the run's training before launch, read from
    the composed config in this one place (beside :class:`StepExamples`): the runner
    (``vision`` | ``language``), the optimiser's name and momentum, the learning-rate schedule."""

    runner: str
    optimizer: str
    momentum: float
    schedule: str

    @classmethod
    def of(cls, run_cfg: Any) -> "RunSettings":
        rc = run_cfg.runner
        return cls(str(rc.get("name")), str(rc.optimizer.name), float(rc.optimizer.get("momentum", 0.0) or 0.0),
                   str(rc.get("schedule", "constant")))
