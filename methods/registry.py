"""Method registry: ``@register_method(name, config=Dataclass)``.

Registration also stores the typed config in Hydra's ConfigStore as
``method/<name>``, so ``method=<name>`` selects it, ``method.<field>=…`` is
type-checked, and Hydra's error lists every registered name.  The built-in methods are the
modules listed in :mod:`selbench.methods.catalogue`; a plugin is any module named by the
``selbench.plugins`` entry point / ``SELBENCH_PLUGINS`` environment variable: no runner edits.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from hydra.core.config_store import ConfigStore

from selbench.methods.base import BUDGET_USES, Method, MethodConfig
from selbench.core.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type[Method]
    config: type[MethodConfig]


_REGISTRY: dict[str, Entry] = {}


def register_method(name: str, config: type[MethodConfig] = MethodConfig):
    if not dataclasses.is_dataclass(config) or not issubclass(config, MethodConfig):
        raise TypeError(f"config for method {name!r} must be a dataclass subclassing MethodConfig")

    def deco(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered (by {_REGISTRY[name].cls.__module__})")
        if cls.kind not in ("selector", "reweighter", "synthesizer"):
            raise TypeError(f"method {name!r} must subclass Selector, Reweighter or Synthesizer")
        if cls.budget_use not in BUDGET_USES:
            raise TypeError(f"method {name!r}: budget_use={cls.budget_use!r} (choose from: {', '.join(BUDGET_USES)})")
        _REGISTRY[name] = Entry(name, cls, config)
        ConfigStore.instance().store(group="method", name=name, node=config(name=name))
        return cls

    return deco


def unregister_method(name: str) -> None:
    """For tests that register throwaway methods."""
    _REGISTRY.pop(name, None)


def get_method(name: str) -> Entry:
    load_builtin_methods()
    if name not in _REGISTRY:
        broken = "".join(f"; {m} failed to import: {why}" for m, why in BROKEN.items())
        raise ConfigError(f"unknown method {name!r} (choose from: {', '.join(sorted(_REGISTRY))}){broken}")
    return _REGISTRY[name]


def registered() -> dict[str, Entry]:
    load_builtin_methods()
    return dict(_REGISTRY)


_loaded = False
#: method modules that failed to import → the reason (named in the unknown-method error)
BROKEN: dict[str, str] = {}


def load_builtin_methods() -> None:
    """Import the catalogue's built-in method modules plus declared plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from selbench.methods.catalogue import BUILTIN_MODULES

    names = list(BUILTIN_MODULES)
    names += [ep.value for ep in entry_points(group="selbench.plugins")]
    names += [m.strip() for m in os.environ.get("SELBENCH_PLUGINS", "").split(",") if m.strip()]
    for modname in names:
        try:
            importlib.import_module(modname)
        except Exception as e:  # noqa: BLE001 - one broken module must not take the others (or --help) down
            BROKEN[modname] = f"{type(e).__name__}: {e}".splitlines()[0]
            print(f"selbench: warning: method module {modname} failed to import ({BROKEN[modname]}); "
                  f"its methods are unavailable", file=sys.stderr)
