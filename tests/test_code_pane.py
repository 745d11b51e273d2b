"""The code pane with the pilot: ghost text, accept, accept a word, dismiss, save, refuse."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from app.engine.backend import Done, Stats, Token
from app.ui.tui.code_editor import CodeEditor
from app.ui.tui.code_screen import CodeScreen
from app.ui.tui.dialogs import ConfirmDialog
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, settle

SOURCE = "def total(xs):\n    s = 0\n    for x in xs:\n        \n    return s\n"


class FimBackend(ScriptedBackend):
    """Answers completion requests with a fixed suggestion and counts them."""

    def __init__(self, suggestion: str) -> None:
        super().__init__()
        self.suggestion = suggestion
        self.fim_calls: list[tuple[str, str]] = []
        self.warm_calls: list[tuple[str, str]] = []

    async def complete(self, prefix, suffix, params, extra=(), path=""):  # type: ignore[no-untyped-def]
        if params.max_tokens == 1:  # the pane warming the cache where the cursor rests
            self.warm_calls.append((prefix, suffix))
            yield Done(Stats(prompt_tokens=20, generated_tokens=1))
            return
        self.fim_calls.append((prefix, suffix))
        yield Token(self.suggestion)
        yield Done(Stats(prompt_tokens=20, generated_tokens=3))


def _app(path: Path, backend: FimBackend):  # type: ignore[no-untyped-def]
    app = make_app(ScriptedBackend())
    app.open_file = path
    app._code_backend = backend
    return app


def _calc(tmp_path: Path, backend: FimBackend):  # type: ignore[no-untyped-def]
    """The app with SOURCE in calc.py, about to open it in the code pane."""
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    return path, _app(path, backend)


async def _open(pilot, path: Path) -> CodeEditor:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                     and bool(app.screen.query(CodeEditor)), what="the code pane")
    editor = app.screen.query_one(CodeEditor)
    editor.move_cursor((3, 8))
    return editor


async def test_ghost_text_after_a_pause_and_tab_accepts(tmp_path: Path) -> None:
    backend = FimBackend(" += x")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await pilot.press("s")
        await settle(pilot, lambda: editor.pending == " += x", what="the ghost text")
        assert editor.suggestion == " += x"
        assert backend.fim_calls[0][0].endswith("        s")
        await pilot.press("tab")
        assert editor.text.splitlines()[3] == "        s += x"
        assert editor.pending in ("", " += x")  # the next one may be ready already


async def test_typing_the_suggestion_keeps_the_rest_and_word_accept(tmp_path: Path) -> None:
    backend = FimBackend("s += x * 2")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await pilot.press("ctrl+space")
        await settle(pilot, lambda: editor.pending == "s += x * 2")
        await pilot.press("s")
        assert editor.pending == " += x * 2"
        calls = len(backend.fim_calls)
        await pilot.press("ctrl+right")
        assert editor.text.splitlines()[3] == "        s +="
        assert editor.pending == " x * 2"
        await pilot.press("escape")
        assert editor.pending == "" and editor.suggestion == ""
        assert len(backend.fim_calls) == calls  # typed-ahead needed no request


async def test_save_is_atomic_and_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "run.sh"
    path.write_text("echo hi\n")
    path.chmod(0o750)
    app = _app(path, FimBackend(""))
    async with app.run_test() as pilot:
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        editor = app.screen.query_one(CodeEditor)
        editor.move_cursor((1, 0))
        editor.insert("echo bye\n")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: path.read_text() == "echo hi\necho bye\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
        assert not list(tmp_path.glob(".*tramontane-save"))


async def test_changed_on_disk_is_not_overwritten_without_asking(tmp_path: Path) -> None:
    path = tmp_path / "notes.py"
    path.write_text("a = 1\n")
    app = _app(path, FimBackend(""))
    async with app.run_test() as pilot:
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        editor = app.screen.query_one(CodeEditor)
        editor.insert("# mine\n")
        path.write_text("a = 2  # someone else\n")
        os.utime(path)
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#no")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        assert path.read_text() == "a = 2  # someone else\n"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await settle(pilot, lambda: path.read_text().startswith("# mine"))


async def test_binary_file_is_refused_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    app = _app(path, FimBackend(""))
    async with app.run_test() as pilot:
        await pilot.pause()
        assert not isinstance(app.screen, CodeScreen)
        assert any("binary" in n.message for n in app._notifications)
        assert path.read_bytes().startswith(b"\x89PNG")


def test_cli_refuses_binary_before_starting(tmp_path: Path) -> None:
    from tests.helpers import tramontane

    path = tmp_path / "a.bin"
    path.write_bytes(b"\0\1\2\3")
    out = tramontane("code", str(path))
    assert out.returncode == 1 and "binary" in out.stderr


async def test_files_opened_in_the_same_repository_feed_the_completion(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """tramontane-repo-context in the app: a file opened earlier in the same git repository
    shows up in the next completion request; one saved with a change moves to the front."""
    import subprocess

    import pytest

    repo_context = pytest.importorskip("tramontane_repo_context", reason="run `make install`")
    from app.plugins.manager import reset_host

    monkeypatch.setenv("TRAMONTANE_PLUGINS", "tramontane-repo-context")
    reset_host()
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "prices.py").write_text("TAX = 0.2\n\ndef with_tax(p):\n    return p * (1 + TAX)\n")
    (repo / "calc.py").write_text(SOURCE)
    backend = ScriptedBackend()
    backend.fim_replies = ["s += x"]
    app = _app(repo / "prices.py", backend)  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        await settle(pilot, lambda: any(c.path == repo / "prices.py"
                                            for c in repo_context.ring.chunks),
                         what="the opened file in the ring")
        await pilot.press("ctrl+w")
        await settle(pilot, lambda: not isinstance(app.screen, CodeScreen))
        app.open_code(repo / "calc.py")
        editor = await _open(pilot, repo / "calc.py")
        await pilot.press("ctrl+space")
        await settle(pilot, lambda: bool(backend.fim_prompts), what="a completion request")
        request = backend.fim_prompts[-1]
        assert "# prices.py\n# TAX = 0.2" in request and "def with_tax" in request
        assert "# calc.py" not in request  # the file being completed is not repeated
        assert editor.text == SOURCE


async def test_multi_line_ghost_text_shows_every_line(tmp_path: Path) -> None:
    """All of what Tab inserts shows, dimmed: the first line after the cursor, the others as
    lines under it that push the code below down; Right takes a word, Tab the rest."""
    backend = FimBackend("s += x\n        if s > 10:\n            break")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await pilot.press("ctrl+space")
        await settle(pilot, lambda: bool(editor.pending))
        assert editor.suggestion == "s += x"
        screen_text = [editor.render_line(y).text for y in range(7)]
        assert screen_text[4].strip() == "if s > 10:" and screen_text[5].strip() == "break"
        assert screen_text[6].strip().endswith("return s")  # pushed down by two lines
        await pilot.press("right")  # a word of it, never the whole multi-line suggestion
        assert editor.text.splitlines()[3:5] == ["        s", "    return s"]
        assert editor.pending.startswith(" += x\n")
        await pilot.press("tab")
        assert editor.text.splitlines()[3:6] == ["        s += x", "        if s > 10:",
                                                 "            break"]
        await pilot.press("escape")  # the next suggestion (ready at once) is dismissed
        assert editor.pending == ""
        assert "return s" in editor.render_line(6).text  # no ghost lines any more


async def test_next_suggestion_is_ready_after_tab(tmp_path: Path) -> None:
    """After a suggestion shows, the one after accepting it is asked for at once; Tab then
    shows it from the cache."""
    backend = FimBackend(" += x")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await pilot.press("s")
        await settle(pilot, lambda: editor.pending == " += x")
        await settle(pilot, lambda: len(backend.fim_calls) == 2, what="the speculation")
        assert backend.fim_calls[1][0].endswith("        s += x")
        await pilot.press("tab")
        await settle(pilot, lambda: editor.pending == " += x")  # the cached next one
        assert "from cache" in str(app.screen.query_one("#code-status").render())
        assert backend.fim_calls[2][0].endswith("s += x += x")  # and the one after that


async def test_the_cache_is_warmed_where_the_cursor_rests(tmp_path: Path) -> None:
    """Opening a file, and moving the cursor and pausing, evaluate that place's prompt in the
    background (one token, kept as no suggestion): the first suggestion there finds it cached."""
    backend = FimBackend(" += x")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await settle(pilot, lambda: len(backend.warm_calls) >= 2, what="the warm-ups")
        assert backend.warm_calls[0][0] == ""  # at the top, as the file opened
        assert backend.warm_calls[-1][0].endswith("    for x in xs:\n        ")  # (3, 8)
        assert editor.pending == "" and not backend.fim_calls  # no suggestion was shown


class SlowBackend(FimBackend):
    """The first line, then the rest only once the test releases it."""

    def __init__(self, first: str, rest: str) -> None:
        super().__init__(first + rest)
        self.first, self.rest = first, rest
        self.go = asyncio.Event()

    async def complete(self, prefix, suffix, params, extra=(), path=""):  # type: ignore[no-untyped-def]
        if params.max_tokens == 1:
            yield Done(Stats())
            return
        self.fim_calls.append((prefix, suffix))
        yield Token(self.first)
        await self.go.wait()
        yield Token(self.rest)
        yield Done(Stats(prompt_tokens=20, generated_tokens=9))


async def test_first_line_shows_before_the_rest(tmp_path: Path) -> None:
    backend = SlowBackend("s += x\n", "        if s > 10:\n            break")
    path, app = _calc(tmp_path, backend)
    async with app.run_test(size=(100, 30)) as pilot:
        editor = await _open(pilot, path)
        await pilot.press("ctrl+space")
        await settle(pilot, lambda: editor.pending == "s += x", what="the first line")
        backend.go.set()
        await settle(pilot, lambda: "break" in editor.pending, what="the whole suggestion")
        assert editor.pending == "s += x\n        if s > 10:\n            break"
