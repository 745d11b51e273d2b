"""One atomic write for every saver (the code pane, config.toml, caches, recovery copies).

A temp file with an unpredictable name is created exclusively (mkstemp: O_EXCL, 0600) in the
folder of the real file, so a link planted at a guessable name cannot redirect the write;
it is written, fsynced and renamed over the target. Saving through a symlink writes the
link's target (the link stays a link), and an existing file keeps its permission bits.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, mode: int | None = None) -> Path:
    """Replace `path`'s contents with `data` all at once; returns the file written (the
    symlink's target when `path` is a link). `mode` is for a new file (default 0644 under
    the umask); an existing file keeps its own. Raises OSError; the target is then unchanged."""
    target = Path(os.path.realpath(path))
    try:
        keep: int | None = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        keep = None
    if keep is None:
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        keep = mode
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, keep)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target
