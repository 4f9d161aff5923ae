"""One run, start to finish: config → scenario → model → method → training → record.

The three method kinds share everything but their preparation, which is looked up
in ``PREPARE`` by kind (no per-method branches here).  The run itself is built by
``runners/run/build.py`` (which the benchmark reuses) and evaluated by
``runners/run/evaluation.py``.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from selbench.core.cost import CostTracker
from selbench.core.data import Split
from selbench.core.errors import ConfigError, DataError, DivergedError, SelbenchError
from selbench.methods.base import StepExamples
from selbench.methods.registry import get_method
from selbench.runners.run import checkpoint as ckpt
from selbench.runners.run import record as rec
from selbench.runners.run.build import Run, build_run, effective_steps, resolve_device, seed_everything
from selbench.runners.run.evaluation import BestVal, evaluate_splits, objective_name, objective_of, repeat_evaluation
from selbench.runners.run.loggers import make_logger
from selbench.runners.run.loop import clip_summary, run_steps
from selbench.runners.run.validate import check_config
from selbench.runners.tasks import task_module
from selbench.runners.tasks.metrics import selection_quality


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
    examples = StepExamples.of(cfg, entry.cls)  # equal compute: a batch too small to split is refused here
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
    record["compute"] = compute_summary(cost, record.get("steps"), examples.matched)
    record.setdefault("best_val", None)  # a failed run has no best step to report
    record["warnings"] = list(warnings)
    record["started_at"], record["finished_at"] = started, time.time()

    truth = {k: v.cpu().numpy() for k, v in scenario.truth.items()}
    try:
        index = {} if scenario.pool_index is None else {"pool_index": scenario.pool_index.cpu().numpy()}  # dataset's ids
        rec.atomic_save_npz(run_dir / "selection.npz", **artifacts, **index, **{f"truth_{k}": v for k, v in truth.items()})
        rec.write_record(run_dir, record, Path(cfg.results_dir))  # last: the completion marker; paths relative
    except OSError as e:
        raise SelbenchError(f"cannot write {e.filename or run_dir}: {e.strerror or e}") from None
    if record["status"] == "ok" and not cfg.runner.get("keep_checkpoint", False):
        (run_dir / ckpt.CHECKPOINT).unlink(missing_ok=True)
    logger.finish(record)
    return record


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


@dataclass
class Progress:
    """What training has produced so far; a checkpoint keeps it, a resumed run continues it."""

    best: BestVal
    curve: list = field(default_factory=list)
    start: int = 0


def _train_and_evaluate(cfg, entry, runner, scenario, cost, device, logger, artifacts: dict, run_dir: Path,
                        warnings: "Warnings") -> dict:
    steps, eval_every = effective_steps(cfg)
    run = build_run(cfg, entry, runner, scenario, cost, device, steps=steps, log=logger.log, warn=warnings.append)
    ck_path = run_dir / ckpt.CHECKPOINT
    state = _load_checkpoint(cfg, ck_path, device)
    prepared = run.prepare(restored=state["output"] if state else None)
    artifacts.update(prepared.artifacts)
    progress = _restore(run, state, cost, objective_name(cfg)) if state else Progress(BestVal(objective_name(cfg)))
    if progress.start:
        print(f"selbench: resuming {run_dir} from step {progress.start}", file=sys.stderr)
    _train(cfg, run, scenario, cost, logger, ck_path, eval_every, progress)
    return _final_record(cfg, run, runner, scenario, cost, artifacts, progress)


def _load_checkpoint(cfg, ck_path: Path, device) -> dict | None:
    state = ckpt.load(ck_path) if cfg.get("resume", True) and ck_path.exists() else None
    if state is not None and state.get("device", str(device)) != str(device):
        raise DataError(f"checkpoint {ck_path} was written on {state['device']} but this run is on {device}: "
                        f"resuming across devices would not reproduce the run (delete it to restart)")
    return state


def _restore(run: Run, state: dict, cost, metric: str) -> Progress:
    """Continue exactly where the interrupted run checkpointed."""
    run.adapter.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("grad_clip") is not None:  # the same config built the same clip
        run.optimizer.grad_clip.load_state_dict(state["grad_clip"])
    if run.schedule is not None:
        run.schedule.load_state_dict(state["schedule"])
    run.method.load_state_dict(state["method"])
    for sampler, st in zip(run.prepared.samplers, state["samplers"]):
        sampler.load_state_dict(st)
    cost.load_state_dict(state["cost"])
    ckpt.set_rng_state(state["rng"], run.generator)
    curve = list(state["curve"])
    best = BestVal(metric, state["best_val"]) if "best_val" in state else BestVal.from_curve(metric, curve)
    return Progress(best, curve, int(state["step"]))


def _train(cfg, run: Run, scenario, cost, logger, ck_path: Path, eval_every: int, progress: Progress) -> None:
    """The shared loop, evaluating (test and validation, weights' quality for a reweighter) at each
    eval point and checkpointing after one."""
    rc, prepared = cfg.runner, run.prepared
    track_weights = run.entry.cls.kind == "reweighter"

    def on_eval(step, extra):
        m = evaluate_splits(run.adapter, scenario)
        progress.best.see(step, m)
        point = {"step": step, **extra, **{k: v for k, v in m.items() if not k.endswith("per_class_accuracy")}}
        if track_weights:
            q = selection_quality(prepared.pool_weights(), scenario.truth, domain_names=scenario.class_names)
            point.update({f"sel_{k}": v for k, v in q.items() if isinstance(v, (int, float)) or v is None})
            if "domain_weight_share" in q:
                point["sel_domain_weight_share"] = q["domain_weight_share"]
        progress.curve.append(point)
        logger.log(step, point)

    def on_checkpoint(step: int) -> None:
        ckpt.save(ck_path, {
            "step": step, "device": str(run.device), "model": run.adapter.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "grad_clip": clip.state_dict() if (clip := getattr(run.optimizer, "grad_clip", None)) else None,
            "schedule": run.schedule.state_dict() if run.schedule is not None else None,
            "method": run.method.state_dict(), "samplers": [smp.state_dict() for smp in prepared.samplers],
            "output": prepared.output, "cost": cost.state_dict(), "curve": progress.curve,
            "best_val": progress.best.best, "rng": ckpt.rng_state(run.generator),
        })

    progress_bar = cfg.get("progress", "auto")
    show = sys.stderr.isatty() if progress_bar == "auto" else bool(progress_bar)
    run_steps(run.steps, eval_every, run.step, on_eval, cost, show, desc=f"{run.entry.name} s{cfg.seed}",
              start_step=progress.start, checkpoint_every=int(rc.get("checkpoint_every") or 0),
              on_checkpoint=on_checkpoint, precision=str(rc.get("precision") or "fp32"), device=run.device)


def _final_record(cfg, run: Run, runner, scenario, cost, artifacts: dict, progress: Progress) -> dict:
    """The final evaluation (and a synthesizer's repeated evaluators), the selection's quality
    against the ground truth, and the record's run fields."""
    ctx, prepared, kind = run.ctx, run.prepared, run.entry.cls.kind
    with cost.phase("eval"):
        final = evaluate_splits(run.adapter, scenario)
        weights = prepared.pool_weights()
    summary = dict(prepared.summary)
    summary.update(run.method.after_training(ctx))  # numbers about the trained model (lds_subset's target losses)
    evaluators = None
    if kind == "synthesizer":  # N fresh evaluators on the synthetic set: mean ± std
        out = prepared.output
        evaluators = repeat_evaluation(cfg, runner, scenario, ctx, cost, Split(out["x"], out["y"]), out["weights"],
                                       run.steps, final)
        final = {**final, **{k: v for k, v in evaluators.items() if k.endswith(("_mean", "_std"))}}
    if kind == "reweighter":
        artifacts["pool_weights"] = weights.numpy()
        summary["effective_budget"] = run.method.effective_budget(ctx)
    quality = selection_quality(weights, scenario.truth, domain_names=scenario.class_names) \
        if len(weights) == len(scenario.pool) else {}
    return {
        "metrics": final,
        "best_val": progress.best.best,
        "objective": objective_of(cfg, final),
        "curve": progress.curve,
        "steps": run.steps,
        "optim": clip_summary(run.optimizer),  # how often the shared optimiser's clip acted
        "resumed_from_step": progress.start or None,
        **({"evaluators": evaluators} if evaluators is not None else {}),
        "cache": {"hits": ctx.cache.hits, "misses": ctx.cache.misses},
        "selection": {**summary, "budget_use": run.entry.cls.budget_use, "quality": quality},
    }
