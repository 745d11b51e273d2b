"""Tools in the chat: the read-only folder tools and their guards, the call loop (shown,
approved or not, run, kept in the history, sent back), MCP servers through the official SDK,
and the app's approval, on a scripted backend (the real model: test_real_models.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest

from app.engine.backend import Token
from app.engine.tools import ToolCall
from app.session.chat_tools import FolderTools, ToolAsked, ToolDone, ToolFailed
from app.session.front import Tramontane
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, send, settle, views

FIXTURE_SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"
CALL = '<tool_call>\n{"name": "search", "arguments": {"text": "postprocess"}}\n</tool_call>'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "fim.py").write_text("def postprocess(text):\n    return text\n")
    (root / "src" / "serve.py").write_text("from fim import postprocess\nprint(postprocess('x'))\n")
    (root / ".env").write_text("API_KEY=hunter2\n")
    (root / "notes.md").write_text("postprocess is in fim.py\n")
    (tmp_path / "outside.txt").write_text("private\n")
    (root / "escape.txt").symlink_to(tmp_path / "outside.txt")
    return root


def test_the_folder_tools_read_only_inside_and_never_secrets(project: Path) -> None:
    tools = FolderTools(project)
    assert tools.read_file("src/fim.py") == "1: def postprocess(text):\n2:     return text"
    assert tools.read_file("src/serve.py", 2, 2) == "2: print(postprocess('x'))"
    listed = tools.list_folder()
    assert "src/" in listed and "notes.md" in listed and ".env" not in listed
    found = tools.search("postprocess")
    assert "src/fim.py:1:def postprocess(text):" in found and "notes.md:1:" in found
    for refused, said in ((lambda: tools.read_file("../outside.txt"), "outside"),
                          (lambda: tools.read_file("escape.txt"), "outside"),
                          (lambda: tools.read_file(".env"), "secrets"),
                          (lambda: tools.read_file("/etc/passwd"), "outside"),
                          (lambda: tools.git("status"), "not a git repository")):
        with pytest.raises(ToolFailed, match=said):
            refused()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert "notes.md" in tools.git("status")
    assert "src/serve.py:1:" in tools.search("import postprocess")  # through git grep


async def test_a_call_is_asked_run_kept_and_sent_back(home: Path, project: Path) -> None:
    backend = ScriptedBackend(replies=[CALL, "Two files call it: src/serve.py and notes.md."])
    door = Tramontane.open(chat_backend=backend)
    session = door.chats.new()
    await door.chats.with_tools(session, project)
    asked: list[ToolCall] = []

    async def approve(call: ToolCall) -> str:
        asked.append(call)
        return "once"

    session.approve = approve
    async with aclosing(session.send("Which files call postprocess?")) as stream:
        events = [e async for e in stream]
    (shown,) = [e for e in events if isinstance(e, ToolAsked)]
    (done,) = [e for e in events if isinstance(e, ToolDone)]
    assert shown.call.name == "search" and asked == [shown.call] and done.ran
    assert "src/serve.py:1:" in done.result
    assert "".join(e.text for e in events if isinstance(e, Token)).endswith("notes.md.")
    sent, params = backend.requests[-1]
    assert json.loads(params.tools)[0]["function"]["name"] == "read_file"
    assert sent[-1].role == "tool" and "src/serve.py" in sent[-1].content
    assert sent[-2].tool_calls[0].name == "search"
    history = session.history()  # the call and its result are kept, and read back
    assert [m.role for m in history[-3:]] == ["assistant", "tool", "assistant"]
    assert door.chats.chats("serve.py")  # and searchable
    assert "calls `search`" in door.chats.markdown(session.chat_id)
    await session.toolbox.close()  # type: ignore[union-attr]
    door.close()


async def test_a_denied_call_is_not_run_and_auto_approve_is_not_asked(home: Path,
                                                                     project: Path) -> None:
    backend = ScriptedBackend(replies=[CALL, "I could not look.", CALL, "Found them."])
    door = Tramontane.open(chat_backend=backend)
    session = door.chats.new()
    await door.chats.with_tools(session, project)

    async def deny(call: ToolCall) -> str:
        return "deny"

    session.approve = deny
    async with aclosing(session.send("Which files call postprocess?")) as stream:
        (done,) = [e async for e in stream if isinstance(e, ToolDone)]
    assert not done.ran and "did not allow" in done.result
    session.auto_approve = {"search"}
    session.approve = None  # nobody to ask: only auto-approved tools run
    async with aclosing(session.send("Try again.")) as stream:
        (done,) = [e async for e in stream if isinstance(e, ToolDone)]
    assert done.ran and "src/fim.py" in done.result
    door.close()


async def test_an_mcp_server_from_the_config_is_offered_and_runs(home: Path, tmp_path: Path,
                                                                project: Path) -> None:
    calls = tmp_path / "calls.txt"
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[mcp.servers.calc]\ncommand = [{json.dumps(sys.executable)}, '
                      f'{json.dumps(str(FIXTURE_SERVER))}]\nenv = {{ CALLS_FILE = '
                      f'{json.dumps(str(calls))} }}\n'
                      '[mcp.servers.broken]\ncommand = ["/no/such/program"]\n')
    add = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 40}}\n</tool_call>'
    door = Tramontane.open(chat_backend=ScriptedBackend(replies=[add, "It is 42."]))
    session = door.chats.new()
    problems = await door.chats.with_tools(session, project)
    assert len(problems) == 1 and "/no/such/program" in problems[0]
    assert session.toolbox is not None and session.toolbox.sources["add"] == "mcp:calc"

    async def once(call: ToolCall) -> str:
        return "once"

    session.approve = once
    async with aclosing(session.send("What is 2 + 40?")) as stream:
        (done,) = [e async for e in stream if isinstance(e, ToolDone)]
    assert done.result == "42" and calls.read_text() == "add 2 40\n"
    await session.toolbox.close()
    door.close()


def test_the_tools_command_lists_the_mcp_servers_tools(home: Path) -> None:
    from tests.helpers import tramontane

    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[mcp.servers.calc]\ncommand = [{json.dumps(sys.executable)}, '
                      f'{json.dumps(str(FIXTURE_SERVER))}]\n')
    out = tramontane("tools")
    assert out.returncode == 0, out.stderr
    assert "add" in out.stdout and "mcp:calc" in out.stdout and "search" in out.stdout


async def test_the_app_asks_before_a_tool_runs_and_folds_its_result(home: Path,
                                                                   project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   ) -> None:
    from textual.widgets import Button, Collapsible

    from app.ui.tui.dialogs import ChoiceDialog
    from app.ui.tui.message_view import ToolView

    monkeypatch.chdir(project)
    app = make_app(ScriptedBackend(replies=[CALL, "src/serve.py calls it."]))
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("ctrl+t")
        assert app.chat.tools_wanted
        await send(pilot, "Which files call postprocess?")
        await settle(pilot, lambda: isinstance(app.screen, ChoiceDialog)
                     and bool(app.screen.query("#once")), what="the question")
        assert 'search(text="postprocess")' in app.screen.question  # type: ignore[attr-defined]
        app.screen.query_one("#once", Button).press()
        await settle(pilot, lambda: bool(views(app)) and views(app)[-1].state == "complete"
                     and views(app)[-1].text == "src/serve.py calls it.", what="the answer")
        (result,) = app.query(ToolView)
        fold = result.query_one(Collapsible)
        assert fold.collapsed and "Result of search" in str(fold.title)
        assert "calls search" in str(views(app)[1].query_one(".message-title").render())


@pytest.mark.qwen
async def test_the_qwen_starter_searches_the_repo_when_asked_in_the_app(
        home: Path, project: Path, qwen: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case on the real model: "which files in this repo call postprocess?" in the
    app; the chat calls the search tool, the user allows it, and the answer uses the result."""
    from textual.widgets import Button

    from app.ui.tui.app import TramontaneApp
    from app.ui.tui.dialogs import ChoiceDialog
    from app.ui.tui.message_view import ToolView

    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[chat]\nmodel = "qwen2.5-coder-1.5b-instruct"\n[params]\n'
                      'temperature = 0.0\nmax_tokens = 120\n[tools]\nenabled = true\n')
    monkeypatch.chdir(project)
    app = TramontaneApp(Tramontane.open())
    async with app.run_test(size=(110, 40)) as pilot:
        await send(pilot, "Which files in this repo call postprocess?")
        await settle(pilot, lambda: isinstance(app.screen, ChoiceDialog)
                     and bool(app.screen.query("#once")), timeout=120,
                     what="the model's call, to approve")
        asked = app.screen.question  # type: ignore[attr-defined]
        assert "search(" in asked and "postprocess" in asked
        app.screen.query_one("#once", Button).press()
        await settle(pilot, lambda: bool(app.query(ToolView)) and not app.chat.busy,
                     timeout=180, what="the answer after the search")
        answer = views(app)[-1].text
        assert views(app)[-1].state == "complete"
        # it read the result: it names files only the search could have told it of
        assert any(name in answer for name in ("serve.py", "fim.py", "notes.md")), answer
