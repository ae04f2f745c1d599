"""The code blocks of README.md and docs/*.md, read the way tests/e2e/test_docs_commands.py
runs them. The conventions the documents follow:

- ```sh blocks hold commands: one a line, a line ending in `\\` continues on the next.
- ```python blocks run as scripts, except one whose first line is a comment naming a
  file (`# myapp/tasks.py`): that is a module, written to its file and imported.
- `<!-- docs-test: skip (why) -->` just before a block: not run; the reason is required.
  `<!-- docs-test: skip `make prometheus` (why) -->`: only its commands starting so.
- A command's trailing comment `# exit N ...` says it exits N (otherwise it exits 0).
- Only commands of the programs in RUNNABLE, with URLs on this machine only, are run;
  any other command must be in a skipped block (it is reported, never run).
- Placeholders: `ID` and `<id>` stand for the task id printed last by an earlier command
  of the same document; `ID1 ID2 ...` for the last ones, oldest first; `KEY_ID` for the
  key id the last `stratoq keys create` printed.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip\s*(?P<prefixes>(?:`[^`]+`\s*)*)\((?P<reason>[^)]+)\)$")
MODULE = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\s*$")
EXIT = re.compile(r"^#\s*exits?\s+(?P<code>\d+)\b")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*=\S*\s+")

# Like the `stratoq` script pip installs: its own directory, not the current one, first on
# sys.path, and the `__main__` guard that spawned worker processes rely on.
CONSOLE_SCRIPT = """#!{python}
import sys
from stratoq.cli.main import main
if __name__ == "__main__":
    sys.exit(main())
"""

# What a command may run here: the CLI, curl and python against the local stack, and the
# shell's own assignments. Anything else (pip, docker, make, scripts/deploy-*) may change
# the machine or reach the network, so it needs a skip marker instead.
RUNNABLE = {"stratoq", "curl", "python3", "python", "eval", "export"}
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s'\"]*@)?(?P<host>\[[^\]]*\]|[^:/\s'\"]+)")
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$")

# Commands that run until stopped (Ctrl-C), as the docs say of each.
SERVERS = re.compile(r"^stratoq\s+(?:.*\s)?(?:worker|dev|scheduler|bridge|top)\b")


@dataclass(frozen=True)
class Command:
    """One command of a ```sh block, as printed (continuation lines kept)."""

    text: str
    line: int
    expected_exit: int

    @property
    def runs_until_stopped(self) -> bool:
        bare = self.text
        while match := ASSIGNMENT.match(bare):  # VAR=value stratoq ...
            bare = bare[match.end() :]
        if not SERVERS.match(bare):
            return False
        # `stratoq top --once` / `--json` print one screen and exit.
        return not (re.search(r"\stop\b", bare) and re.search(r"\s--(once|json)\b", bare))

    def refusal(self) -> str | None:
        """Why this command must not run here (None: it may)."""
        for url in URL.finditer(self.text):
            if not LOOPBACK.match(url["host"]):
                return f"it reaches {url['host']}, not this machine"
        try:
            lexer = shlex.shlex(self.text.replace("\\\n", " "), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError as exc:
            return f"it does not parse ({exc})"
        starts = True  # the next word names a program
        for token in tokens:
            if token in (";", "&&", "||", "|", "(", "$(", "`"):
                starts = True
            elif token == ")" or token.endswith("=$"):  # VAR=$(...): the ( follows
                continue
            elif starts and not ASSIGNMENT.match(token + " "):
                if token not in RUNNABLE:
                    return f"this test does not run `{token}`"
                if token == "curl" and not URL.search(self.text):
                    return "curl without a literal URL on this machine"
                starts = False
        return None


@dataclass(frozen=True)
class Block:
    """A fenced block and the docs-test marker before it."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip_reason: str | None = None
    skip_prefixes: tuple[str, ...] = field(default=())

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None and not self.skip_prefixes

    @property
    def module_path(self) -> str | None:
        """The file a ```python module block is written to, else None."""
        first = self.text.splitlines()[0] if self.text else ""
        match = MODULE.match(first) if self.lang == "python" else None
        return match["path"] if match else None

    def commands(self) -> Iterator[Command]:
        """The block's commands, minus those its marker skips."""
        pending: list[str] = []
        start = 0
        for n, raw in enumerate(self.text.splitlines(), start=self.line + 1):
            if not pending:
                start = n
                if not raw.strip() or raw.lstrip().startswith("#"):
                    continue
            pending.append(raw)
            if raw.rstrip().endswith("\\"):
                continue
            text = "\n".join(pending)
            pending = []
            if any(text.startswith(p) for p in self.skip_prefixes):
                continue
            yield Command(text, start, expected_exit(text))
        if pending:
            raise ValueError(f"{self.path}:{start}: a command ends in a continuation")


def trailing_comment(line: str) -> str:
    """The shell comment that ends `line` ('' if none): a `#` after a space, outside quotes."""
    for i, ch in enumerate(line):
        if ch == "#" and i > 0 and line[i - 1].isspace():
            try:
                shlex.split(line[:i])
            except ValueError:
                continue  # inside quotes
            return line[i:]
    return ""


def expected_exit(command: str) -> int:
    match = EXIT.match(trailing_comment(command.splitlines()[-1]))
    return int(match["code"]) if match else 0


def blocks(path: Path) -> list[Block]:
    """The ```sh and ```python blocks of one markdown file, in order."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening["indent"], opening["lang"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(
            x[len(indent) :] if x.startswith(indent) else x for x in lines[i + 1 : end]
        )
        if lang in ("sh", "python"):
            found.append(_with_marker(path, lines, i, lang, body))
        i = end + 1
    return found


def _with_marker(path: Path, lines: list[str], fence: int, lang: str, body: str) -> Block:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    marker = MARKER.match(lines[before]) if before >= 0 else None
    if marker is None:
        return Block(path, fence + 1, lang, body)
    skip = SKIP.match(marker["body"])
    if skip is None:
        raise ValueError(
            f"{path}:{before + 1}: unknown docs-test marker {marker['body']!r}; "
            "expected: skip [`command prefix` ...] (reason)"
        )
    prefixes = tuple(re.findall(r"`([^`]+)`", skip["prefixes"]))
    return Block(path, fence + 1, lang, body, skip["reason"].strip(), prefixes)


@dataclass
class Placeholders:
    """What an earlier command of the same document printed, for ID, <id> and KEY_ID."""

    task_ids: list[str] = field(default_factory=list)
    key_id: str | None = None

    def saw(self, output: str) -> list[str]:
        """Note the task ids and key id in a command's output; returns the task ids."""
        ids = re.findall(r'"id":\s*"([0-9a-f]{16,})"', output)
        for tid in ids:
            if tid in self.task_ids:
                self.task_ids.remove(tid)
            self.task_ids.append(tid)
        if key := re.search(r"\bkey_id (\w+)", output):
            self.key_id = key[1]
        return ids

    def fill(self, command: str) -> str:
        numbered = sorted({int(n) for n in re.findall(r"\bID(\d+)\b", command)})
        if numbered:
            last = self.task_ids[-len(numbered) :]
            if len(last) < len(numbered):
                raise AssertionError(f"{command!r}: fewer task ids printed before it")
            for n, tid in zip(numbered, last, strict=True):
                command = re.sub(rf"\bID{n}\b", tid, command)
        if re.search(r"\bID\b|<id>", command):
            if not self.task_ids:
                raise AssertionError(f"{command!r}: no task id printed before it")
            command = re.sub(r"\bID\b|<id>", self.task_ids[-1], command)
        if re.search(r"\bKEY_ID\b", command):
            if self.key_id is None:
                raise AssertionError(f"{command!r}: no key created before it")
            command = re.sub(r"\bKEY_ID\b", self.key_id, command)
        return command


def console_script(bindir: Path) -> Path:
    """Write a `stratoq` like the installed one into `bindir` (this Python, PYTHONPATH)."""
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "stratoq"
    script.write_text(CONSOLE_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    return script
