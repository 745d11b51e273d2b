"""`tramontane` with no command (or `tramontane ui`): the Textual app."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.errors import TramontaneError
from app.session.complete import read_text_file
from app.session.front import Tramontane


def run(args: argparse.Namespace) -> int:
    from app.ui.tui.app import TramontaneApp

    path = Path(args.file) if getattr(args, "file", None) else None
    if path is not None:
        try:
            path.stat()
        except FileNotFoundError:
            pass  # a new file
        except OSError as exc:  # a symlink loop, a folder it may not enter, ...
            raise TramontaneError(f"Cannot open {path}: {exc.strerror or exc}.") from None
    if path is not None and path.exists():
        read_text_file(path)  # a binary or non-UTF-8 file is refused before the app starts
    door = Tramontane.open(getattr(args, "backend", None))
    try:
        app = TramontaneApp(door, getattr(args, "chat", None), open_file=path)
        app.run()
    finally:
        door.close()
    return app.return_code or 0  # a crash (Textual shows the traceback) is not a success
