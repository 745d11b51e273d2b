"""Helpers for pilot tests: build the app around a backend, and wait without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from app.engine.backend import Backend
from app.session.front import Tramontane
from app.ui.tui.app import TramontaneApp
from app.ui.tui.message_view import MessageView
from app.ui.tui.prompt import PromptBox


def make_app(backend: Backend, chat_id: int | None = None) -> TramontaneApp:
    return TramontaneApp(Tramontane.open(chat_backend=backend), chat_id)


async def wait_until(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 30.0,
                     what: str = "") -> None:
    """Let the app run until `predicate` holds (workers, streams, screens)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.01)


def views(app: TramontaneApp) -> list[MessageView]:
    return list(app.query(MessageView))


async def send(pilot: Pilot[None], text: str) -> None:
    app = pilot.app
    assert isinstance(app, TramontaneApp)
    prompt = app.query_one(PromptBox)
    prompt.focus()
    prompt.insert(text)
    await pilot.press("enter")
