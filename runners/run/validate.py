"""Check a config (and the command line that made it) before anything runs.

Every problem becomes one ``ConfigError`` line that names the bad value and what
is allowed.  The whole sweep is checked — each value of each swept key, the preset's
own sweep included — before Hydra's launcher creates anything, and the checks write
nothing themselves (a directory made to probe writability is removed again).
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from selbench.methods.registry import get_method
from selbench.core.errors import ConfigError
from selbench.runners.run.check_keys import check_added_keys, check_runner
from selbench.runners.tasks import task_module

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _range(name: str, value, lo, hi, lo_open=False, hi_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(f"{name}={value} is out of range; allowed: {lb}{lo}, {hi}{rb}")


#: configs that passed in this process (as YAML): a job whose command line ``validate_overrides``
#: already checked is not checked again when it runs (``check_config`` once per job)
_PASSED: set[str] = set()


def check_config(cfg: DictConfig, local_devices: bool = True) -> None:
    """``local_devices=False``: the jobs run on other machines (Slurm), so whether *this* one has
    CUDA says nothing; the device is then checked in the job."""
    key = OmegaConf.to_yaml(cfg) + f"\n#local_devices={local_devices}"
    if key not in _PASSED:
        _check_config(cfg, local_devices)
        _PASSED.add(key)


def _check_config(cfg: DictConfig, local_devices: bool = True) -> None:
    _range("budget.fraction", cfg.budget.fraction, 0, 1, lo_open=True)
    objective = str(cfg.get("objective") or "")
    if not objective.startswith("val_"):
        raise ConfigError(f"objective={objective!r} must be a validation metric (val_accuracy, val_loss, …): "
                          f"the test set is only for the final number, never for tuning")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} must be a non-negative integer")
    check_runner(cfg.runner, local_devices)
    progress = cfg.get("progress", "auto")
    if progress not in ("auto", True, False):
        raise ConfigError(f"progress={progress!r} (choose from: auto, true, false)")
    noise = cfg.scenario.get("noise")
    if noise:
        _range("scenario.noise.rate", noise.rate, 0, 1)
    classes = cfg.scenario.get("classes")
    if classes is not None and len(classes) == 0:
        raise ConfigError("scenario.classes=[] keeps no class; allowed: a list of at least two class ids, "
                          "or null for all classes")
    entry = get_method(cfg.method.name)
    modality = task_module(cfg.runner.name).MODALITY
    if modality not in entry.cls.modalities:
        raise ConfigError(f"method {entry.name!r} does not support the {modality} runner "
                          f"(it supports: {', '.join(entry.cls.modalities)})")
    for group in ("dataset", "scenario", "model"):  # text configs declare `modality: language`
        declared = str(cfg[group].get("modality", "vision"))
        if declared != modality:
            raise ConfigError(f"{group}={cfg[group].get('name')} is a {declared} config but runner={cfg.runner.name} "
                              f"is {modality} (add runner={declared})")
    task_module(cfg.runner.name).check_config(cfg)
    entry.cls.check_config(OmegaConf.to_object(cfg.method), cfg)


_MISSING = re.compile(r"Could not find '([^']+)/([^'/]+)'")


def _one_line(e: Exception) -> str:
    """Hydra's multi-line errors condensed to one line that lists the valid options."""
    msg = str(e)
    m = _MISSING.search(msg)
    if m:
        group, name = m.group(1), m.group(2)
        opts = re.findall(r"^\t(\S+)$", msg, flags=re.M)
        return f"unknown {group} {name!r}" + (f" (choose from: {', '.join(opts)})" if opts else "")
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    cause = e.__cause__
    if cause is not None and str(cause).strip():  # OmegaConf's reason: "Invalid value 'nope', expected one of [...]"
        first = str(cause).strip().splitlines()[0].strip()
        if first not in lines:
            lines = lines[:1] + [first]
    return "; ".join(lines[:2]) if lines else type(e).__name__


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse the overrides: {_one_line(e)}") from None


def _choices(overrides: list[str]) -> list[tuple[str, list[str]]]:
    """``(key, [key=value, …])`` per non-hydra override; interval / Optuna ranges are left to the sweeper."""
    out = []
    for o in _parse(overrides):
        key = o.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            continue
        if o.is_sweep_override():
            if o.is_interval_sweep():
                continue
            out.append((key, [f"{key}={v}" for v in o.sweep_string_iterator()]))
        else:
            out.append((key, [o.input_line]))
    return out


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each swept key (the others at their first value).

    Linear in the number of values rather than the Cartesian product, which is enough
    to catch every bad value.
    """
    choices = _choices(overrides)
    base = [vals[0] for _, vals in choices]
    variants = [base]
    for i, (_, vals) in enumerate(choices):
        for v in vals[1:]:
            variants.append(base[:i] + [v] + base[i + 1:])
    return variants


class Plan:
    """What a command line launches: every job's overrides (linear sample), the sweeper, the job count."""

    def __init__(self, overrides: list[str], config_name: str = "config"):
        from hydra import compose

        hydra_ovr = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
        base = [o for o in (v[0] for _, v in _choices(overrides))]
        try:
            hcfg = compose(config_name=config_name, overrides=base + hydra_ovr, return_hydra_config=True)
        except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf errors: one line
            raise ConfigError(_one_line(e)) from None
        sweeper = hcfg.hydra.sweeper
        self.sweeper = str(sweeper.get("_target_") or BASIC_SWEEPER)
        # a preset's own sweep (`hydra.sweeper.params`) is checked like one given on the command line;
        # the command line wins for a key given in both, as in Hydra's basic sweeper
        given = {k.lstrip("+~") for k, _ in _choices(overrides)}
        params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
        self.overrides = list(overrides) + [f"{k}={v}" for k, v in params.items() if k not in given]
        self.variants = expand_sweep(self.overrides)
        if self.sweeper == BASIC_SWEEPER:
            self.n_jobs = math.prod(len(v) for _, v in _choices(self.overrides)) or 1
        else:
            self.n_jobs = int(sweeper.get("n_trials") or 0) or None
        self.multirun = str(hcfg.hydra.mode) == "RunMode.MULTIRUN"
        #: jobs run on other machines (a cluster launcher): this machine's devices are not theirs
        self.remote = "slurm" in str(hcfg.hydra.launcher.get("_target_") or "").lower()

    @property
    def needs_validation(self) -> bool:
        """A sweeper other than the grid (Optuna …) chooses by ``objective``, a validation metric."""
        return self.sweeper != BASIC_SWEEPER


def validate_overrides(overrides: list[str], config_name: str = "config") -> int:
    """Compose and check every variant of a (possibly swept) command line.  Returns the job count
    (None for a sweeper that decides as it goes without ``n_trials``)."""
    return validate_plan(overrides, config_name).n_jobs


def validate_plan(overrides: list[str], config_name: str = "config") -> Plan:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    explicit_pool = any(k.lstrip("+~") == "scenario.pool_size" for k, _ in _choices(overrides))
    writable: dict[str, str] = {}
    scenarios: dict[str, DictConfig] = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        plan = Plan(overrides, config_name)
        for variant in plan.variants:
            try:
                cfg = compose(config_name=config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(_one_line(e)) from None
            check_added_keys(variant, cfg, CONF_DIR)
            check_config(cfg, local_devices=not plan.remote)
            writable.setdefault(str(cfg.results_dir), "results_dir")
            if cfg.get("cache_dir"):
                writable.setdefault(str(cfg.cache_dir), "cache_dir")
            scenarios.setdefault(_scenario_key(cfg), cfg)
    for d, name in sorted(writable.items()):
        check_writable(Path(d), name)
    for cfg in scenarios.values():
        check_scenario(cfg, explicit_pool=explicit_pool, needs_validation=plan.needs_validation)
    return plan


def _scenario_key(cfg: DictConfig) -> str:
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "scenario", "scale")}
    parts["runner"], parts["tokenizer"] = cfg.runner.name, OmegaConf.to_container(cfg.model, resolve=True).get("tokenizer")
    return repr(sorted(parts.items()))


def check_scenario(cfg: DictConfig, explicit_pool: bool = False, needs_validation: bool = False) -> None:
    """Build the scenario once, so a bad scenario value (or missing data) fails the whole
    sweep before launch instead of every job after it (a scenario is seconds to build;
    the jobs rebuild it with their own seeds).

    A pool request larger than the data is refused when the command line asked for it
    (``scenario.pool_size=…``) and warned about, naming both sizes, when it is a config's
    default; a sweeper that tunes on ``objective`` needs a validation split."""
    s = task_module(cfg.runner.name).build_scenario(cfg, int(cfg.seed))
    asked = cfg.scenario.get("pool_size")
    cap = cfg.scale.get("max_pool")
    want = None if asked is None else (int(asked) if cap is None else min(int(asked), int(cap)))
    if want is not None and len(s.pool) < want:
        where = f"dataset={cfg.dataset.name} scenario={cfg.scenario.get('name')}"
        msg = (f"scenario.pool_size={asked} but {where} has only {len(s.pool)} pool examples left after "
               f"the target and validation sets; allowed: scenario.pool_size <= {len(s.pool)} (or null for all)")
        if explicit_pool:
            raise ConfigError(msg)
        print(f"selbench: warning: {msg}; the pool is {len(s.pool)} examples", file=sys.stderr)
    if needs_validation and (s.val is None or len(s.val) == 0):
        raise ConfigError(f"the sweeper tunes on objective={cfg.get('objective')}, but "
                          f"scenario.val_per_class={cfg.scenario.get('val_per_class')} gives no validation split; "
                          f"allowed: scenario.val_per_class >= 1")


def check_writable(path: Path, name: str = "results_dir") -> None:
    """``path`` must exist or be creatable, and accept a file.  Checked by doing it; whatever the
    probe created is removed again, so a refused command leaves no empty folder."""
    import tempfile

    path = Path(path)
    made = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        for attempt in range(5):  # another launcher's probe may remove the folder between the two steps
            try:
                path.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path, prefix=".selbench-probe-"):
                    break
            except FileNotFoundError:
                if attempt == 4:
                    raise
    except OSError as e:
        raise ConfigError(f"{name}={str(path)!r} is not writable ({e.strerror or e})") from None
    finally:
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
