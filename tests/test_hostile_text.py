"""Text a user or a model wrote is shown as text (issue 24): chat titles holding Textual
markup, notices naming them, and an app crash is not a success."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.session.context import AppContext
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, settle, tramontane

TITLES = ["[/] why does this regex fail?", "[bold red]loud", "[@click=app.quit]click me"]


async def test_markup_in_chat_titles_is_shown_as_text(home: Path) -> None:
    store = AppContext().store
    for title in TITLES:
        store.create_chat("smollm2", "llama.cpp", title=title)
    app = make_app(ScriptedBackend())
    async with app.run_test(size=(120, 40)) as pilot:
        from textual.widgets import OptionList

        options = app.screen.query_one("#chats", OptionList)
        await settle(pilot, lambda: options.option_count == 3, what="the chats")
        shown = {str(options.get_option_at_index(i).prompt) for i in range(3)}
        assert shown == set(TITLES)
        app.notify(f"Deleted “{TITLES[0]}”.")  # a notice naming it does not raise
        await pilot.pause()
        assert app.is_running  # and [@click=app.quit] did nothing


async def test_a_crash_is_not_a_success(home: Path) -> None:
    app = make_app(ScriptedBackend())
    with pytest.raises(ZeroDivisionError):  # the test harness re-raises it
        async with app.run_test() as pilot:
            app.call_later(lambda: 1 / 0)
            await pilot.pause()
    assert app.return_code == 1  # and `tramontane` exits with it (cli_tui.run)


def test_a_symlink_loop_is_one_line(tmp_path: Path, home: Path) -> None:
    loop = tmp_path / "loop.py"
    os.symlink(loop, loop)
    out = tramontane("code", str(loop), timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "symbolic links" in out.stderr


def test_a_template_asking_for_a_billion_loops_is_one_error() -> None:
    from app.engine.backend import Message
    from app.engine.prompts.chat import from_template
    from app.errors import BackendError

    with pytest.raises(BackendError, match="chat template"):
        from_template("{% for i in range(10**9) %}x{% endfor %}", [Message("user", "hi")])


def test_a_file_name_that_is_not_utf8(tmp_path: Path, home: Path) -> None:
    from app.session.recovery import RecoveryStore

    name = os.fsdecode(b"caf\xe9.py")
    (tmp_path / name).write_text("a = 1\n")
    out = tramontane("complete", name, "--line", "1", "--col", "1", "--show-prompt",
                     "--dry-run", env={"TRAMONTANE_SERVER": "off"}, cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    store = RecoveryStore(tmp_path / "recovery")
    (tmp_path / "recovery").mkdir()
    assert store.save(tmp_path / name, "a = 2\n")
    found = store.load(tmp_path / name)
    assert found is not None and found.text == "a = 2\n"
