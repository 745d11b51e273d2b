"""`/file PATH [question]` and `/dir PATH [question]`: attach text files to a chat message.

A file over the size limit, a binary file, a file that is not UTF-8, a device, FIFO or socket,
and a link that leads out of the folder named are refused with a message saying why; nothing is
sent then, so the user can fix the command. `/dir` attaches the text files of a folder (the
files git tracks when the folder is in a repository, asked with the repository's own commands
and hooks switched off), up to a total limit and a time limit, and names what it left out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from app.plugins.hookspecs import (
    Attachment,
    FileRefused,
    SlashCommand,
    SlashContext,
    file_size,
    hookimpl,
    read_text,
    safe_git,
)

FILE_LIMIT = 100_000  # bytes one /file attaches
DIR_LIMIT = 200_000  # bytes one /dir attaches in all
DIR_FILES = 200  # files one /dir looks at
DIR_SECONDS = 3.0  # one /dir stops looking after this long
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


def read_file(path: Path, limit: int, shown: str, inside: Path) -> str:
    """The file's text, or `Refused` saying why not (missing, a folder, too big, binary, a
    special file, or a link out of `inside`)."""
    if path.is_dir():
        raise Refused(f"{shown} is a folder; /dir {shown} attaches its text files.")
    try:
        return read_text(path, limit, shown, inside=inside, works="/file attaches only",
                         what="/file attaches")
    except FileRefused as exc:
        raise Refused(str(exc)) from exc


def _resolve(raw: str, cwd: str) -> Path:
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else Path(cwd) / path


def _files_in(folder: Path) -> list[Path]:
    """The folder's files, sorted: what git tracks when it is a repository, else a walk that
    skips hidden and build folders."""
    out = safe_git(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard", ".")
    if out is not None:
        return sorted(folder / p for p in out.decode("utf-8", "replace").split("\0") if p)
    found: list[Path] = []
    deadline = time.monotonic() + DIR_SECONDS
    for root, dirs, files in os.walk(folder):  # links to folders are not followed
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
        if len(found) > DIR_FILES * 5 or time.monotonic() > deadline:
            break
    return found


def attach_file(args: str, chat: SlashContext) -> str:
    try:
        raw, question = split_path(args)
        path = _resolve(raw, chat.cwd)
        text = read_file(path, FILE_LIMIT, raw, inside=path.parent)
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
    total, attached, skipped, links_out = 0, 0, [], []
    deadline = time.monotonic() + DIR_SECONDS
    for path in _files_in(folder)[:DIR_FILES]:
        if time.monotonic() > deadline:
            skipped.append("the rest (the time limit)")
            break
        shown = str(Path(raw) / path.relative_to(folder))
        try:
            text = read_file(path, min(FILE_LIMIT, DIR_LIMIT - total), shown, inside=folder)
        except Refused as exc:
            (links_out if "outside" in str(exc) else skipped).append(shown)
            continue
        chat.attach(Attachment(shown, text, language_of(path)))
        total += len(text.encode("utf-8"))
        attached += 1
    if not attached:
        chat.notice(f"{raw} has no text files within {file_size(DIR_LIMIT)}. Nothing was sent.")
        return ""
    if links_out:
        chat.notice(f"Not attached, links that lead out of {raw}: " + ", ".join(links_out[:5])
                    + (f" and {len(links_out) - 5} more" if len(links_out) > 5 else "") + ".")
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        chat.notice(f"Left out (binary, not UTF-8, not a regular file or over the "
                    f"{file_size(DIR_LIMIT)} limit): " + ", ".join(skipped[:5]) + more + ".")
    return question


@hookimpl
def register_slash_commands(register: Callable[[SlashCommand], None]) -> None:
    register(SlashCommand("file", f"attach a text file (up to {file_size(FILE_LIMIT)}) to the message",
                          attach_file, usage="PATH [QUESTION]"))
    register(SlashCommand("dir", f"attach a folder's text files (up to {file_size(DIR_LIMIT)} in all)",
                          attach_dir, usage="PATH [QUESTION]"))
