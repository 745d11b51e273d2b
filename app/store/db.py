"""Opening history.db: created 0600, WAL, foreign keys, and one upgrade step per version."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from app.errors import HistoryError


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction (executescript would commit)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE chats (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            backend TEXT NOT NULL DEFAULT 'llama.cpp',
            system_prompt TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'complete'
                CHECK (state IN ('complete', 'partial', 'error')),
            prompt_tokens INTEGER,
            cached_tokens INTEGER,
            generated_tokens INTEGER,
            ttft_ms REAL,
            decode_tps REAL,
            error TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_by_chat ON messages(chat_id, id);
        CREATE INDEX chats_by_update ON chats(updated_at);
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    """Full-text search over message text (FTS5, kept in step by triggers)."""
    _script(
        db,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, content='messages', content_rowid='id', tokenize='unicode61'
        );
        INSERT INTO messages_fts(rowid, content) SELECT id, content FROM messages;
        CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
    )


def _v3(db: sqlite3.Connection) -> None:
    """A thinking model's reasoning, kept beside its reply (shown folded, never resent); the
    tool calls a reply made (JSON), and the call a tool's result answers (a result is kept as
    a 'user' row with its call's id)."""
    _script(db, """
        ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT '';
        ALTER TABLE messages ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '';
        ALTER TABLE messages ADD COLUMN tool_call_id TEXT NOT NULL DEFAULT ''
        """)


# One function per schema version, run in order; never edit a released step, add one.
UPGRADES: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if new) and upgrade the history database; one in a folder that
    cannot be written (a read-only home) is opened to be read, and says so when written."""
    try:
        return _open_writable(path)
    except HistoryError:
        if not path.is_file() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise
    return _open_read_only(path)


def _open_read_only(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                             timeout=2.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise HistoryError(explain(path, exc)) from exc
    if version != len(UPGRADES):
        db.close()
        raise HistoryError(f"The chat history {path} cannot be written, and it needs an "
                           "upgrade to be read by this Tramontane. Check its permissions.")
    return db


def _open_writable(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, timeout=2.0, isolation_level=None)
    except OSError as exc:
        raise HistoryError(f"Cannot open the chat history at {path}: {exc.strerror or exc}.") from exc
    except sqlite3.Error as exc:
        raise HistoryError(f"Cannot open the chat history at {path}: {exc}.") from exc
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        _upgrade(db)
    except sqlite3.Error as exc:
        db.close()
        raise HistoryError(explain(path, exc)) from exc
    return db


def _upgrade(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(UPGRADES):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this Tramontane knows ({len(UPGRADES)})"
        )
    for number, step in enumerate(UPGRADES[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def explain(path: Path, exc: sqlite3.Error) -> str:
    """A sentence for a user from an SQLite error."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"The chat history {path} is locked by another program. Close other "
                "Tramontane windows (or whatever holds it) and try again.")
    if "not a database" in text or "malformed" in text:
        return (f"The chat history {path} is damaged or is not a Tramontane database ({text}). "
                "It was left untouched; move it aside to start a fresh history.")
    if "readonly" in text or "unable to open" in text:
        return f"The chat history {path} cannot be written ({text}). Check its permissions."
    if "disk" in text and "full" in text:
        return f"The disk holding {path} is full; free some space."
    return f"The chat history {path} failed: {text}."
