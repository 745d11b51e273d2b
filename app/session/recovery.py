"""Recovery copies of unsaved code-pane buffers, so a lost terminal or a crash loses nothing.

The code pane writes the buffer here a moment after each edit (not only at exit: SIGKILL and a
dead terminal leave no chance to write). The copies live in the data folder, mode 0600, one per
file keyed by a hash of its real path, never beside the user's file. Saving, discarding or
closing a clean buffer removes the copy; the next `tramontane code FILE` offers it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from app.atomic import atomic_write


@dataclass(frozen=True)
class Recovery:
    path: str
    text: str
    taken_at: float

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.taken_at))


class RecoveryStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _file(self, path: Path) -> Path:
        key = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:32]
        return self.folder / f"{key}.json"

    def save(self, path: Path, text: str) -> bool:
        """Keep `text` as the recovery copy of `path`; False when it could not be written."""
        record = {"path": str(path.resolve()), "text": text, "taken_at": time.time()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(self._file(path), json.dumps(record), mode=0o600)
        except OSError:
            return False
        return True

    def load(self, path: Path) -> Recovery | None:
        try:
            raw = json.loads(self._file(path).read_text(encoding="utf-8"))
            found = Recovery(str(raw["path"]), str(raw["text"]), float(raw["taken_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return found if found.path == str(path.resolve()) else None

    def drop(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            self._file(path).unlink(missing_ok=True)
