"""`/file PATH [question]` and `/dir PATH [question]`: attach text files to a chat message.

A file over the size limit, a binary file and a file that is not UTF-8 are refused with a
message saying why; nothing is sent then, so the user can fix the command. `/dir` attaches the
text files of a folder (the files git tracks when the folder is in a repository), up to a total
limit, and names what it left out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from app.plugins.hookspecs import Attachment, SlashCommand, SlashContext, hookimpl
from app.session.complete import NotTextError, decode_text

FILE_LIMIT = 100_000  # bytes one /file attaches
DIR_LIMIT = 200_000  # bytes one /dir attaches in all
DIR_FILES = 200  # files one /dir looks at
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".mypy_cache",
             ".pytest_cache", ".ruff_cache", "build", "dist", ".tox"}


class Refused(Exception):
    """Why a path cannot be attached, in words for the user."""


def split_path(args: str) -> tuple[str, str]:
    """The path (quotes allowed, for names with spaces) and the question after it."""
    args = args.strip()
    if not args:
        raise Refused("Give a path, e.g. /file notes.md What does this say?")
    if args[0] in "'\"":
        end = args.find(args[0], 1)
        if end < 0:
            raise Refused(f"The path's quote ({args[0]}) does not close.")
        return args[1:end], args[end + 1:].strip()
    path, _, rest = args.partition(" ")
    return path, rest.strip()


def language_of(path: Path) -> str:
    try:
        from pygments.lexers import get_lexer_for_filename
        from pygments.util import ClassNotFound
    except ImportError:
        return ""
    try:
        aliases = get_lexer_for_filename(path.name).aliases
    except ClassNotFound:
        return ""
    return aliases[0] if aliases else ""


def read_text(path: Path, limit: int, shown: str) -> str:
    """The file's text, or `Refused` saying why not (missing, a folder, too big, binary)."""
    if not path.exists():
        raise Refused(f"There is no file at {shown}.")
    if path.is_dir():
        raise Refused(f"{shown} is a folder; /dir {shown} attaches its text files.")
    try:
        size = path.stat().st_size
        if size > limit:
            raise Refused(f"{shown} is {_kb(size)}; /file attaches up to {_kb(limit)}. "
                          "Attach a smaller file or paste the part you need.")
        data = path.read_bytes()
    except OSError as exc:
        raise Refused(f"{shown} cannot be read: {exc.strerror or exc}.") from exc
    try:
        return decode_text(data, shown, works="/file attaches only")
    except NotTextError as exc:
        raise Refused(str(exc)) from exc


def _kb(n: int) -> str:
    return f"{n / 1000:.0f} kB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


def _resolve(raw: str, cwd: str) -> Path:
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else Path(cwd) / path


def _files_in(folder: Path) -> list[Path]:
    """The folder's files, sorted: what git tracks when it is a repository, else a walk that
    skips hidden and build folders."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard", "."], capture_output=True, timeout=5,
                             check=True).stdout
        return sorted(folder / p for p in out.decode("utf-8", "replace").split("\0") if p)
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
        if len(found) > DIR_FILES * 5:
            break
    return found


def attach_file(args: str, chat: SlashContext) -> str:
    try:
        raw, question = split_path(args)
        path = _resolve(raw, chat.cwd)
        text = read_text(path, FILE_LIMIT, raw)
    except Refused as exc:
        chat.notice(f"{exc} Nothing was sent.")
        return ""
    chat.attach(Attachment(raw, text, language_of(path)))
    return question


def attach_dir(args: str, chat: SlashContext) -> str:
    try:
        raw, question = split_path(args)
    except Refused as exc:
        chat.notice(f"{exc} Nothing was sent.")
        return ""
    folder = _resolve(raw, chat.cwd)
    if not folder.is_dir():
        chat.notice(f"{raw} is not a folder. Nothing was sent.")
        return ""
    total, attached, skipped = 0, 0, []
    for path in _files_in(folder)[:DIR_FILES]:
        shown = str(Path(raw) / path.relative_to(folder))
        try:
            text = read_text(path, min(FILE_LIMIT, DIR_LIMIT - total), shown)
        except Refused:
            skipped.append(shown)
            continue
        chat.attach(Attachment(shown, text, language_of(path)))
        total += len(text.encode("utf-8"))
        attached += 1
    if not attached:
        chat.notice(f"{raw} has no text files within {_kb(DIR_LIMIT)}. Nothing was sent.")
        return ""
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        chat.notice(f"Left out (binary, not UTF-8 or over the {_kb(DIR_LIMIT)} limit): "
                    + ", ".join(skipped[:5]) + more + ".")
    return question


@hookimpl
def register_slash_commands(register: Callable[[SlashCommand], None]) -> None:
    register(SlashCommand("file", f"attach a text file (up to {_kb(FILE_LIMIT)}) to the message",
                          attach_file, usage="PATH [QUESTION]"))
    register(SlashCommand("dir", f"attach a folder's text files (up to {_kb(DIR_LIMIT)} in all)",
                          attach_dir, usage="PATH [QUESTION]"))
