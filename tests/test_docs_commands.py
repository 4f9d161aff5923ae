"""Every command line in README.md and docs/ is a test, so a documented command cannot rot.

The code blocks are read as a shell reads them: bash itself expands each block (line
continuations, quoting, ``$C``-style variables, ``;`` and ``&&``) with every command replaced by a
function that records its argv and the line it stands on. Then:

- default suite: every ``selbench`` invocation is composed and passes the checks before launch,
  every job of its sweep (in-process, the same ``validate_overrides`` the console script runs);
  a command whose line says it is *refused* must be refused, with one line;
- slow suite: every block runs for real, in order, in a scratch folder, with ``scale=debug``
  appended to each ``selbench`` call, so ``selbench-report`` and the record-reading ``python -c``
  one-liners read what the block's own runs wrote.

A command the test cannot run here (a GPU, a Slurm cluster, the test suite itself) must be listed
in :data:`NOT_RUN` with the reason; an unlisted command of an unknown kind fails the test.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO  # conftest also loads the built-in methods

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
#: the commands a documented block may use; anything else fails the extraction
KNOWN = ("selbench", "selbench-report", "python", "make", "pytest", "source", "pip", "export", "cd", "git")
#: (pattern over the joined argv, reason): documented commands that are not run by this test
NOT_RUN = [
    (r"^make (run|test|test-slow)\b", "the README's own set-up/test commands: CI runs them"),
    (r"^make (bench|claims)\b", "long passes with their own tests (tests/test_bench.py, tests/test_claims.py)"),
    (r"^pytest\b", "the test suite itself"),
    (r"^source\b|^pip\b|^export\b|^cd\b", "shell set-up, not a selbench command"),
    (r"launcher=slurm", "needs a Slurm cluster (launcher=submitit_local runs the same code path)"),
    (r"runner\.device=cuda|--device cuda", "needs a GPU"),
    (r"^python -m bench\b", "the benchmark's sections have their own tests (tests/test_bench.py)"),
    (r"^git clone\b", "brings an authors' repository for a side-by-side run; their code never enters the project"),
    (r"scripts/side_by_side/", "runs the authors' released code beside ours: needs their repository, cloned by hand"),
]
#: a documented ``.venv/bin/python`` is the project's python: the path is dropped so the stub sees it
VENV_PREFIX = re.compile(r"(?m)(^|[\s;&|(])\.venv/bin/(?=(python|selbench|selbench-report|pytest)\b)")
#: placeholders in the docs that stand for the reader's own files
PLACEHOLDER = re.compile(r"dataset\.root=(/data/\S*|DIR)\b|(dataset|method)\.path=(my\.jsonl|/data/\S*)")
REFUSED = re.compile(r"#.*\brefused\b")


@dataclass(frozen=True)
class Call:
    doc: str       #: the file, relative to the repo
    block: int     #: the code block's index in the file
    line: int      #: the line in the file
    argv: tuple[str, ...]
    comment: str   #: the comment on the command's line, if any

    @property
    def text(self) -> str:
        return " ".join(self.argv)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _blocks(path: Path) -> list[tuple[int, str]]:
    """Shell code blocks as (first line number, text)."""
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start, i = m.group(1), i + 1, i + 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            i += 1
        body = lines[start:i]
        i += 1
        first = next((ln.split()[0] for ln in body if ln.strip() and not ln.lstrip().startswith("#")), "")
        first = first.split("=", 1)[0] if re.match(r"^[A-Z_]+=", first) else first
        if lang in SHELL_LANGS and (lang or first in KNOWN) and any(ln.strip() for ln in body):
            out.append((start + 1, "\n".join(body)))
    return out


_STUB = r"""
__rec() { local n="$1"; shift; printf '%s\x1f%s' "${BASH_LINENO[1]}" "$n" >> "$__LOG";
          for a in "$@"; do printf '\x1f%s' "$a" >> "$__LOG"; done; printf '\x1e' >> "$__LOG"; }
""" + "".join(f'{c}() {{ __rec {c} "$@"; }}\n' for c in KNOWN) + r"""
command_not_found_handle() { __rec "$@"; }
"""


def _script(path: Path) -> str:
    """The file's shell blocks as one script, each line at its line number in the file (a reader's
    shell session runs the blocks in order: a variable set in one block is seen by the next)."""
    lines = [""] * len(path.read_text().splitlines())
    for start, text in _blocks(path):
        for k, ln in enumerate(VENV_PREFIX.sub(r"\1", text).splitlines()):
            lines[start - 1 + k] = ln
    return "\n".join(lines) + "\n"


def _calls(path: Path, tmp: Path) -> list[Call]:
    rel = str(path.relative_to(REPO))
    raw = path.read_text().splitlines()
    starts = [start for start, _ in _blocks(path)]
    if not starts:
        return []
    log = tmp / (rel.replace("/", "_") + ".log")
    log.write_text("")
    # nothing on PATH and an empty folder to stand in: every command reaches a stub, none runs
    sandbox = tmp / "sandbox"
    sandbox.mkdir(exist_ok=True)
    res = subprocess.run(["/bin/bash", "-c", _STUB + _script(path)], cwd=sandbox,
                         env={"__LOG": str(log), "PATH": str(sandbox)}, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{rel}: its code blocks are not valid shell: {res.stderr.strip()}"
    calls = []
    for rec in filter(None, log.read_text().split("\x1e")):
        line, *argv = rec.split("\x1f")
        n = int(line) - _STUB.count("\n")  # the script's line -> the file's
        first = n  # a continued command reports its last line: its comment may be on any of its lines
        while first > 1 and raw[first - 2].rstrip().endswith("\\"):
            first -= 1
        comment = " ".join(re.sub(r"^[^#]*", "", raw[k - 1]) for k in range(first, n + 1) if "#" in raw[k - 1])
        block = max(i for i, s in enumerate(starts) if s <= first)
        calls.append(Call(rel, block, first, tuple(argv), comment))
    return calls


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> list[Call]:
    tmp = tmp_path_factory.mktemp("doc_calls")
    out = [c for doc in DOCS for c in _calls(doc, tmp)]
    assert out, "no documented command was found: the extraction is broken"
    return out


def _not_run(call: Call) -> str | None:
    return next((why for pat, why in NOT_RUN if re.search(pat, call.text)), None)


def test_the_extraction_finds_the_readme_commands(calls):
    texts = {c.text for c in calls if c.doc == "README.md"}
    assert "selbench --cfg job method=random" in texts
    assert any(t.startswith("selbench -m launcher=joblib") for t in texts)
    assert any(t.startswith("selbench-report ") for t in texts)
    # continuation lines are joined: the Slurm example's last override is part of its call
    assert any("launcher=slurm" in t and t.endswith("seed=0,1,2") for t in texts)


def test_every_documented_command_is_of_a_known_kind_or_listed_as_not_run(calls):
    unknown = [str(c) for c in calls if c.argv[0] not in KNOWN and not _not_run(c)]
    assert not unknown, "commands the docs test does not know how to run:\n" + "\n".join(unknown)


def _overrides(call: Call) -> list[str] | None:
    """The Hydra overrides of a ``selbench`` call, or None for --help / --cfg / --info calls."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_intermixed_args(list(call.argv[1:]))
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return None
    return list(args.overrides)


def _needs_plugin(call: Call) -> bool:
    return "small_loss" in call.text  # the plugin guide's method: tests/test_guide.py runs that page


def test_every_documented_selbench_command_passes_the_checks_before_launch(calls):
    from selbench.core.errors import SelbenchError
    from selbench.runners.run.validate import validate_overrides

    failures, checked = [], 0
    for call in calls:
        if call.argv[0] != "selbench" or _not_run(call) or _needs_plugin(call) or PLACEHOLDER.search(call.text):
            continue
        overrides = _overrides(call)
        if overrides is None:
            continue
        refused = bool(REFUSED.search(call.comment))
        try:
            validate_overrides(overrides)
            if refused:
                failures.append(f"{call}\n    documented as refused, but passed the checks")
        except SelbenchError as e:
            if not refused:
                failures.append(f"{call}\n    {e}")
            elif "\n" in str(e):
                failures.append(f"{call}\n    refused with more than one line: {e}")
        checked += 1
    assert checked >= 40, f"only {checked} documented selbench commands were checked"
    assert not failures, "documented commands that fail before launch:\n" + "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("doc", [str(d.relative_to(REPO)) for d in DOCS])
def test_every_documented_block_runs_at_debug_scale(doc, tmp_path):
    """Each block in order, in a scratch folder, every ``selbench`` call at ``scale=debug``."""
    path = REPO / doc
    blocks = _blocks(path)
    if not blocks:
        pytest.skip(f"{doc} has no shell block")
    bin_dir = Path(sys.executable).parent
    calls = _calls(path, tmp_path)
    if all(_not_run(c) or _needs_plugin(c) or PLACEHOLDER.search(c.text) for c in calls):
        pytest.skip(f"{doc}: every command is listed as not run here")
    skip = "|".join(f"({p})" for p, _ in NOT_RUN) + f"|({PLACEHOLDER.pattern})|small_loss"
    prelude = f"""
__skip() {{ [[ "$*" =~ {skip!r} ]]; }}
selbench() {{ if __skip "selbench $*"; then return 0; fi; "{bin_dir}/selbench" "$@" scale=debug progress=false; }}
selbench-report() {{ "{bin_dir}/selbench-report" "$@"; }}
python() {{ if __skip "python $*"; then return 0; fi; "{sys.executable}" "$@"; }}
make() {{ return 0; }}; pytest() {{ return 0; }}; source() {{ return 0; }}; pip() {{ return 0; }}
export() {{ return 0; }}; cd() {{ return 0; }}; git() {{ return 0; }}
set -e
"""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(["bash", "-c", prelude + _script(path)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=3600)
    tail = "\n".join(res.stderr.strip().splitlines()[-8:])
    assert res.returncode == 0, f"{doc}: a documented command exited {res.returncode}:\n{tail}"
