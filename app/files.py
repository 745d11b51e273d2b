"""Reading a user's text files safely: the one reader for /file, /dir, the code pane and
`complete` (plugins get it through `app.plugins.hookspecs`).

Only regular files are read (never a device, FIFO or socket: those can block or never end), at
most `limit` bytes however big the file claims to be; a symlink is followed only when its
target stays inside the folder the user named, so a repository's link to ~/.ssh or /etc cannot
slip a secret into a prompt. Binary and non-UTF-8 files are refused with the reason.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from app.errors import TramontaneError
from app.sizes import file_size


class FileRefused(TramontaneError):
    """A file that is not read, and why, in words for the user."""


class NotTextError(FileRefused):
    """A binary or non-UTF-8 file."""


def decode_text(data: bytes, label: str, works: str = "completion works on") -> str:
    """UTF-8 text, or `NotTextError` naming `label` and saying what `works` on text only."""
    if b"\0" in data[:8192]:
        raise NotTextError(f"{label} is a binary file; {works} text files.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotTextError(f"{label} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                           f"{works} UTF-8 files.") from exc


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def outside(path: Path, folder: Path) -> Path | None:
    """Where `path` really leads when that is outside `folder` (after every link); else None."""
    real = Path(os.path.realpath(path))
    base = Path(os.path.realpath(folder))
    return None if real == base or base in real.parents else real


def read_bytes(path: Path, limit: int, label: str, inside: Path | None = None,
               what: str = "it takes") -> bytes:
    """At most `limit` bytes of the regular file at `path`, or `FileRefused` saying why not.
    With `inside`, a path whose links lead out of that folder is refused."""
    if inside is not None:
        escaped = outside(path, inside)
        if escaped is not None:
            raise FileRefused(f"{label} is a link to {escaped}, outside {inside}; it was not "
                              "read. Name the file itself if you mean it.")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as exc:
        raise FileRefused(f"There is no file at {label}.") from exc
    except IsADirectoryError as exc:
        raise FileRefused(f"{label} is a folder.") from exc
    except OSError as exc:
        raise FileRefused(f"{label} cannot be read: {exc.strerror or exc}.") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{label} is {_kind(info.st_mode)}; only regular files are read.")
        if info.st_size > limit:
            raise FileRefused(f"{label} is {file_size(info.st_size)}; {what} up to {file_size(limit)}.")
        chunks, left = [], limit + 1  # a file that grows past its stat size is still bounded
        while left > 0:
            block = os.read(fd, min(left, 1 << 20))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
        data = b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"{label} cannot be read: {exc.strerror or exc}.") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileRefused(f"{label} is over {file_size(limit)}; {what} up to {file_size(limit)}.")
    return data


def read_text(path: Path, limit: int, label: str, inside: Path | None = None,
              works: str = "completion works on", what: str = "it takes") -> str:
    """The UTF-8 text of a regular file, bounded and refused as `read_bytes` and
    `decode_text` say."""
    return decode_text(read_bytes(path, limit, label, inside, what), label, works)


# -- git in a repository the user did not write ------------------------------------------------

# A repository's own .git/config can name programs git runs on a plain `status` or `diff`
# (core.fsmonitor, hooks, diff drivers, textconv, clean/smudge filters). Every git call the
# app or a bundled plugin makes switches those off, so reading a repository runs nothing of it.
_SAFE_GIT = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
             "-c", "diff.external=", "-c", "core.sshCommand=", "-c", "protocol.allow=never",
             "-c", "core.untrackedCache=false", "--no-optional-locks"]


def _filter_overrides(repo: Path) -> list[str]:
    """`-c filter.NAME.clean=` (and smudge, process) for each filter the repository defines;
    reading the config with `git config` runs nothing."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "config", "--null", "--get-regexp",
                              r"^filter\..*\.(clean|smudge|process)$"], capture_output=True,
                             timeout=5, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    keys = {entry.split("\n", 1)[0] for entry in out.decode("utf-8", "replace").split("\0") if entry}
    return [arg for key in sorted(keys) for arg in ("-c", f"{key}=")]


def safe_git(repo: Path, *args: str, timeout: float = 5.0) -> bytes | None:
    """`git -C repo ARGS` with the repository's own programs switched off; its output, or
    None when git is missing, fails or takes longer than `timeout`."""
    command = ["git", *_SAFE_GIT, *_filter_overrides(repo), "-C", str(repo), *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=True,
                              stdin=subprocess.DEVNULL,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0",
                                   "GIT_CONFIG_NOSYSTEM": "1"})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout
