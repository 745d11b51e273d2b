"""The code pane never drops typed edits: quitting, closing and opening another file ask first;
a recovery copy is offered back after a crash; every key in its footer works with the editor
focused; saves are atomic and go through symlinks to the real file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from textual.widgets import Footer

from app.ui.tui.code_editor import CodeEditor
from app.ui.tui.code_screen import CodeScreen
from app.ui.tui.dialogs import ChoiceDialog, FilePicker
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import settle
from tests.test_code_pane import SOURCE, FimBackend, _app


async def _typed(pilot, path: Path, text: str = "x") -> CodeEditor:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                     and bool(app.screen.query(CodeEditor)), what="the code pane")
    editor = app.screen.query_one(CodeEditor)
    assert editor.has_focus
    editor.move_cursor((0, 0))
    await pilot.press(*text)
    return editor


async def _answer(pilot, answer: str) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the question")
    assert "unsaved changes" in app.screen.question
    await pilot.click(f"#{answer}")


async def test_quit_with_unsaved_edits_asks_and_cancel_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    app = _app(path, FimBackend(""))
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _typed(pilot, path, "# ")
        await pilot.press("ctrl+q")
        await _answer(pilot, "cancel")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        assert app.is_running and editor.text.startswith("# ")
        await pilot.press("ctrl+q")
        await _answer(pilot, "save")
        await settle(pilot, lambda: not app.is_running, what="the app to quit")
    assert path.read_text() == "# " + SOURCE


async def test_quit_and_discard_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    app = _app(path, FimBackend(""))
    async with app.run_test(size=(100, 30)) as pilot:
        await _typed(pilot, path, "zz")
        await pilot.press("ctrl+q")
        await _answer(pilot, "discard")
        await settle(pilot, lambda: not app.is_running, what="the app to quit")
    assert path.read_text() == SOURCE


async def test_close_with_the_editor_focused_asks_then_saves(tmp_path: Path) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    app = _app(path, FimBackend(""))
    async with app.run_test(size=(100, 30)) as pilot:
        await _typed(pilot, path, "y")
        await pilot.press("ctrl+w")
        await _answer(pilot, "save")
        await settle(pilot, lambda: not app.screen.query(CodeEditor), what="the pane closed")
        assert path.read_text() == "y" + SOURCE
        # a clean buffer closes without a question
        app.open_code(path)
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        await pilot.press("ctrl+w")
        await settle(pilot, lambda: not isinstance(app.screen, CodeScreen))


async def test_opening_another_file_asks_about_this_one(tmp_path: Path) -> None:
    path, other = tmp_path / "calc.py", tmp_path / "other.py"
    path.write_text(SOURCE)
    other.write_text("b = 2\n")
    app = _app(path, FimBackend(""))
    async with app.run_test(size=(100, 30)) as pilot:
        await _typed(pilot, path, "k")
        await pilot.press("ctrl+o")
        await settle(pilot, lambda: isinstance(app.screen, FilePicker))
        app.screen.dismiss(other)
        await _answer(pilot, "discard")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                         and app.screen.path == other, what="the other file")
        assert path.read_text() == SOURCE


@pytest.mark.parametrize("key", ["ctrl+s", "ctrl+space", "ctrl+w", "ctrl+o", "escape", "tab",
                                 "ctrl+right", "ctrl+down", "ctrl+q"])
async def test_every_footer_key_works_with_the_editor_focused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    backend = FimBackend("total")
    app = _app(path, backend)
    suggestion_keys = ("escape", "tab", "ctrl+right", "ctrl+down")
    async with app.run_test(size=(140, 30)) as pilot:
        # suggestion keys need a suggestion, and no typing whose own suggestion could race it
        editor = await _typed(pilot, path, "" if key in suggestion_keys else "q")
        screen = app.screen
        assert isinstance(screen, CodeScreen)
        if key in suggestion_keys:
            screen.debounce_s = 3600  # no automatic suggestion: this test offers its own
            editor.insert("q")
            await pilot.pause()
            editor.offer("total\nx" if key == "ctrl+down" else "total")
        shown = {b.key for (_, b, enabled, _) in screen.active_bindings.values() if enabled
                 and b.show}
        assert key.split(",")[0] in shown or key in ("escape", "ctrl+right", "tab", "ctrl+q",
                                                     "ctrl+down")
        assert screen.query_one(Footer).display  # the keys are on screen
        await pilot.press(key)
        checks = {
            "ctrl+s": lambda: path.read_text() == "q" + SOURCE,
            "ctrl+space": lambda: len(backend.fim_calls) >= 1,
            "ctrl+w": lambda: isinstance(app.screen, ChoiceDialog),
            "ctrl+o": lambda: isinstance(app.screen, FilePicker),
            "escape": lambda: editor.pending == "" and app.screen is screen,
            "tab": lambda: editor.text.startswith("qtotal"),
            "ctrl+right": lambda: editor.text.startswith("qtotal"),
            "ctrl+down": lambda: editor.text.startswith("qtotal\n") and editor.pending == "x",
            "ctrl+q": lambda: isinstance(app.screen, ChoiceDialog),
        }
        await settle(pilot, checks[key], what=f"{key} to act")


async def test_a_recovery_copy_is_offered_back(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    app = _app(path, FimBackend(""))
    recovery = home / "data" / "recovery"
    async with app.run_test(size=(100, 30)) as pilot:
        await _typed(pilot, path, "lost ")
        await settle(pilot, lambda: any(recovery.glob("*.json")), what="a recovery copy")
        # the app dies here without a word (a lost terminal): nothing is saved to the file
    copy = next(recovery.glob("*.json"))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and copy.parent != path.parent
    assert json.loads(copy.read_text())["text"].startswith("lost ")
    assert path.read_text() == SOURCE
    again = _app(path, FimBackend(""))
    async with again.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(again.screen, ChoiceDialog), what="the offer")
        assert "Restore them?" in again.screen.question
        await pilot.click("#restore")
        await settle(pilot, lambda: isinstance(again.screen, CodeScreen))
        editor = again.screen.query_one(CodeEditor)
        assert editor.text == "lost " + SOURCE and again.screen.dirty
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: path.read_text() == "lost " + SOURCE)
        await settle(pilot, lambda: not any(recovery.glob("*.json")), what="the copy gone")


async def test_save_through_a_symlink_writes_the_real_file(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text(SOURCE)
    real.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    # a link planted at the old, predictable temp name must not redirect the save
    (tmp_path / ".link.py.tramontane-save").symlink_to(victim)
    (tmp_path / ".real.py.tramontane-save").symlink_to(victim)
    app = _app(link, FimBackend(""))
    async with app.run_test(size=(100, 30)) as pilot:
        await _typed(pilot, link, "w")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: real.read_text() == "w" + SOURCE)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert victim.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


async def test_quitting_from_the_chat_screen_needs_no_question(tmp_path: Path) -> None:
    app = _app(tmp_path / "none.py", FimBackend(""))
    app.open_file = None
    app._code_backend = ScriptedBackend()
    async with app.run_test() as pilot:
        await pilot.press("ctrl+q")
        await settle(pilot, lambda: not app.is_running)


@pytest.mark.parametrize(("config", "name"), [({"debounce_ms": 0}, "calc.py"),
                                              ({"auto_suggest_off": ["markdown"]}, "notes.md")])
async def test_automatic_suggestions_can_be_turned_off(tmp_path: Path, config: dict[str, object],
                                                       name: str) -> None:
    path = tmp_path / name
    path.write_text(SOURCE)
    backend = FimBackend("total")
    app = _app(path, backend)
    app.door.config.values["code"].update(config)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _typed(pilot, path, "abc")
        screen = app.screen
        assert isinstance(screen, CodeScreen) and not screen.auto_suggest
        await pilot.pause()  # the edits' Changed messages are handled: no suggestion is timed
        assert screen._timer is None and backend.fim_calls == [] and editor.pending == ""
        await pilot.press("ctrl+space")  # asking still works
        await settle(pilot, lambda: editor.pending == "total", what="the asked suggestion")
