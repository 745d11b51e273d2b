"""Snapshots of the screens that matter: empty app, mid-stream, a code reply, the parameters."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from app.ui.tui.dialogs import ParamsDialog
from app.ui.tui.prompt import PromptBox
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, send, settle, views

SIZE = (100, 30)
CODE_REPLY = (
    "Here is a function:\n\n```python\ndef add(a: int, b: int) -> int:\n"
    "    return a + b\n```\n\nCall it with `add(2, 3)`."
)


async def _steady(pilot: Pilot[None]) -> None:
    pilot.app.query_one(PromptBox).cursor_blink = False
    await pilot.pause()


def _rendered(app) -> bool:  # type: ignore[no-untyped-def]
    v = views(app)
    return bool(v) and v[-1].shown_source == v[-1].text


def test_empty_app(snap_compare, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(ScriptedBackend()), terminal_size=SIZE, run_before=_steady)


def test_chat_mid_stream(snap_compare, home: Path) -> None:  # type: ignore[no-untyped-def]
    backend = ScriptedBackend(replies=["The **Loire** is the longest river in France"],
                              hold_after=4)

    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, "Tell me about the Loire.")
        await settle(pilot, lambda: backend.streamed == 4 and _rendered(pilot.app))
        await _steady(pilot)

    assert snap_compare(make_app(backend), terminal_size=SIZE, run_before=run_before)


def test_reply_with_code_block(snap_compare, home: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(ScriptedBackend(replies=[CODE_REPLY]))

    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, "Write an add function.")
        await settle(pilot, lambda: views(app)[-1].state == "complete" and _rendered(app))
        await _steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_parameters_dialog(snap_compare, home: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(ScriptedBackend(replies=["Ahoy."]))

    async def run_before(pilot: Pilot[None]) -> None:
        await send(pilot, "Hi")
        await settle(pilot, lambda: views(app)[-1].state == "complete")
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ParamsDialog))
        app.screen.query_one("#system").cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=run_before)


def test_code_pane_with_a_multi_line_suggestion(snap_compare, home: Path) -> None:  # type: ignore[no-untyped-def]
    """Every line Tab would insert, dimmed, the code below pushed down. (The file is at a
    fixed path: the pane's title shows it.)"""
    from app.ui.tui.code_editor import CodeEditor
    from app.ui.tui.code_screen import CodeScreen
    from tests.test_code_pane import SOURCE, FimBackend

    path = Path("/tmp/tramontane-snapshots/calc.py")
    path.parent.mkdir(exist_ok=True)
    path.write_text(SOURCE)
    backend = FimBackend("s += x\n        if s > 10:\n            break")
    app = make_app(ScriptedBackend())
    app.open_file = path
    app._code_backend = backend

    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                         and bool(app.screen.query(CodeEditor)))
        editor = app.screen.query_one(CodeEditor)
        editor.move_cursor((3, 8))
        editor.cursor_blink = False
        await pilot.press("ctrl+space")
        await settle(pilot, lambda: bool(editor.pending))
        await settle(pilot, lambda: len(backend.fim_calls) == 2)  # the speculation too
        app.screen.status("suggestion")  # its timing varies from run to run
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
