"""Pre-launch checks of the runner block and of keys a command line adds (``+group.key=…``).

Hydra refuses an unknown key unless it is added with ``+``; an added key nothing reads
would be silently ignored, so it is refused here, naming the keys that group knows.
The runner's optimiser and schedule are checked by building them on a dummy parameter
(the same code the run uses, so the allowed values cannot drift apart).
"""
from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from selbench.core.errors import ConfigError

#: more steps than any protocol uses (10^8 steps of a 1 ms step is more than a day); a larger
#: value is a typo (`runner.steps=1e12`)
MAX_STEPS = 10**8
#: runner keys read by the code that no runner config sets (presets add them)
OPTIONAL_RUNNER_KEYS = {"eval_repeats"}
#: groups whose options share one schema: an added key must be one some option of the group has
SCHEMA_GROUPS = ("runner", "scale", "scenario", "dataset", "model", "budget", "logger")


def _int(name: str, v, lo: int, hi: int | None = None, none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
    if not ok:
        allowed = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")
        allowed += f" no larger than {hi}" if hi is not None else ""
        raise ConfigError(f"{name}={v!r} must be {allowed}" + (" or null" if none_ok else ""))


def _bool(name: str, v) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"{name}={v!r} (choose from: true, false)")


def check_device(name: str, local: bool = True) -> None:
    import torch

    name = str(name)
    if name in ("auto", "cpu"):
        return
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not local:
            return
        if not torch.cuda.is_available():
            raise ConfigError(f"runner.device={name!r} but no CUDA device is available (use cpu or auto)")
        n = torch.cuda.device_count()
        if ":" in name and int(name[5:]) >= n:
            raise ConfigError(f"runner.device={name!r} but this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return
    raise ConfigError(f"runner.device={name!r} (choose from: auto, cpu, cuda, cuda:N)")


def check_runner(rc: DictConfig, local_devices: bool = True) -> None:
    """Every runner value, before launch (each would otherwise fail mid-run or be ignored)."""
    import torch

    from selbench.runners.run.loop import check_precision, make_optimizer, make_schedule

    _int("runner.steps", rc.get("steps"), 1, MAX_STEPS)
    for key in ("batch_size", "target_batch_size", "eval_every", "eval_batch_size"):
        _int(f"runner.{key}", rc.get(key), 1)
    _int("runner.checkpoint_every", rc.get("checkpoint_every", 0), 0)
    _int("runner.threads", rc.get("threads"), 1, none_ok=True)
    _int("runner.eval_repeats", rc.get("eval_repeats"), 1, none_ok=True)
    for key in ("deterministic", "match_examples", "compile", "keep_checkpoint"):
        if key in rc:
            _bool(f"runner.{key}", rc[key])
    if str(rc.get("data_on_device", "auto")) not in ("auto", "True", "False"):
        raise ConfigError(f"runner.data_on_device={rc.data_on_device!r} (choose from: auto, true, false)")
    check_precision(rc.get("precision"))
    check_device(rc.get("device", "auto"), local_devices)
    opt = rc.optimizer
    lr = opt.get("lr")
    try:
        ok = math.isfinite(float(lr)) and float(lr) > 0
    except (TypeError, ValueError):
        raise ConfigError(f"runner.optimizer.lr={lr!r} is not a number") from None
    if not ok:
        raise ConfigError(f"runner.optimizer.lr={lr} is out of range; allowed: a finite number > 0")
    for key in ("momentum", "weight_decay", "clip_grad_norm"):
        v = opt.get(key)
        if v is None:
            continue
        clip = key == "clip_grad_norm"  # a clip of 0 would zero every step
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (clip and v == 0):
            allowed = "null or a finite number > 0" if clip else "a finite number >= 0"
            raise ConfigError(f"runner.optimizer.{key}={v!r} is out of range; allowed: {allowed}")
    try:
        optimizer = make_optimizer([torch.zeros(1, requires_grad=True)], opt)
        make_schedule(optimizer, str(rc.get("schedule", "constant")), int(rc.steps))
    except (ValueError, TypeError) as e:  # torch's own checks (e.g. nesterov without momentum)
        raise ConfigError(f"runner.optimizer={OmegaConf.to_container(opt)}: {e}") from None


def _flat(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        if k == "defaults":
            continue
        out.add(prefix + str(k))
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
    return out


@lru_cache(maxsize=None)
def known_keys(conf_dir: Path, group: str) -> frozenset[str]:
    """Every key (dotted, nested ones included) that some option of ``group`` sets."""
    keys: set[str] = set()
    for p in sorted((conf_dir / group).rglob("*.yaml")):
        data = yaml.safe_load(p.read_text()) or {}
        if isinstance(data, dict) and "@package _global_" not in p.read_text().split("\n", 1)[0]:
            keys |= _flat(data)
    if group == "runner":
        keys |= OPTIONAL_RUNNER_KEYS
    return frozenset(keys)


def check_added_keys(overrides: list[str], cfg: DictConfig, conf_dir: Path) -> None:
    """Refuse ``+key=…`` / ``++key=…`` overrides that name a key nothing reads."""
    from selbench.methods.registry import get_method

    top = {k for k in (yaml.safe_load((conf_dir / "config.yaml").read_text()) or {}) if k != "defaults"}
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir()}
    for o in overrides:
        if not o.startswith("+") or "=" not in o:
            continue
        key = o.split("=", 1)[0].lstrip("+")
        head, _, rest = key.partition(".")
        if head == "hydra" or "/" in key or (not rest and head in groups):  # hydra's own / a config group choice
            continue
        if not rest:
            known = top
            what = "top-level key"
        elif head == "method":
            known = {f.name for f in dataclasses.fields(get_method(cfg.method.name).config)}
            rest, what = rest.split(".", 1)[0], f"key of method {cfg.method.name}"
        elif head in SCHEMA_GROUPS:
            known, what = known_keys(conf_dir, head), f"{head} key"
        else:
            continue
        if (rest or head) not in known:
            near = sorted(k for k in known if "." not in k)
            raise ConfigError(f"+{key}: unknown {what} {(rest or head)!r}; known: {', '.join(near)}")
