"""The one typed string knob (:class:`Choice`) and range check every method's config uses."""
from __future__ import annotations

from enum import Enum

from selbench.core.errors import ConfigError


class Choice(str, Enum):
    """Base of the bilevel methods' typed string knobs.

    A ``str``-mixin enum: as a config field OmegaConf rejects any other value when the
    config is composed (``selbench`` exits 2 with one line before launching), the member
    compares equal to its string (``cfg.selection == "top"``), prints as it, and the
    record's JSON holds the plain string. Member names must equal their values
    (OmegaConf matches a command-line value against the names).
    """

    def __str__(self) -> str:
        return str(self.value)


def check_range(key: str, value, lo: float, *, open_lo: bool = False, optional: bool = False) -> None:
    """``value ≥ lo`` (``> lo`` when ``open_lo``); None passes when ``optional``."""
    if value is None and optional:
        return
    if value is None or not (value > lo if open_lo else value >= lo):
        raise ConfigError(f"{key}={value!r} must be {'>' if open_lo else '≥'} {lo:g}")
