"""One small registry type for everything chosen by name in a config (data sources,
models, loggers…): duplicate names are rejected and an unknown name is a one-line
``ConfigError`` that lists the valid ones.  (Methods have their own, richer registry
in ``methods/registry.py``: it also stores typed configs in Hydra's ConfigStore.)"""
from __future__ import annotations

from typing import Any, Callable

from selbench.core.errors import ConfigError


class Registry(dict):
    def __init__(self, what: str, where: str = ""):
        super().__init__()
        self.what, self.where = what, where

    def register(self, name: str, **attrs: Any) -> Callable:
        """Decorator; ``attrs`` are set on the registered object (e.g. ``needs_root=True``)."""

        def deco(obj):
            if name in self:
                raise ValueError(f"{self.what} {name!r} registered twice")
            for k, v in attrs.items():
                setattr(obj, k, v)
            self[name] = obj
            return obj

        return deco

    def lookup(self, name: str):
        if name not in self:
            raise ConfigError(f"unknown {self.what} {name!r}{self.where} (choose from: {', '.join(sorted(self))})")
        return self[name]
