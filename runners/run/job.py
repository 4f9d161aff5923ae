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
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selbench.methods.base import StepExamples
from selbench.methods.registry import get_method
from selbench.runners.run import checkpoint as ckpt
from selbench.runners.run import record as rec
from selbench.core.cost import CostTracker
from selbench.core.data import Split
from selbench.core.errors import ConfigError, DataError, DivergedError, SelbenchError
from selbench.runners.run.loggers import make_logger
from selbench.runners.tasks import task_module
from selbench.runners.tasks.metrics import selection_quality
from selbench.runners.run.context import make_context
from selbench.runners.run.prepare import PREPARE, repeat_evaluation
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
        "method": entry.name, "kind": entry.cls.kind, "budget_use": entry.cls.budget_use, "dataset": cfg.dataset.name, "scenario": scenario.name,
        "model": cfg.model.get("name"), "runner": cfg.runner.name, "seed": seed, "budget": float(cfg.budget.fraction),
        "scale": cfg.scale.get("name"), "experiment": cfg.get("experiment_name"),
        "scenario_info": scenario.describe(), "config": config,
        "versions": rec.versions(), "git": rec.git_revision(), "host": rec.host(),
        "runtime": {"device": str(device), "threads": torch.get_num_threads(),
                    "precision": str(cfg.runner.get("precision") or "fp32"), "compile": bool(cfg.runner.get("compile", False))},
        "hydra_output_dir": _hydra_output_dir(),
    }
    artifacts: dict = {}
    warnings = Warnings()
    try:
        record.update(_train_and_evaluate(cfg, entry, runner, scenario, cost, device, logger, artifacts, run_dir,
                                          warnings))
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
    record["compute"] = compute_summary(cost, record.get("steps"), StepExamples.of(cfg, entry.cls).matched)
    record["warnings"] = list(warnings)
    record["started_at"], record["finished_at"] = started, time.time()

    truth = {k: v.cpu().numpy() for k, v in scenario.truth.items()}
    try:
        index = {} if scenario.pool_index is None else {"pool_index": scenario.pool_index.cpu().numpy()}  # dataset's ids
        rec.atomic_save_npz(run_dir / "selection.npz", **artifacts, **index, **{f"truth_{k}": v for k, v in truth.items()})
        rec.write_record(run_dir, record, Path(cfg.results_dir))  # last: the completion marker; paths relative
    except OSError as e:
        raise SelbenchError(f"cannot write the results of {run_dir}: {e.strerror or e}") from None
    if record["status"] == "ok" and not cfg.runner.get("keep_checkpoint", False):
        (run_dir / ckpt.CHECKPOINT).unlink(missing_ok=True)
    logger.finish(record)
    return record


def objective_of(cfg: DictConfig, metrics: dict) -> dict:
    """The metric a sweeper optimises, the split it comes from and its value (``validate`` has
    already refused an objective on the test split)."""
    name = str(cfg.get("objective") or "val_accuracy")
    return {"metric": name, "split": name.split("_", 1)[0], "value": metrics.get(name)}


class Warnings(list):
    """``ctx.warn``: each warning goes to stderr now and into ``record["warnings"]`` (stderr is lost on a cluster)."""

    def append(self, msg: str) -> None:
        print(f"selbench: warning: {msg}", file=sys.stderr)
        super().append(str(msg))


def compute_summary(cost: CostTracker, steps: int | None, match_examples: bool) -> dict:
    """Examples per training step: what the real update trained on, and the passes behind it."""
    train = cost.phases.get("train", {})
    per = (lambda k: train.get(k, 0) / steps) if steps else (lambda k: None)
    return {"match_examples": match_examples, "steps": steps, "train_examples": cost.train,
            "train_examples_per_step": per("train"), "forward_per_step": per("forward"),
            "backward_per_step": per("backward")}


def _read_ok(run_dir: Path) -> dict | None:
    try:
        old = rec.read_record(run_dir)
    except (ValueError, OSError):
        return None  # a corrupt record is rerun, never trusted
    return old if old and old.get("status") == "ok" else None


def _hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None


def _train_and_evaluate(cfg, entry, runner, scenario, cost, device, logger, artifacts: dict, run_dir: Path,
                        warnings: "Warnings") -> dict:
    adapter = runner.build_adapter(cfg, scenario, cost, device)
    steps, eval_every = effective_steps(cfg)
    g = torch.Generator().manual_seed(int(cfg.seed))
    rc = cfg.runner
    method = entry.cls(OmegaConf.to_object(cfg.method))
    # frozen parameters (a LoRA base model) are not the optimiser's: no weight decay or noise reaches them
    optimizer = make_optimizer([p for p in adapter.model.parameters() if p.requires_grad], rc.optimizer)
    schedule = make_schedule(optimizer, str(rc.schedule), steps)
    ctx = make_context(cfg, scenario, adapter, cost, method_cls=entry.cls, steps=steps, generator=g, log=logger.log,
                       warn=warnings.append)
    if entry.cls.kind == "synthesizer":  # a synthesizer's own iterations obey the same scale cap as training
        ctx.extra["max_steps"] = cfg.scale.get("max_steps")
    ck_path = run_dir / ckpt.CHECKPOINT
    state = ckpt.load(ck_path) if cfg.get("resume", True) and ck_path.exists() else None
    if state is not None and state.get("device", str(device)) != str(device):
        raise DataError(f"checkpoint {ck_path} was written on {state['device']} but this run is on {device}: "
                        f"resuming across devices would not reproduce the run (delete it to restart)")
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
            "step": step, "device": str(device), "model": adapter.model.state_dict(), "optimizer": optimizer.state_dict(),
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

    val = scenario.val

    def evaluate() -> dict:
        """``test_*`` (the final number only) and ``val_*`` (what objectives and tuning read)."""
        out = {f"test_{k}": v for k, v in adapter.evaluate(scenario.test).items()}
        if val is not None and len(val):
            out.update({f"val_{k}": v for k, v in adapter.evaluate(val).items()})
        return out

    def on_eval(step, extra):
        m = evaluate()
        point = {"step": step, **extra, **{k: v for k, v in m.items() if not k.endswith("per_class_accuracy")}}
        if track_weights:
            q = selection_quality(prepared.pool_weights(), scenario.truth, domain_names=scenario.class_names)
            point.update({f"sel_{k}": v for k, v in q.items() if isinstance(v, (int, float)) or v is None})
            if "domain_weight_share" in q:
                point["sel_domain_weight_share"] = q["domain_weight_share"]
        curve.append(point)
        logger.log(step, point)

    progress = cfg.get("progress", "auto")
    show = sys.stderr.isatty() if progress == "auto" else bool(progress)
    run_steps(steps, eval_every, step_fn, on_eval, cost, show, desc=f"{entry.name} s{cfg.seed}", start_step=start,
              checkpoint_every=int(rc.get("checkpoint_every") or 0), on_checkpoint=on_checkpoint,
              precision=str(rc.get("precision") or "fp32"), device=device)

    with cost.phase("eval"):
        final = evaluate()
        weights = prepared.pool_weights()
    summary = dict(prepared.summary)
    summary.update(method.after_training(ctx))  # numbers about the trained model (lds_subset's target losses)
    evaluators = None
    if entry.cls.kind == "synthesizer":  # N fresh evaluators on the synthetic set: mean ± std
        out = prepared.output
        evaluators = repeat_evaluation(cfg, runner, scenario, ctx, cost, Split(out["x"], out["y"]), out["weights"],
                                       steps, final)
        final = {**final, **{k: v for k, v in evaluators.items() if k.endswith(("_mean", "_std"))}}
    if track_weights:
        artifacts["pool_weights"] = weights.numpy()
        summary["effective_budget"] = method.effective_budget(ctx)
    quality = selection_quality(weights, scenario.truth, domain_names=scenario.class_names) if len(weights) == len(scenario.pool) else {}
    return {
        "metrics": final,
        "objective": objective_of(cfg, final),
        "curve": curve,
        "steps": steps,
        "resumed_from_step": start or None,
        **({"evaluators": evaluators} if evaluators is not None else {}),
        "cache": {"hits": ctx.cache.hits, "misses": ctx.cache.misses},
        "selection": {**summary, "budget_use": entry.cls.budget_use, "quality": quality},
    }
