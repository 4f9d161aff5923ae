"""One run, start to finish: config → scenario → model → method → training → record.

The three method kinds share everything but their preparation, which is looked up
in ``PREPARE`` by kind (no per-method branches here).
"""
from __future__ import annotations

import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selbench.core.data import Split
from selbench.methods.base import RunContext, Selection, Synthesis, weighted_step
from selbench.methods.registry import get_method
from selbench.runners.run import checkpoint as ckpt
from selbench.runners.run import record as rec
from selbench.core.cache import ArtifactCache
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError, DataError, DivergedError, SelbenchError
from selbench.runners.run.loggers import make_logger
from selbench.runners.tasks import task_module
from selbench.runners.tasks.metrics import selection_quality
from selbench.core.sampling import CyclicSampler
from selbench.runners.run.validate import check_config
from selbench.runners.run.loop import make_optimizer, make_schedule, run_steps

def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runner.device={name!r} but no CUDA device is available (use cpu or auto)")
    return torch.device(name)


def effective_steps(cfg: DictConfig) -> tuple[int, int]:
    """Steps and eval interval after the ``scale`` caps (``scale=paper`` leaves the preset's)."""
    steps = int(cfg.runner.steps)
    cap = cfg.scale.get("max_steps")
    if cap is not None:
        steps = min(steps, int(cap))
    every = int(cfg.scale.get("eval_every") or cfg.runner.eval_every)
    return steps, max(1, min(every, steps))


@dataclass
class Prepared:
    """What a method kind hands the shared loop."""

    step_fn: Callable[[int], dict]
    pool_weights: Callable[[], torch.Tensor]  # current per-pool-example weights
    summary: dict
    artifacts: dict
    samplers: list = field(default_factory=list)
    output: dict = field(default_factory=dict)  # the offline phase's result, kept in checkpoints


def _fixed_set_trainer(ctx: RunContext, data: Split, weights: torch.Tensor | None, optimizer):
    if len(data) == 0:
        raise ConfigError("the method selected an empty training set")
    sampler = CyclicSampler(len(data), ctx.generator)

    def step_fn(step: int) -> dict:
        idx = sampler.next(ctx.batch_size)
        w = None if weights is None else weights[idx]
        return {"loss": weighted_step(ctx, optimizer, data.x[idx], data.y[idx], w)}

    return step_fn, sampler


def prepare_selector(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    if restored:  # resumed run: the selection was made before the interruption
        sel = Selection(restored["pool_indices"], restored.get("pool_weights"), int(restored["target_repeats"]),
                        restored.get("scores"))
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
               "target_repeats": sel.target_repeats, "n_train": len(data)}
    artifacts = {"pool_indices": idx.numpy(), "pool_weights": vec.numpy()}
    if sel.scores is not None:
        artifacts["scores"] = sel.scores.float().cpu().numpy()
    step_fn, sampler = _fixed_set_trainer(ctx, data, w_all, optimizer)
    output = {"pool_indices": idx, "pool_weights": sel.pool_weights, "target_repeats": sel.target_repeats,
              "scores": sel.scores}
    return Prepared(step_fn, lambda: vec, summary, artifacts, [sampler], output)


def prepare_reweighter(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    method.setup(ctx, optimizer)
    pool_s, tgt_s = CyclicSampler(ctx.n_pool, ctx.generator), CyclicSampler(len(ctx.target), ctx.generator)

    def step_fn(step: int) -> dict:
        return method.step(ctx, step, pool_s.next(ctx.batch_size), tgt_s.next(ctx.target_batch_size))

    return Prepared(step_fn, lambda: method.pool_weights(ctx).float().cpu(),
                    {"n_train": ctx.n_pool + len(ctx.target)}, {}, [pool_s, tgt_s])


def prepare_synthesizer(method, ctx: RunContext, optimizer, cost, restored: dict | None = None) -> Prepared:
    if restored:
        syn = Synthesis(Split(restored["x"], restored["y"]), int(restored["storage_bytes"]), restored.get("weights"),
                        restored.get("info") or {})
    else:
        with cost.phase("synthesize"):
            syn = method.synthesize(ctx)
    summary = {"n_train": len(syn.data), "storage_bytes": syn.storage_bytes, **syn.info}
    step_fn, sampler = _fixed_set_trainer(ctx, syn.data, syn.weights, optimizer)
    output = {"x": syn.data.x, "y": syn.data.y, "storage_bytes": syn.storage_bytes, "weights": syn.weights,
              "info": syn.info}
    return Prepared(step_fn, lambda: torch.zeros(0), summary, {}, [sampler], output)


PREPARE = {"selector": prepare_selector, "reweighter": prepare_reweighter, "synthesizer": prepare_synthesizer}


def run_job(cfg: DictConfig) -> dict:
    """Run one experiment and write its record.  Returns the record.

    Config and data errors (``ConfigError``/``DataError``) propagate *before* anything
    is written.  Anything that goes wrong once training starts — divergence, an
    exception inside a method, running out of memory — is written as a ``failed``
    record with the reason, and returned.
    """
    check_config(cfg)
    run_dir = rec.run_dir_for(cfg)
    if cfg.get("resume", True):
        old = _read_ok(run_dir)
        if old is not None:
            print(f"selbench: skip {run_dir} (already completed)", file=sys.stderr)
            return old
    entry = get_method(cfg.method.name)
    runner = task_module(cfg.runner.name)
    seed = int(cfg.seed)
    seed_everything(seed, bool(cfg.runner.get("deterministic", True)))
    threads_before = torch.get_num_threads()
    if cfg.runner.get("threads"):
        torch.set_num_threads(int(cfg.runner.threads))
    try:
        return _run(cfg, entry, runner, seed, run_dir)
    finally:  # an in-process sweep must not inherit one job's thread count
        torch.set_num_threads(threads_before)


def _run(cfg, entry, runner, seed: int, run_dir: Path) -> dict:
    device = resolve_device(str(cfg.runner.device))
    cost = CostTracker(device)
    started = time.time()
    with cost.phase("data"):
        scenario = runner.build_scenario(cfg, seed)  # check_config has matched method and runner modality

    config = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(cfg.logger, run_dir, config)
    record = {
        "schema": 1, "run_key": rec.run_key(cfg), "run_dir": str(run_dir),
        "method": entry.name, "kind": entry.cls.kind, "dataset": cfg.dataset.name, "scenario": scenario.name,
        "model": cfg.model.get("name"), "runner": cfg.runner.name, "seed": seed, "budget": float(cfg.budget.fraction),
        "scale": cfg.scale.get("name"), "experiment": cfg.get("experiment_name"),
        "scenario_info": scenario.describe(), "config": config,
        "versions": rec.versions(), "git": rec.git_revision(), "host": rec.host(),
        "hydra_output_dir": _hydra_output_dir(),
    }
    artifacts: dict = {}
    try:
        record.update(_train_and_evaluate(cfg, entry, runner, scenario, cost, device, logger, artifacts, run_dir))
        record["status"] = "ok"
    except DivergedError as e:
        record.update(status="failed", reason=str(e), failed_step=e.step)
    except DataError:  # e.g. a corrupt checkpoint: the user must act; write nothing
        raise
    except ConfigError as e:  # raised by a method mid-run (e.g. an empty selection): the run failed
        record.update(status="failed", reason=str(e))
    except Exception as e:  # noqa: BLE001 - one failed run must not take down a sweep
        record.update(status="failed", reason=f"{type(e).__name__}: {e}".splitlines()[0])
        rec.atomic_write_bytes(run_dir / "error.txt", traceback.format_exc().encode())
    record["cost"] = cost.summary(len(scenario.pool))
    record["started_at"], record["finished_at"] = started, time.time()

    truth = {k: v.cpu().numpy() for k, v in scenario.truth.items()}
    try:
        rec.atomic_save_npz(run_dir / "selection.npz", **artifacts, **{f"truth_{k}": v for k, v in truth.items()})
        rec.atomic_write_json(run_dir / rec.RECORD, record)  # last: the completion marker
    except OSError as e:
        raise SelbenchError(f"cannot write the results of {run_dir}: {e.strerror or e}") from None
    if record["status"] == "ok" and not cfg.runner.get("keep_checkpoint", False):
        (run_dir / ckpt.CHECKPOINT).unlink(missing_ok=True)
    logger.finish(record)
    return record


def _read_ok(run_dir: Path) -> dict | None:
    try:
        old = rec.read_record(run_dir)
    except (ValueError, OSError):
        return None  # a corrupt record is rerun, never trusted
    return old if old and old.get("status") == "ok" else None


def _hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def _train_and_evaluate(cfg, entry, runner, scenario, cost, device, logger, artifacts: dict, run_dir: Path) -> dict:
    adapter = runner.build_adapter(cfg, scenario, cost, device)
    steps, eval_every = effective_steps(cfg)
    g = torch.Generator().manual_seed(int(cfg.seed))
    rc = cfg.runner
    method = entry.cls(OmegaConf.to_object(cfg.method))
    optimizer = make_optimizer(adapter.model.parameters(), rc.optimizer)
    schedule = make_schedule(optimizer, str(rc.schedule), steps)
    ctx = RunContext(
        pool=scenario.pool, target=scenario.target, num_classes=scenario.num_classes, modality=scenario.modality,
        adapter=adapter, budget=float(cfg.budget.fraction), seed=int(cfg.seed), generator=g, device=device,
        cost=cost, steps=steps, batch_size=int(rc.batch_size), target_batch_size=int(rc.target_batch_size),
        make_optimizer=lambda params, ocfg=None: make_optimizer(params, ocfg or rc.optimizer),
        log=logger.log, cache=ArtifactCache(cfg.get("cache_dir")),
    )
    ck_path = run_dir / ckpt.CHECKPOINT
    state = ckpt.load(ck_path) if cfg.get("resume", True) and ck_path.exists() else None
    prepared = PREPARE[entry.cls.kind](method, ctx, optimizer, cost, restored=state["output"] if state else None)
    artifacts.update(prepared.artifacts)
    curve: list[dict] = []
    start = 0
    if state is not None:  # continue exactly where the interrupted run checkpointed
        adapter.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        method.load_state_dict(state["method"])
        for sampler, st in zip(prepared.samplers, state["samplers"]):
            sampler.load_state_dict(st)
        cost.load_state_dict(state["cost"])
        curve = list(state["curve"])
        ckpt.set_rng_state(state["rng"], g)
        start = int(state["step"])
        print(f"selbench: resuming {run_dir} from step {start}", file=sys.stderr)

    def on_checkpoint(step: int) -> None:
        ckpt.save(ck_path, {
            "step": step, "model": adapter.model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict() if schedule is not None else None,
            "method": method.state_dict(), "samplers": [smp.state_dict() for smp in prepared.samplers],
            "output": prepared.output, "cost": cost.state_dict(), "curve": curve, "rng": ckpt.rng_state(g),
        })

    def step_fn(step):
        out = prepared.step_fn(step)
        if schedule is not None:
            schedule.step()
        return out

    track_weights = entry.cls.kind == "reweighter"

    def on_eval(step, extra):
        m = adapter.evaluate(scenario.test)
        point = {"step": step, **extra, **{f"test_{k}": v for k, v in m.items() if k != "per_class_accuracy"}}
        if track_weights:
            q = selection_quality(prepared.pool_weights(), scenario.truth)
            point.update({f"sel_{k}": v for k, v in q.items() if isinstance(v, (int, float)) or v is None})
            if "domain_weight_share" in q:
                point["sel_domain_weight_share"] = q["domain_weight_share"]
        curve.append(point)
        logger.log(step, point)

    progress = cfg.get("progress", "auto")
    show = sys.stderr.isatty() if progress == "auto" else bool(progress)
    run_steps(steps, eval_every, step_fn, on_eval, cost, show, desc=f"{entry.name} s{cfg.seed}", start_step=start,
              checkpoint_every=int(rc.get("checkpoint_every") or 0), on_checkpoint=on_checkpoint)

    with cost.phase("eval"):
        final = adapter.evaluate(scenario.test)
        weights = prepared.pool_weights()
    if track_weights:
        artifacts["pool_weights"] = weights.numpy()
    quality = selection_quality(weights, scenario.truth) if len(weights) == len(scenario.pool) else {}
    return {
        "metrics": {"test_" + k: v for k, v in final.items()},
        "curve": curve,
        "steps": steps,
        "resumed_from_step": start or None,
        "cache": {"hits": ctx.cache.hits, "misses": ctx.cache.misses},
        "selection": {**prepared.summary, "quality": quality},
    }
