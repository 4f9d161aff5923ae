"""The ``textfile`` source: a user's ``.jsonl`` or plain-text file (schema in
``datasets.text.sources``); a bad JSONL line is a one-line ``DataError`` naming the file and
line, or skipped with ``on_bad_record: skip``."""
from __future__ import annotations

import json
import re
from pathlib import Path

from selbench.core.errors import ConfigError, DataError
from selbench.datasets.text.records import TextRecord, register_text_source


@register_text_source("textfile")
def textfile(path: str | None = None, format: str = "auto", on_bad_record: str = "error") -> list[TextRecord]:
    if not path:
        raise ConfigError("dataset=textfile needs dataset.path=<file.jsonl|file.txt> (or a list of files)")
    if on_bad_record not in ("error", "skip"):
        raise ConfigError(f"dataset.on_bad_record={on_bad_record!r} (choose from: error, skip)")
    paths = [path] if isinstance(path, str) else list(path)
    out: list[TextRecord] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise ConfigError(f"dataset.path={str(p)!r} does not exist or is not a file")
        fmt = format if format != "auto" else ("jsonl" if p.suffix in (".jsonl", ".json") else "txt")
        if fmt == "jsonl":
            out += _read_jsonl(p, on_bad_record)
        elif fmt == "txt":
            paras = [t.strip() for t in re.split(r"\n\s*\n", p.read_text(encoding="utf-8", errors="replace"))]
            out += [TextRecord(t, p.stem, f"{p.name}/{i}") for i, t in enumerate(paras) if t]
        else:
            raise ConfigError(f"dataset.format={format!r} (choose from: auto, jsonl, txt)")
    if not out:
        raise DataError(f"dataset.path={path!r} holds no usable records")
    return out


def _read_jsonl(p: Path, on_bad: str) -> list[TextRecord]:
    out = []
    with open(p, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(_parse_record(line, p, n))
            except DataError:
                if on_bad == "error":
                    raise
    return out


def _parse_record(line: str, p: Path, n: int) -> TextRecord:
    where = f"{p}:{n}"
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(r, dict):
        raise DataError(f"{where}: a record must be a JSON object with 'text' or 'prompt'+'response'")
    domain = str(r.get("domain") or p.stem)
    group = str(r.get("group") or f"{p.name}/{n}")
    if "prompt" in r or "response" in r:
        for k in ("prompt", "response"):
            if k not in r:
                raise DataError(f"{where}: missing field {k!r} (an instruction record needs 'prompt' and 'response')")
            if not isinstance(r[k], str) or not r[k].strip():
                raise DataError(f"{where}: field {k!r} is empty or not a string")
        return TextRecord(r["response"], domain, group, r["prompt"])
    if "text" not in r:
        raise DataError(f"{where}: missing field 'text' (or 'prompt'+'response'); found: {', '.join(map(str, r)) or 'nothing'}")
    if not isinstance(r["text"], str) or not r["text"].strip():
        raise DataError(f"{where}: field 'text' is empty or not a string")
    return TextRecord(r["text"], domain, group)
