"""`tramontane` with no command (or `tramontane ui`): the Textual app."""

from __future__ import annotations

import argparse

from app.session.context import AppContext
from app.session.library import ChatLibrary


def run(args: argparse.Namespace) -> int:
    from app.ui.tui.app import TramontaneApp

    ctx = AppContext()
    try:
        TramontaneApp(ChatLibrary(ctx), getattr(args, "chat", None)).run()
    finally:
        ctx.close()
    return 0
