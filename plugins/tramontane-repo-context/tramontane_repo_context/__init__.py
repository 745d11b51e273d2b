"""Completion context from the files you recently opened, saved or changed in the same git
repository, as llama.vim gathers it.

Each file event leaves a chunk of up to CHUNK_LINES lines in a ring buffer of RING_SIZE chunks:
the top of a file just opened, the region around the first changed line of a file saved or
edited (against what the ring saw last, or `git diff` for files changed before the app
started). A chunk identical to one in the ring moves to the front; chunks more than 90 % alike
(lines in common) are evicted in its favour; the oldest falls out when the ring is full. A
completion gets the ring's chunks from its own repository, newest first, minus its own file
and chunks whose text is already around the cursor.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from app.plugins.hookspecs import ContextChunk, FileRefused, hookimpl, read_text, safe_git

RING_SIZE = 16
CHUNK_LINES = 64
SIMILAR = 0.9
MAX_FILE_BYTES = 1_000_000
_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)", re.M)


@dataclass(frozen=True)
class Chunk:
    repo: Path
    path: Path
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """Lines in common over the lines of both, as llama.vim's chunk similarity."""
    if not a and not b:
        return 1.0
    common = sum((Counter(a) & Counter(b)).values())
    return 2 * common / (len(a) + len(b))


def repo_of(path: Path) -> Path | None:
    """The git work tree that holds `path`, found by its `.git` (folder or file)."""
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        if (folder / ".git").exists():
            return folder
    return None


def pick(lines: list[str], around: int) -> tuple[str, ...]:
    """Up to CHUNK_LINES lines centred on line `around` (0-based)."""
    start = max(0, min(around - CHUNK_LINES // 2, len(lines) - CHUNK_LINES))
    return tuple(lines[start:start + CHUNK_LINES])


def first_change(old: list[str], new: list[str]) -> int | None:
    for tag, _i1, _i2, j1, _j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            return j1
    return None


class Ring:
    def __init__(self, size: int = RING_SIZE) -> None:
        self.chunks: deque[Chunk] = deque()
        self.size = size
        self.seen: dict[Path, list[str]] = {}  # the last text of each file, to find changes
        self.scanned: set[Path] = set()
        self.lock = threading.Lock()

    def add(self, chunk: Chunk) -> None:
        if len([ln for ln in chunk.lines if ln.strip()]) < 3:
            return  # too little to help
        with self.lock:
            if chunk in self.chunks:
                self.chunks.remove(chunk)
            else:
                for old in [c for c in self.chunks if similarity(c.lines, chunk.lines) > SIMILAR]:
                    self.chunks.remove(old)
            self.chunks.appendleft(chunk)
            while len(self.chunks) > self.size:
                self.chunks.pop()

    def touched(self, path: Path, event: str, text: str) -> None:
        repo = repo_of(path)
        if repo is None:
            return
        self.scan(repo)
        lines = text.split("\n")
        with self.lock:
            before = self.seen.get(path)
            self.seen[path] = lines
        changed = first_change(before, lines) if before is not None else None
        if changed is not None:
            self.add(Chunk(repo, path, pick(lines, changed)))
        elif event == "opened" or before is None:
            self.add(Chunk(repo, path, pick(lines, 0)))

    def scan(self, repo: Path) -> None:
        """Once per repository: the files git says changed, each around its first change."""
        with self.lock:
            if repo in self.scanned:
                return
            self.scanned.add(repo)
        status = safe_git(repo, "status", "--porcelain", "-z")
        if status is None:
            return
        entries = [e for e in status.decode("utf-8", "replace").split("\0") if len(e) > 3]
        changed = [(repo / e[3:]) for e in entries if e[:2].strip() in ("M", "A", "AM", "MM", "??")]
        changed = [p for p in changed if p.is_file()]
        changed.sort(key=lambda p: p.stat().st_mtime)  # the newest ends at the front of the ring
        for path in changed[-RING_SIZE:]:
            text = _read(path, repo)
            if text is None:
                continue
            lines = text.split("\n")
            with self.lock:
                self.seen.setdefault(path, lines)
            self.add(Chunk(repo, path, pick(lines, _diff_line(repo, path))))

    def context(self, path: Path, near: str) -> list[ContextChunk]:
        repo = repo_of(path)
        if repo is None:
            return []
        with self.lock:
            chunks = [c for c in self.chunks if c.repo == repo and c.path != path]
        return [ContextChunk(str(c.path.relative_to(repo)), c.text) for c in chunks
                if c.text.strip() not in near]


def _read(path: Path, repo: Path) -> str | None:
    """A changed file's text: regular, UTF-8, not a link out of the repository, bounded."""
    try:
        return read_text(path, MAX_FILE_BYTES, str(path), inside=repo)
    except FileRefused:
        return None


def _diff_line(repo: Path, path: Path) -> int:
    """The first changed line of a file against HEAD (0-based), else the top of the file."""
    diff = safe_git(repo, "diff", "--no-ext-diff", "--no-textconv", "-U0", "HEAD", "--",
                    str(path))
    if diff is None:
        return CHUNK_LINES // 2
    found = _HUNK.search(diff)
    return int(found.group(1)) - 1 if found else CHUNK_LINES // 2


ring = Ring()


@hookimpl
def file_touched(path: str, event: str, text: str) -> None:
    ring.touched(Path(path), event, text)


@hookimpl
def fim_context(path: str, prefix: str, suffix: str) -> list[ContextChunk]:
    return ring.context(Path(path), prefix[-8000:] + suffix[:4000])
