"""Tasks: one module per runner (``runner.name``), each with ``MODALITY``,
``build_scenario(cfg, seed)`` and ``build_adapter(cfg, scenario, cost, device)``.

A task module is imported only when its runner is chosen, so the language stack
(transformers, peft) is never loaded for a vision run.
"""
from __future__ import annotations

import importlib

from selbench.core.errors import ConfigError

TASKS = {"vision": "selbench.runners.tasks.vision", "language": "selbench.runners.tasks.language"}


def task_module(name: str):
    if name not in TASKS:
        raise ConfigError(f"unknown runner {name!r} (choose from: {', '.join(sorted(TASKS))})")
    try:
        return importlib.import_module(TASKS[name])
    except ModuleNotFoundError as e:
        if e.name == TASKS[name]:
            raise ConfigError(f"runner {name!r} is not available in this version of selbench") from None
        raise
