"""The chat screen in the quick lane: a scripted backend standing for a server model, so no
model file is read or loaded; a question, a streamed reply, the history, a second chat."""

from __future__ import annotations

from pathlib import Path

from app.session.front import Tramontane
from app.ui.tui.app import TramontaneApp
from app.ui.tui.sidebar import ChatList
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import send, settle, views


def _door(home: Path, backend: ScriptedBackend) -> Tramontane:
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[chat]\nbackend = "ollama"\nmodel = "scripted:1b"\n', encoding="utf-8")
    return Tramontane.open(chat_backend=backend)


async def test_a_question_streams_a_reply_that_is_kept(home: Path) -> None:
    backend = ScriptedBackend(replies=["Blue, like the sea.", "Green, like a leaf."])
    app = TramontaneApp(_door(home, backend))
    async with app.run_test() as pilot:
        await send(pilot, "Name a colour.")
        await settle(pilot, lambda: len(views(app)) == 2 and views(app)[-1].state == "complete",
                     what="the reply")
        assert views(app)[-1].text == "Blue, like the sea."
        session = app.chat.session
        assert session is not None and session.model.name == "scripted:1b"
        stored = app.library.store.messages(session.chat_id)
        assert [(m.role, m.content, m.state) for m in stored] == [
            ("user", "Name a colour.", "complete"),
            ("assistant", "Blue, like the sea.", "complete")]
        sent, _ = backend.requests[-1]
        assert sent[-1].content == "Name a colour."
        first = session.chat_id
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: not views(app), what="an empty new chat")
        await send(pilot, "Another colour?")
        await settle(pilot, lambda: len(views(app)) == 2 and views(app)[-1].state == "complete",
                     what="the second chat's reply")
        assert app.chat.session is not None and app.chat.session.chat_id != first
        titles = [c.title for c in app.library.chats()]
        assert titles == ["Another colour?", "Name a colour."]  # newest first
        assert app.screen.query_one(ChatList).display
    assert not list((home / "data").rglob("*.gguf"))  # no model file was needed


async def test_a_hangup_mid_reply_leaves_the_app_with_the_reply_kept(home: Path) -> None:
    """A closed terminal (SIGHUP) or a kill (SIGTERM) mid-reply: the app leaves as Ctrl+Q
    does, and what was shown of the reply is saved (partial). The signal is real, sent to
    this process; the handler the test keeps in place meanwhile says if it ever reached it."""
    import os
    import signal

    reached: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda number, frame: reached.append(number))
    try:
        backend = ScriptedBackend(replies=["One two three four five six."], hold_after=3)
        app = TramontaneApp(_door(home, backend))
        async with app.run_test() as pilot:
            await send(pilot, "Count.")
            await settle(pilot, lambda: backend.streamed == 3, what="half the reply")
            os.kill(os.getpid(), signal.SIGHUP)
            await settle(pilot, lambda: not app.is_running, what="the app to leave")
        assert not reached  # the app's own handler took it
        stored = app.library.store.messages(app.library.chats()[0].id)
        assert stored[-1].role == "assistant" and stored[-1].content == "One two three "
        assert stored[-1].state == "partial"
    finally:
        signal.signal(signal.SIGHUP, before)
