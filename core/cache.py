"""A content-keyed artifact cache for expensive intermediate results.

Proxy models, gradient features, TRAK projections and expert trajectories depend
only on (part of) the config; keying them by a hash of exactly that part lets every
run of a sweep that shares it reuse one copy.  Entries are written atomically and
loaded with ``weights_only=True``; an unreadable entry is recomputed, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from selbench.core.io import atomic_torch_save


class ArtifactCache:
    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None
        self.hits = self.misses = 0

    @staticmethod
    def key_of(key: Any) -> str:
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, name: str, key: Any) -> Path | None:
        return self.root / name / f"{self.key_of(key)}.pt" if self.root else None

    def get_or_compute(self, name: str, key: Any, compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``(name, key)`` or compute, store and return it.

        ``compute`` must return tensors / plain containers (what ``weights_only`` loads).
        """
        path = self.path(name, key)
        if path is not None and path.exists():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
                self.hits += 1
                return value
            except Exception as e:  # noqa: BLE001 - a damaged entry is recomputed
                print(f"selbench: cache entry {path} unreadable ({type(e).__name__}); recomputing", file=sys.stderr)
        self.misses += 1
        value = compute()
        if path is not None:
            atomic_torch_save(path, value)
        return value
