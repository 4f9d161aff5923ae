"""What every text source returns (``TextRecord``), and the registry of sources by name.

Every source returns a list of ``TextRecord``:

- a *document* (``prompt is None``): the loss counts every token of ``text``;
- an *instruction pair* (``prompt`` set): the loss counts only the response ``text``.

The sources register here (``datasets.text.corpora``: the packaged corpora;
``datasets.text.files``: a user file); ``datasets.text.sources.load_text_source`` loads one
by name.
"""
from __future__ import annotations

from dataclasses import dataclass

from selbench.core.registry import Registry


@dataclass
class TextRecord:
    text: str
    domain: str
    group: str
    prompt: str | None = None


TEXT_SOURCES = Registry("dataset", " for the language runner")
register_text_source = TEXT_SOURCES.register
