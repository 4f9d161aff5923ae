"""What each method kind does before the shared training loop: a selector selects, a
synthesizer synthesises, a reweighter sets up its own update step.  Looked up in
``PREPARE`` by kind, so the job has no per-method branches.

Every kind hands the loop a ``step_fn(step) -> stats`` whose real update trains on the
same number of examples per step as every other method when ``runner.match_examples``
is on (``ctx.examples``: ``methods.base.StepExamples``, resolved by ``runners/run/context.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from selbench.core.data import Split
from selbench.core.errors import ConfigError
from selbench.core.sampling import CyclicSampler
from selbench.methods.base import RunContext, Selection, Synthesis, weighted_step


@dataclass
class Prepared:
    """What a method kind hands the shared loop."""

    step_fn: Callable[[int], dict]
    pool_weights: Callable[[], torch.Tensor]  # current per-pool-example weights
    summary: dict
    artifacts: dict
    samplers: list = field(default_factory=list)
    output: dict = field(default_factory=dict)  # the offline phase's result, kept in checkpoints


def fixed_set_trainer(ctx: RunContext, data: Split, weights: torch.Tensor | None, optimizer,
                      generator: torch.Generator | None = None):
    """A fixed training set's step (a selection, a synthetic set; also a synthesizer's repeated
    evaluators): cyclic batches of ``ctx.examples.pool``, weighted when ``weights`` is given."""
    if len(data) == 0:
        raise ConfigError("the method selected an empty training set")
    sampler = CyclicSampler(len(data), generator if generator is not None else ctx.generator)
    if ctx.data_on_device:  # once, not a host→device copy of every batch
        data = Split(data.x.to(ctx.device), data.y.to(ctx.device))
        weights = None if weights is None else weights.to(ctx.device)

    def step_fn(step: int) -> dict:
        idx = sampler.next(ctx.examples.pool)
        w = None if weights is None else weights[idx]
        return {"loss": weighted_step(ctx, optimizer, data.x[idx], data.y[idx], w)}

    return step_fn, sampler


def prepare_selector(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    if restored:  # resumed run: the selection was made before the interruption
        sel = Selection(restored["pool_indices"], restored.get("pool_weights"), int(restored["target_repeats"]),
                        restored.get("scores"), restored.get("info") or {})
    else:
        with cost.phase("select"):
            sel = method.select(ctx)
    idx = sel.pool_indices.long().cpu()
    parts, weights = [ctx.pool.subset(idx)], []
    if sel.pool_weights is not None:
        w = sel.pool_weights.float().cpu()
        weights.append(w / w.mean().clamp_min(1e-12))  # mean-1 so the step size matches unweighted training
    else:
        weights.append(torch.ones(len(idx)))
    for _ in range(sel.target_repeats):
        parts.append(ctx.target)
        weights.append(torch.ones(len(ctx.target)))
    data = Split.concat(*parts)
    w_all = torch.cat(weights) if sel.pool_weights is not None else None
    vec = sel.pool_weight_vector(ctx.n_pool)
    summary = {"n_selected": len(idx), "effective_budget": len(idx) / max(ctx.n_pool, 1),
               "target_repeats": sel.target_repeats, "n_train": len(data), **sel.info}
    artifacts = {"pool_indices": idx.numpy(), "pool_weights": vec.numpy()}
    if sel.scores is not None:
        artifacts["scores"] = sel.scores.float().cpu().numpy()
    # batches from a fresh stream of the run seed, not from whatever the selection left of ctx.generator:
    # two selectors that keep the same set train identically (common random numbers), and a selection
    # saved and read back by from_selection reproduces its run
    step_fn, sampler = fixed_set_trainer(ctx, data, w_all, optimizer, torch.Generator().manual_seed(ctx.seed))
    output = {"pool_indices": idx, "pool_weights": sel.pool_weights, "target_repeats": sel.target_repeats,
              "scores": sel.scores, "info": sel.info}
    return Prepared(step_fn, lambda: vec, summary, artifacts, [sampler], output)


def prepare_reweighter(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    method.setup(ctx, optimizer)
    pool_s, tgt_s = CyclicSampler(ctx.n_pool, ctx.generator), CyclicSampler(len(ctx.target), ctx.generator)

    def step_fn(step: int) -> dict:
        return method.step(ctx, step, pool_s.next(ctx.examples.pool), tgt_s.next(ctx.examples.target))

    return Prepared(step_fn, lambda: method.pool_weights(ctx).float().cpu(),
                    {"n_train": ctx.n_pool + len(ctx.target)}, {}, [pool_s, tgt_s])


def prepare_synthesizer(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    """The synthetic set is made once (cost phase ``synthesize``, kept in checkpoints) and the
    runner's loop trains the evaluator on it.  ``info["pool_indices"]`` (the pool examples the set
    was built from, if any) goes to ``selection.npz`` as a 0/1 pool weight, not into the record."""
    if restored:
        syn = Synthesis(Split(restored["x"], restored["y"]), int(restored["storage_bytes"]), restored.get("weights"),
                        restored.get("info") or {})
        used = restored.get("pool_indices")
    else:
        with cost.phase("synthesize"):
            syn = method.synthesize(ctx)
        used = syn.info.pop("pool_indices", None)
    vec = torch.zeros(ctx.n_pool)
    if used is not None:
        vec[torch.as_tensor(used).long().cpu()] = 1.0
    summary = {"n_train": len(syn.data), "storage_bytes": syn.storage_bytes, **syn.info}
    step_fn, sampler = fixed_set_trainer(ctx, syn.data, syn.weights, optimizer)
    output = {"x": syn.data.x, "y": syn.data.y, "storage_bytes": syn.storage_bytes, "weights": syn.weights,
              "info": syn.info, "pool_indices": used}
    return Prepared(step_fn, lambda: vec, summary, {"pool_weights": vec.numpy()}, [sampler], output)


PREPARE = {"selector": prepare_selector, "reweighter": prepare_reweighter, "synthesizer": prepare_synthesizer}

