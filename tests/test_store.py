"""history.db: schema versions, permissions, streaming updates, export, and errors."""

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from app.errors import ChatNotFoundError, HistoryError
from app.store import db as dbmod
from app.store.history import ChatStore, title_from


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "history.db")


def test_new_file_is_private_and_versioned(tmp_path: Path, store: ChatStore) -> None:
    path = tmp_path / "history.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(dbmod.UPGRADES)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_does_not_rerun_upgrades(tmp_path: Path, store: ChatStore) -> None:
    chat = store.create_chat("m", "llama.cpp")
    store.close()
    again = ChatStore(tmp_path / "history.db")
    assert again.chat(chat.id).model == "m"


def test_newer_schema_is_refused_untouched(tmp_path: Path, store: ChatStore) -> None:
    store.db.execute("PRAGMA user_version = 99")
    store.close()
    with pytest.raises(HistoryError, match="newer"):
        ChatStore(tmp_path / "history.db")


def test_round_trip_and_cascade(store: ChatStore) -> None:
    chat = store.create_chat("smollm2", "llama.cpp", "Be brief.", {"temperature": 0.2})
    store.add_message(chat.id, "user", "Hello")
    reply = store.add_message(chat.id, "assistant", "", state="partial")
    store.update_message(reply, content="Hi", state="complete", generated_tokens=2)
    msgs = store.messages(chat.id)
    assert [(m.role, m.content, m.state) for m in msgs] == [
        ("user", "Hello", "complete"), ("assistant", "Hi", "complete")]
    assert store.chat(chat.id).params == {"temperature": 0.2}
    store.delete_chat(chat.id)
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(ChatNotFoundError):
        store.chat(chat.id)


def test_newest_chat_first(store: ChatStore) -> None:
    a = store.create_chat("m", "llama.cpp", title="a")
    b = store.create_chat("m", "llama.cpp", title="b")
    store.add_message(a.id, "user", "bump")
    assert [c.title for c in store.chats()] == ["a", "b"]
    assert b.id != a.id


def test_export_markdown_and_json(store: ChatStore) -> None:
    chat = store.create_chat("m", "llama.cpp", "Sys", title="Rivers")
    store.add_message(chat.id, "user", "Name a river")
    store.add_message(chat.id, "assistant", "The Loire", state="partial")
    md = store.export_markdown(chat.id)
    assert md.startswith("# Rivers\n") and "## System\n\nSys" in md
    assert "The Loire\n\n*(reply cut off)*" in md
    data = json.loads(store.export_json(chat.id))
    assert data["chat"]["title"] == "Rivers"
    assert [m["state"] for m in data["messages"]] == ["complete", "partial"]


def test_title_from_first_question() -> None:
    assert title_from("  What is   a river?\nMore text") == "What is a river?"
    assert len(title_from("x" * 200)) == 60


def test_not_a_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="damaged or is not a Tramontane database"):
        ChatStore(path)
    assert path.read_bytes() == before


def test_locked_database_says_so(tmp_path: Path, store: ChatStore) -> None:
    chat = store.create_chat("m", "llama.cpp")
    other = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        store.db.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(HistoryError, match="locked"):
            store.add_message(chat.id, "user", "hello")
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_message(chat.id, "user", "hello")


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file; permissions cannot make it unreadable")
    path = tmp_path / "history.db"
    ChatStore(path).close()
    path.chmod(0)
    with pytest.raises(HistoryError):
        ChatStore(path)


def test_history_path_that_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.mkdir()
    with pytest.raises(HistoryError, match="history"):
        ChatStore(path)


def test_search_titles_and_message_text(store: ChatStore) -> None:
    rivers = store.create_chat("m", "llama.cpp", title="French rivers")
    store.add_message(rivers.id, "user", "Tell me about the Loire")
    cooking = store.create_chat("m", "llama.cpp", title="Cooking")
    reply = store.add_message(cooking.id, "assistant", "", state="partial")
    store.update_message(reply, content="Ratatouille needs courgettes")
    assert [c.id for c in store.search("loire")] == [rivers.id]
    assert [c.id for c in store.search("courg")] == [cooking.id]  # prefix, after an update
    assert [c.id for c in store.search("rivers")] == [rivers.id]
    assert store.search("nothing-like-this") == []
    store.delete_chat(cooking.id)
    assert store.search("courgettes") == []


def test_upgrade_from_version_1_indexes_old_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    dbmod.UPGRADES[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO chats (id, title, created_at, updated_at) VALUES (1, 't', 0, 0)")
    db.execute("INSERT INTO messages (chat_id, role, content, created_at)"
               " VALUES (1, 'user', 'an old message about lighthouses', 0)")
    db.close()
    store = ChatStore(path)
    assert [c.id for c in store.search("lighthouses")] == [1]


def test_pages_of_a_long_chat(store: ChatStore) -> None:
    chat = store.create_chat("m", "llama.cpp")
    ids = [store.add_message(chat.id, "user", f"m{i}") for i in range(10)]
    last = store.messages_page(chat.id, None, 4)
    assert [m.content for m in last] == ["m6", "m7", "m8", "m9"]
    older = store.messages_page(chat.id, last[0].id, 4)
    assert [m.content for m in older] == ["m2", "m3", "m4", "m5"]
    assert store.count_messages(chat.id) == len(ids)


async def test_a_lock_mid_reply_keeps_the_reply_and_saves_it_later(tmp_path: Path) -> None:
    """Another program holds the history's write lock while a reply streams and ends: the
    reply still completes, nothing is deleted, the note says what was kept, and the next
    message saves it once the lock is gone."""
    import sqlite3
    from contextlib import aclosing

    from app.engine.backend import Done, ModelRef, Params
    from app.session.chat import ChatSession
    from tests.fixtures.scripted import ScriptedBackend

    store = ChatStore(tmp_path / "history.db")
    backend = ScriptedBackend(replies=["The Loire, the Seine and the Rhone.", "Yes."],
                              hold_after=2)
    chat = store.create_chat("m", "scripted")
    session = ChatSession(store, backend, chat, ModelRef("m"), Params())
    other = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
    events = []
    async with aclosing(session.send("Name three rivers.")) as stream:
        async for event in stream:
            events.append(event)
            if len(events) == 2:  # mid-reply: another program takes the lock
                other.execute("BEGIN IMMEDIATE")
                backend.release.set()
    assert isinstance(events[-1], Done)  # the reply was not aborted
    note = session.unsaved_note()
    assert "locked by another program" in note and "kept in memory" in note
    other.execute("ROLLBACK")
    other.close()
    backend.hold_after = None
    async with aclosing(session.send("Sure?")) as stream:
        async for _ in stream:
            pass
    assert session.unsaved_note() == ""
    saved = [(m.role, m.content, m.state) for m in store.messages(chat.id)]
    assert saved[:2] == [("user", "Name three rivers.", "complete"),
                         ("assistant", "The Loire, the Seine and the Rhone.", "complete")]
