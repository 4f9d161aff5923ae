"""A content-keyed artifact cache for expensive intermediate results.

Proxy models, gradient features, TRAK projections and expert trajectories depend
only on (part of) the config; keying them by a hash of exactly that part lets every
run of a sweep that shares it reuse one copy.  Entries are written atomically and
loaded with ``weights_only=True``.

**Entries are checked, never trusted.**  Each is an envelope
``{"schema", "name", "key", "compute_s", "value"}``; an entry that is unreadable, of
another schema (older code), filed under another name or key, or whose value lacks a
field the caller ``expect``\\ s, is recomputed with a one-line note naming the file.

**What an artifact cost is charged to every run that uses it** (not only to whichever
run of a sweep came first): the entry records ``compute_s``, the seconds it took to
compute (including what the artifacts it read had cost).  A run that reads it without
computing it is charged that as *shared* seconds, in the cost phase it was read in
(:meth:`selbench.core.cost.CostTracker.charge_shared`), beside what it paid itself.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from selbench.core.io import atomic_torch_save

#: the envelope's layout; bump it when the envelope changes (older entries are then recomputed)
CACHE_SCHEMA = 2


class ArtifactCache:
    def __init__(self, root: str | Path | None, cost=None):
        self.root = Path(root) if root else None
        self.cost = cost  #: a CostTracker to charge shared artifacts to (None: not charged)
        self.hits = self.misses = 0
        self._nested: list[float] = []  # shared seconds read inside each compute() running here

    @staticmethod
    def key_of(key: Any) -> str:
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, name: str, key: Any) -> Path | None:
        return self.root / name / f"{self.key_of(key)}.pt" if self.root else None

    def get_or_compute(self, name: str, key: Any, compute: Callable[[], Any], expect: Iterable[str] = ()) -> Any:
        """Return the cached value for ``(name, key)`` or compute, store and return it.

        ``compute`` must return tensors / plain containers (what ``weights_only`` loads);
        ``expect``: fields a dict value must have for a stored entry to be used.
        """
        path, khash = self.path(name, key), self.key_of(key)
        if path is not None and path.exists():
            entry, why = self._load(path, name, khash, tuple(expect))
            if why is None:
                self.hits += 1
                self._charge(name, khash, float(entry["compute_s"]), computed_here=False)
                return entry["value"]
            print(f"selbench: cache entry {path} {why}; recomputing", file=sys.stderr)
        self.misses += 1
        self._nested.append(0.0)
        t0 = time.perf_counter()
        try:
            value = compute()
        finally:
            inner = self._nested.pop()
        compute_s = time.perf_counter() - t0 + inner
        self._charge(name, khash, compute_s, computed_here=True)
        if path is not None:
            atomic_torch_save(path, {"schema": CACHE_SCHEMA, "name": name, "key": khash, "compute_s": compute_s,
                                     "value": value})
        return value

    @staticmethod
    def _load(path: Path, name: str, khash: str, expect: tuple[str, ...]) -> tuple[dict | None, str | None]:
        """The entry, or None and why it cannot be used."""
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged entry is recomputed
            return None, f"unreadable ({type(e).__name__})"
        if not isinstance(entry, dict) or entry.get("schema") != CACHE_SCHEMA or "value" not in entry:
            got = entry.get("schema") if isinstance(entry, dict) else None
            return None, f"has schema {got!r}, not {CACHE_SCHEMA} (written by other code)"
        if entry.get("name") != name or entry.get("key") != khash:
            return None, f"holds {entry.get('name')}/{entry.get('key')}, not {name}/{khash}"
        missing = [k for k in expect if not isinstance(entry["value"], dict) or k not in entry["value"]]
        if missing:
            return None, f"has the wrong contents (no {', '.join(map(repr, missing))})"
        if not isinstance(entry.get("compute_s"), (int, float)):
            return None, "has no compute cost"
        return entry, None

    def _charge(self, name: str, khash: str, compute_s: float, computed_here: bool) -> None:
        if not computed_here and self._nested:  # read while computing another artifact: part of its cost
            self._nested[-1] += compute_s
        if self.cost is not None:
            self.cost.charge_shared(name, khash, compute_s, computed_here)
