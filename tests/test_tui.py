"""The chat screen driven with the pilot, over a scripted backend and a real history.db."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ui.tui.dialogs import ConfirmDialog, ModelPicker, ParamsDialog, TextDialog
from app.ui.tui.prompt import PromptBox
from app.ui.tui.sidebar import ChatList
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, send, settle, views

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

REPLY = "The Loire, the Seine and the Rhône."


def done(app) -> bool:  # type: ignore[no-untyped-def]
    v = views(app)
    return len(v) >= 2 and v[-1].role == "assistant" and v[-1].state != "streaming"


async def test_send_and_stream(home: Path) -> None:
    backend = ScriptedBackend(replies=[REPLY])
    app = make_app(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "Name three French rivers.")
        await settle(pilot, lambda: done(app), what="the reply")
        user, reply = views(app)[-2:]
        assert user.text == "Name three French rivers."
        assert reply.text == REPLY and reply.state == "complete"
        assert "42.0 tok/s" in str(app.query_one("#status").render())
        chats = app.library.store.chats()
        assert [c.title for c in chats] == ["Name three French rivers."]
        assert app.query_one(ChatList).options.option_count == 1
        assert app.query_one(PromptBox).text == ""


async def test_stop_keeps_the_partial_reply(home: Path) -> None:
    backend = ScriptedBackend(replies=["one two three four five six"], hold_after=3)
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "Count")
        await settle(pilot, lambda: backend.streamed == 3, what="three tokens")
        await pilot.press("escape")
        await settle(pilot, lambda: views(app)[-1].state == "partial" and not app.chat.busy)
        reply = views(app)[-1]
        assert reply.text == "one two three "
        assert "stopped" in str(reply.query_one(".message-title").render())
        stored = app.library.store.messages(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert stored[-1].state == "partial" and stored[-1].content == "one two three "


async def test_regenerate_replaces_the_reply(home: Path) -> None:
    backend = ScriptedBackend(replies=["first answer", "second answer"])
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "Question")
        await settle(pilot, lambda: done(app))
        await pilot.press("ctrl+r")
        await settle(pilot, lambda: done(app) and views(app)[-1].text == "second answer")
        assert [v.role for v in views(app)] == ["user", "assistant"]
        stored = app.library.store.messages(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert [m.content for m in stored] == ["Question", "second answer"]


async def test_edit_last_question_and_resend(home: Path) -> None:
    backend = ScriptedBackend(replies=["about cats", "about dogs"])
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "Tell me about cats")
        await settle(pilot, lambda: done(app))
        await pilot.press("ctrl+e")
        prompt = app.query_one(PromptBox)
        assert prompt.text == "Tell me about cats"
        prompt.load_text("Tell me about dogs")
        await pilot.press("enter")
        await settle(pilot, lambda: done(app) and views(app)[-1].text == "about dogs")
        stored = app.library.store.messages(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert [m.content for m in stored] == ["Tell me about dogs", "about dogs"]
        assert [v.text for v in views(app)] == ["Tell me about dogs", "about dogs"]


async def test_switch_model_from_the_picker(home: Path) -> None:
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "Hi")
        await settle(pilot, lambda: done(app))
        await pilot.press("f4")
        await settle(pilot, lambda: isinstance(app.screen, ModelPicker))
        rows = app.screen.rows  # type: ignore[attr-defined]
        target = next(i for i, r in enumerate(rows) if r.startswith("gemma3-270m"))
        app.screen.query_one("#models").highlighted = target
        await pilot.press("enter")
        await settle(pilot, lambda: not isinstance(app.screen, ModelPicker))
        assert app.chat.session is not None and app.chat.session.model.name == "gemma3-270m"
        assert app.library.store.chat(app.chat.session.chat_id).model == "gemma3-270m"
        await send(pilot, "Again")
        await settle(pilot, lambda: len(backend.requests) == 2 and done(app))
        assert backend.loaded is not None and backend.loaded.name == "gemma3-270m"


async def test_system_prompt_and_parameters(home: Path) -> None:
    backend = ScriptedBackend(replies=["ok", "arr"])
    app = make_app(backend)
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "Hi")
        await settle(pilot, lambda: done(app))
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ParamsDialog))
        screen = app.screen
        screen.query_one("#system").load_text("You are a pirate.")  # type: ignore[attr-defined]
        screen.query_one("#temperature").value = "0.2"  # type: ignore[attr-defined]
        await pilot.click("#save")
        await settle(pilot, lambda: not isinstance(app.screen, ParamsDialog))
        chat = app.library.store.chat(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert chat.system_prompt == "You are a pirate." and chat.params["temperature"] == 0.2
        await send(pilot, "Hello")
        await settle(pilot, lambda: len(backend.requests) == 2 and done(app))
        messages, params = backend.requests[-1]
        assert messages[0].role == "system" and messages[0].content == "You are a pirate."
        assert params.temperature == 0.2


async def test_bad_parameter_is_refused_in_the_dialog(home: Path) -> None:
    app = make_app(ScriptedBackend())
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "Hi")
        await settle(pilot, lambda: done(app))
        await pilot.press("f3")
        await settle(pilot, lambda: isinstance(app.screen, ParamsDialog))
        app.screen.query_one("#max_tokens").value = "many"  # type: ignore[attr-defined]
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, ParamsDialog)
        assert "not a number" in str(app.screen.query_one("#param-error").render())


async def test_search_rename_delete_export(home: Path) -> None:
    backend = ScriptedBackend()
    app = make_app(backend)
    store = app.library.store
    loire = store.create_chat("smollm2-135m-instruct", "scripted", title="Rivers")
    store.add_message(loire.id, "user", "Tell me about the Loire")
    cook = store.create_chat("smollm2-135m-instruct", "scripted", title="Cooking")
    store.add_message(cook.id, "user", "Ratatouille please")
    async with app.run_test(size=(100, 30)) as pilot:
        sidebar = app.query_one(ChatList)
        assert sidebar.options.option_count == 2
        await pilot.press("ctrl+f")
        await pilot.press(*"loire")
        await settle(pilot, lambda: sidebar.options.option_count == 1)
        assert sidebar.highlighted_chat() in (loire.id, None)
        await pilot.press("tab")
        await pilot.press("enter")
        await settle(pilot, lambda: app.chat.session is not None and app.chat.session.chat_id == loire.id)
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(app.screen, TextDialog))
        app.screen.query_one("#value").value = "Loire notes"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot, lambda: store.chat(loire.id).title == "Loire notes"
                         and not isinstance(app.screen, TextDialog))
        await pilot.press("f6")
        exported = list((home / "data" / "exports").glob("*.md"))
        assert len(exported) == 1 and "Tell me about the Loire" in exported[0].read_text()
        await pilot.press("f8")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await settle(pilot, lambda: len(store.chats()) == 1)
        assert store.chats()[0].id == cook.id
        assert app.chat.session is None and views(app) == []


async def test_an_error_reply_is_shown_with_what_to_do(home: Path) -> None:
    backend = ScriptedBackend(
        error="The model worker ended by SIGSEGV. The next request starts a fresh worker.")
    app = make_app(backend)
    async with app.run_test() as pilot:
        await send(pilot, "Hi")
        await settle(pilot, lambda: views(app)[-1].state == "error")
        reply = views(app)[-1]
        assert "SIGSEGV" in str(reply.query_one(".message-note").render())
        stored = app.library.store.messages(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert stored[-1].state == "error" and stored[-1].content == "Partial "
        backend.error = None
        await send(pilot, "Again")
        await settle(pilot, lambda: done(app) and views(app)[-1].state == "complete")


async def test_prompt_keys(home: Path) -> None:
    app = make_app(ScriptedBackend())
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptBox)
        prompt.focus()
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"
        await pilot.press("enter")
        await settle(pilot, lambda: done(app))
        assert prompt.text == ""
        await pilot.press("up")
        assert prompt.text == "a\nb"


async def test_long_chat_mounts_one_page_and_loads_older(home: Path) -> None:
    app = make_app(ScriptedBackend())
    store = app.library.store
    chat = store.create_chat("smollm2-135m-instruct", "scripted", title="Long")
    store.db.execute("BEGIN")
    for i in range(5000):
        store.db.execute(
            "INSERT INTO messages (chat_id, role, content, created_at) VALUES (?, ?, ?, 0)",
            (chat.id, "user" if i % 2 == 0 else "assistant", f"message {i}"))
    store.db.execute("COMMIT")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: len(views(app)) > 0)
        assert len(views(app)) == 40
        assert views(app)[-1].text == "message 4999"
        conv = app.chat.conversation
        conv.scroll_home(animate=False, immediate=True)
        await settle(pilot, lambda: len(views(app)) == 80, what="the older page")
        assert views(app)[0].text == "message 4920"
        # the reader's place is kept, not jumped to the new top
        await settle(pilot, lambda: conv.scroll_y > 0, what="the place kept after loading")


async def test_keys_belong_to_the_screen_on_top(home: Path) -> None:
    """The chat's keys act on the chat screen only: under a dialog, Ctrl+N, F8 and F5 do
    nothing and Esc closes the dialog; the code pane's Esc is its own; F5 opens the models
    screen from the code pane too, and the chat is where it was when the pane closes."""
    from app.ui.tui.code_screen import CodeScreen
    from app.ui.tui.models_screen import ModelsScreen

    source = home / "hello.py"
    source.write_text("print('hi')\n")
    app = make_app(ScriptedBackend(replies=[REPLY]))
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "Hi")
        await settle(pilot, lambda: done(app), what="the reply")
        chat_id = app.chat.session.chat_id  # type: ignore[union-attr]
        await pilot.press("f2")
        await settle(pilot, lambda: isinstance(app.screen, TextDialog))
        await pilot.press("ctrl+n", "f8", "f5")
        assert isinstance(app.screen, TextDialog)
        await pilot.press("escape")
        await settle(pilot, lambda: app.screen is app.chat, what="the dialog closed")
        assert app.chat.session is not None and app.chat.session.chat_id == chat_id
        assert len(views(app)) == 2 and [c.id for c in app.library.store.chats()] == [chat_id]
        app.open_code(source)
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        await pilot.press("escape")  # dismisses a suggestion; never the chat's "stop"
        assert isinstance(app.screen, CodeScreen)
        await pilot.press("f5")
        await settle(pilot, lambda: isinstance(app.screen, ModelsScreen))
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen))
        await pilot.press("ctrl+w")
        await settle(pilot, lambda: app.screen is app.chat, what="back to the chat")
        assert views(app)[-1].text == REPLY


async def test_theme_choice_is_saved(home: Path) -> None:
    app = make_app(ScriptedBackend())
    async with app.run_test() as pilot:
        app.theme = "nord"
        await pilot.pause()
    assert 'theme = "nord"' in (home / "config" / "config.toml").read_text()


async def test_real_model_send_stream_stop(home: Path) -> None:
    """The real SmolLM2 worker behind the screen: a reply streams, Esc stops it mid-way."""
    from app.session.front import Tramontane
    from app.ui.tui.app import TramontaneApp

    door = Tramontane.open()
    door.config.values["params"].update(max_tokens=2000, temperature=0.8)
    app = TramontaneApp(door)
    async with app.run_test() as pilot:
        await send(pilot, "Write a very long story about a lighthouse keeper.")
        await settle(pilot, lambda: len(views(app)) == 2 and len(views(app)[-1].text) > 40,
                         timeout=60, what="streamed text from the real model")
        await pilot.press("escape")
        await settle(pilot, lambda: not app.chat.busy and views(app)[-1].state == "partial")
        stopped_text = views(app)[-1].text
        stored = app.library.store.messages(app.chat.session.chat_id)  # type: ignore[union-attr]
        assert stored[-1].state == "partial" and stored[-1].content == stopped_text
        await send(pilot, "Thanks.")
        await settle(pilot, lambda: len(views(app)) == 4 and views(app)[-1].state != "streaming",
                         timeout=120, what="a second reply after the stop")
        assert views(app)[-1].state == "complete"
