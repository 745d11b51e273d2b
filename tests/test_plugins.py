"""Plugins written by the test into a temp folder, found through their entry points: a slash
command and a FIM context chunk reach the request; a raising plugin is turned off with one
message; a slow one cannot hold up a completion; TRAMONTANE_PLUGINS and config.toml decide
which load; `tramontane plugins list` shows them."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import threading
from pathlib import Path

import pytest

from app.engine.backend import ModelRef, Params
from app.plugins.manager import get_host, reset_host
from app.session.complete import CompletionSession
from app.session.context import AppContext
from app.session.library import ChatLibrary
from app.session.slash import ChatPrompt, split_command
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, send, settle, tramontane

DEMO = '''
import threading
from app.plugins.hookspecs import Attachment, ContextChunk, SlashCommand, hookimpl

finished = []
release = threading.Event()
started = threading.Event()

def wait(args, chat):
    started.set()
    release.wait(30)
    return ""

@hookimpl
def reply_finished(chat_id, question, reply, stats):
    finished.append((chat_id, question, reply, stats["generated_tokens"]))

def shout(args, chat):
    chat.attach(Attachment("shouted", args.upper()))
    chat.notice("shouting")
    return "Say it back: " + args

@hookimpl
def register_slash_commands(register):
    register(SlashCommand("shout", "attach TEXT in capitals", shout, usage="TEXT"))
    register(SlashCommand("wait", "block until the test releases it", wait))

@hookimpl
def fim_context(path, prefix, suffix, cursor):
    return [ContextChunk("lib/helpers.py", "def helper_from_plugin(x):\\n    return x * 2\\n")]

@hookimpl
def register_commands(subparsers):
    p = subparsers.add_parser("hello", help="say hello from the demo plugin")
    p.add_argument("--fail", action="store_true")
    p.set_defaults(func=hello)

def hello(args):
    if args.fail:
        raise OSError("the disk is gone")
    print("hello from demo")
    return 0
'''

BOOM = '''
from app.plugins.hookspecs import hookimpl

calls = []

@hookimpl
def chat_context(text, chat_id):
    calls.append(text)
    raise RuntimeError("the plugin broke")
'''

SLOW = '''
import threading
from app.plugins.hookspecs import ContextChunk, hookimpl

release = threading.Event()
entered = threading.Event()

@hookimpl
def fim_context(path):
    entered.set()
    release.wait(30)
    return [ContextChunk("late.py", "too late")]
'''


def write_plugin(root: Path, name: str, source: str, version: str = "1.2.3") -> None:
    """A module plus a dist-info with an entry point in the `tramontane` group, on sys.path."""
    module = name.replace("-", "_")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[tramontane]\n{name} = {module}\n")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    write_plugin(root, "demo", DEMO)
    write_plugin(root, "boom", BOOM)
    write_plugin(root, "slow", SLOW)
    monkeypatch.syspath_prepend(str(root))
    import importlib

    importlib.invalidate_caches()
    return root


def pin(monkeypatch: pytest.MonkeyPatch, names: str) -> None:
    monkeypatch.setenv("TRAMONTANE_PLUGINS", names)
    reset_host()


def test_split_command_tells_commands_from_paths() -> None:
    assert split_command("/file a.py what is it?") == ("file", "a.py what is it?")
    assert split_command("/help") == ("help", "")
    assert split_command("/usr/bin is a folder") is None
    assert split_command("hello /file") is None


async def test_slash_command_and_fim_chunk_reach_the_requests(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "demo")
    backend = ScriptedBackend()
    library = ChatLibrary(AppContext(), backend)
    session = library.new()
    prompt = ChatPrompt(get_host())
    prepared = await prompt.prepare("/shout hello there", session)
    assert prepared.notices == ["shouting"]
    assert prepared.content is not None
    async for _ in session.send(prepared.content, title=prepared.question):
        pass
    sent = backend.requests[-1][0][-1].content
    assert "shouted:\n```\nHELLO THERE\n```" in sent and sent.endswith("Say it back: hello there")
    assert library.store.chat(session.chat_id).title == "Say it back: hello there"
    await get_host().drain()
    import demo  # type: ignore[import-not-found]

    assert demo.finished == [(session.chat_id, sent, "Hello from the script.", 4)]

    fim_backend = ScriptedBackend()
    completion = CompletionSession(fim_backend, ModelRef("m", fim_format="qwen"),
                                   Params(max_tokens=16), get_host())
    await completion.complete("def f(x):\n    return ", "\n", "/work/src/main.py")
    request = fim_backend.fim_prompts[-1]
    assert "<|file_sep|>lib/helpers.py\ndef helper_from_plugin(x):" in request
    assert request.index("helper_from_plugin") < request.index("<|fim_prefix|>")

    completion.model = ModelRef("m", fim_format="codestral")
    completion._cache.clear()
    completion._last = None
    await completion.complete("x = ", "\n", "main.py")
    assert "[PREFIX] # lib/helpers.py\n# def helper_from_plugin(x):" in fim_backend.fim_prompts[-1]


async def test_slash_command_in_the_app_and_help(plugin_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "demo")
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "/help")
        await settle(pilot, lambda: any("/shout TEXT" in n.message for n in app._notifications),
                         what="the /help list")
        assert not backend.requests  # /help sends nothing to the model
        await send(pilot, "/shout quiet")
        await settle(pilot, lambda: bool(backend.requests), what="the request")
        assert "QUIET" in backend.requests[-1][0][-1].content


async def test_a_raising_plugin_is_reported_once_and_turned_off(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "boom")
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "first question")
        await settle(pilot, lambda: len(backend.requests) == 1, what="the first reply")
        await settle(pilot, lambda: not app.chat.busy)
        await send(pilot, "second question")
        await settle(pilot, lambda: len(backend.requests) == 2, what="the second reply")
        messages = [n.message for n in app._notifications if "boom" in n.message]
    import boom  # type: ignore[import-not-found]

    assert boom.calls == ["first question"]  # off after it raised
    assert len(messages) == 1 and "failed in chat_context" in messages[0]
    assert "the plugin broke" in messages[0]
    assert get_host().infos["boom"].status.startswith("failed")
    log = Path(os.environ["TRAMONTANE_HOME"]) / "logs" / "tramontane.log"
    assert "RuntimeError: the plugin broke" in log.read_text()


async def test_a_slow_plugin_does_not_hold_up_completion(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "slow")
    import slow  # type: ignore[import-not-found]

    backend = ScriptedBackend()
    session = CompletionSession(backend, ModelRef("m", fim_format="qwen"), Params(max_tokens=8),
                                get_host())
    try:
        # the plugin waits on an event that is set only after the completion came back
        await asyncio.wait_for(session.complete("a = ", "\n", "x.py"), timeout=10)
        assert slow.entered.is_set()
        assert "late.py" not in backend.fim_prompts[-1]
        assert any("slow is slow in fim_context" in r for r in get_host().reports)
        # while its call is still running it is not called again
        session._cache.clear()
        session._last = None
        slow.entered.clear()
        await asyncio.wait_for(session.complete("b = ", "\n", "x.py"), timeout=10)
        assert not slow.entered.is_set()
    finally:
        slow.release.set()


def test_pinning_and_config_decide_what_loads(plugin_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    pin(monkeypatch, "")
    infos = get_host().infos
    assert infos["demo"].status == "not in TRAMONTANE_PLUGINS"
    assert "shout" not in get_host().slash_commands()
    assert infos["builtin"].status == "loaded"  # built-in behaviour always loads

    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text('[plugins]\ndisabled = ["demo"]\n')
    pin(monkeypatch, "demo,boom")
    infos = get_host().infos
    assert infos["demo"].status == "disabled in config.toml"
    assert infos["boom"].status == "loaded"


def test_plugins_list_and_a_plugin_command_on_the_command_line(plugin_dir: Path) -> None:
    env = {"PYTHONPATH": str(plugin_dir), "TRAMONTANE_PLUGINS": "demo"}
    listed = tramontane("plugins", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "demo 1.2.3: loaded" in listed.stdout
    assert "hooks: fim_context, register_commands, register_slash_commands" in listed.stdout
    assert "/shout (demo)" in listed.stdout
    rows = json.loads(tramontane("plugins", "list", "--json", env=env).stdout)
    assert {r["name"]: r["status"] for r in rows}["boom"] == "not in TRAMONTANE_PLUGINS"
    hello = tramontane("hello", env=env)
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from demo"
    failed = tramontane("hello", "--fail", env=env)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "Plugin demo failed in its `hello` command (OSError: the disk is gone)" in failed.stderr


def test_a_plugin_that_cannot_be_imported_is_reported(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "site"
    root.mkdir()
    write_plugin(root, "broken", "import no_such_module_here\n")
    result = tramontane("plugins", "list", env={"PYTHONPATH": str(root),
                                                "TRAMONTANE_PLUGINS": "broken"})
    assert result.returncode == 0
    assert "Plugin broken could not be loaded" in result.stderr
    assert "broken 1.2.3: failed to load" in result.stdout


def test_hooks_run_off_the_event_loop_thread(plugin_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "")
    host = get_host()
    seen: list[str] = []

    class Probe:
        from app.plugins.hookspecs import hookimpl

        @hookimpl
        def file_touched(self, path: str) -> None:
            seen.append(threading.current_thread().name)

    host.register(Probe(), "probe")
    asyncio.run(host.acall("file_touched", 5.0, path="a", event="opened", text=""))
    assert seen and seen[0].startswith("plugin")


async def test_a_slow_slash_command_leaves_the_app_responsive(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "demo")
    import demo  # type: ignore[import-not-found]

    from app.ui.tui.prompt import PromptBox

    app = make_app(ScriptedBackend())
    try:
        async with app.run_test() as pilot:
            await send(pilot, "/wait")
            await settle(pilot, demo.started.is_set, what="the command running")
            await pilot.press("h", "i")  # the screen still takes keys while it runs
            await settle(pilot, lambda: app.query_one(PromptBox).text == "hi",
                             what="typing while the command runs")
            await pilot.press("escape")  # and Esc gives the prompt back
            await settle(pilot, lambda: not app.chat.busy, what="the command given up")
    finally:
        demo.release.set()


async def test_typing_a_slash_shows_the_matching_commands(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(monkeypatch, "demo")
    from textual.widgets import Label

    from app.ui.tui.prompt import PromptBox

    app = make_app(ScriptedBackend())
    async with app.run_test() as pilot:
        app.query_one(PromptBox).focus()
        await pilot.press("slash", "s", "h")
        status = app.query_one("#status", Label)
        await settle(pilot, lambda: "/shout TEXT — attach TEXT in capitals" in str(status.content),
                         what="the hint")
        await pilot.press("space")
        await settle(pilot, lambda: "shout" not in str(status.content), what="the status back")


async def test_builtin_system_command_sets_the_chat_system_prompt() -> None:
    backend = ScriptedBackend()
    library = ChatLibrary(AppContext(), backend)
    session = library.new()
    prompt = ChatPrompt(get_host())
    assert set(prompt.commands) == {"help", "system"}  # built-ins load with no plugin pinned
    done = await prompt.prepare("/system Answer in French.", session)
    assert done.content is None and done.notices == ["System prompt set."]
    prepared = await prompt.prepare("Hello", session)
    assert prepared.content == "Hello"
    async for _ in session.send(prepared.content):
        pass
    first = backend.requests[-1][0][0]
    assert (first.role, first.content) == ("system", "Answer in French.")
    assert library.store.chat(session.chat_id).system_prompt == "Answer in French."
    unknown = await prompt.prepare("/nope", session)
    assert unknown.content is None and "/help lists them" in unknown.notices[0]
