"""``make_context``: the one place a ``RunContext`` is built (the job, the benchmark and
the tests all call it), including how ``runner.match_examples`` splits the batch
(``ctx.examples``: ``methods.base.StepExamples``, resolved once).

**Equal examples per step.**  A step's *training examples* are the examples whose loss
enters the real parameter update.  A selector trains on ``runner.batch_size`` of its set.
A reweighter that also puts the target batch into its update (``Reweighter.target_in_update``,
e.g. BADS) would train on ``batch_size + target_batch_size``; with
``runner.match_examples=true`` (the default) its pool and target batches are scaled so
that they sum to ``batch_size``, keeping the configured pool : target ratio.  With
``false`` (the papers' protocols) each method uses the batch sizes as configured, and the
record and tables show the difference (``compute.train_examples_per_step``).
"""
from __future__ import annotations

from typing import Callable

import torch
from omegaconf import DictConfig

from selbench.core.cache import ArtifactCache
from selbench.core.data import Scenario, Split
from selbench.methods.base import RunContext, StepExamples
from selbench.runners.run.loop import make_optimizer
from selbench.runners.run.text_services import text_services


def _on_device(rc, device: torch.device, method_cls=None) -> bool:
    """``runner.data_on_device``: true | false | auto.  ``auto`` = on a CUDA device: the
    reweighters' pool and target (their step indexes them every step) and every fixed training
    set (moved once, after selection or synthesis); a selector's or synthesizer's offline phase
    reads the pool as its own code expects (host tensors).  Without ``method_cls``: the fixed
    training set's answer."""
    v = rc.get("data_on_device", "auto")
    if device.type == "cpu":
        return False
    if str(v) == "auto":
        return device.type == "cuda" and (method_cls is None or getattr(method_cls, "kind", None) == "reweighter")
    return bool(v)


def make_context(cfg: DictConfig, scenario: Scenario, adapter, cost, *, method_cls=None, steps: int | None = None,
                 generator: torch.Generator | None = None, log: Callable[[int, dict], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> RunContext:
    rc = cfg.runner
    pool, target = scenario.pool, scenario.target
    if _on_device(rc, adapter.device, method_cls):  # batches are then indexed where the model lives: no copy per step
        pool, target = (Split(s.x.to(adapter.device), s.y.to(adapter.device)) for s in (pool, target))
    if rc.get("compile", False) and not getattr(adapter.model, "_selbench_compiled", False):
        adapter.model.compile()  # in place: state_dict keys (checkpoints) unchanged
        adapter.model._selbench_compiled = True
    return RunContext(
        pool=pool, target=target, num_classes=scenario.num_classes, modality=scenario.modality,
        adapter=adapter, budget=float(cfg.budget.fraction), seed=int(cfg.seed),
        generator=generator if generator is not None else torch.Generator().manual_seed(int(cfg.seed)),
        device=adapter.device, cost=cost, steps=int(steps if steps is not None else rc.steps),
        examples=StepExamples.of(cfg, method_cls),
        data_on_device=_on_device(rc, adapter.device),
        make_optimizer=lambda params, ocfg=None: make_optimizer(params, ocfg or rc.optimizer),
        log=log or (lambda step, d: None), warn=warn or (lambda msg: None), cache=ArtifactCache(cfg.get("cache_dir"), cost=cost),
        # text methods that read the examples as text (ifd, selectit, semdedup, askllm …) decode token ids with it
        # pool_index: the dataset's own index of each pool example (method=from_selection reads selections in it)
        extra={"pool_index": scenario.pool_index,
               **({"tokenizer": scenario.tokenizer, **text_services(scenario)}
                  if getattr(scenario, "tokenizer", None) is not None else {})},
    )
