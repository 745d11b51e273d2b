"""Chats and their messages: create, append, update while streaming, list, export, delete."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.errors import ChatNotFoundError, HistoryError
from app.store.db import explain, open_db

TITLE_LENGTH = 60


@dataclass
class Chat:
    id: int
    title: str
    model: str
    backend: str
    system_prompt: str
    params: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass
class StoredMessage:
    id: int
    chat_id: int
    role: str
    content: str
    state: str
    prompt_tokens: int | None
    cached_tokens: int | None
    generated_tokens: int | None
    ttft_ms: float | None
    decode_tps: float | None
    error: str | None
    created_at: float
    thinking: str = ""  # a thinking model's reasoning, apart from the reply
    tool_calls: str = ""  # the calls this reply made, as JSON [{"id", "name", "arguments"}]
    tool_call_id: str = ""  # for a tool's result: the call it answers


def title_from(question: str) -> str:
    """A chat's first title: the first line of the first question, trimmed."""
    line = " ".join(question.strip().split("\n", 1)[0].split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class ChatStore:
    """All reads and writes of history.db. Every SQLite error becomes a `HistoryError`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_db(path)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self.db
        except sqlite3.Error as exc:
            raise HistoryError(explain(self.path, exc)) from exc

    # -- chats -------------------------------------------------------------------------------

    def create_chat(
        self, model: str, backend: str, system_prompt: str = "",
        params: dict[str, Any] | None = None, title: str = "",
    ) -> Chat:
        now = time.time()
        with self._guard() as db:
            cur = db.execute(
                "INSERT INTO chats (title, model, backend, system_prompt, params, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (title, model, backend, system_prompt, json.dumps(params or {}), now, now),
            )
        return self.chat(int(cur.lastrowid or 0))

    def chat(self, chat_id: int) -> Chat:
        with self._guard() as db:
            row = db.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise ChatNotFoundError(f"There is no chat {chat_id}. `tramontane history list` shows them.")
        return _chat(row)

    def count_chats(self) -> int:
        with self._guard() as db:
            return int(db.execute("SELECT COUNT(*) FROM chats").fetchone()[0])

    def chats(self, limit: int = 200) -> list[Chat]:
        """The newest `limit` chats (every one for a limit of 0 or less)."""
        limit = limit if limit > 0 else -1  # SQLite: a negative LIMIT has no bound
        with self._guard() as db:
            rows = db.execute(
                "SELECT * FROM chats ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_chat(r) for r in rows]

    def update_chat(self, chat_id: int, **fields: Any) -> None:
        allowed = {"title", "model", "backend", "system_prompt", "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not chat fields: {bad}")
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._guard() as db:
            db.execute(f"UPDATE chats SET {sets} WHERE id = ?", (*fields.values(), chat_id))

    def delete_chat(self, chat_id: int) -> None:
        self.chat(chat_id)
        with self._guard() as db:
            db.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    # -- messages ----------------------------------------------------------------------------

    def add_message(self, chat_id: int, role: str, content: str, state: str = "complete") -> int:
        now = time.time()
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO messages (chat_id, role, content, state, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (chat_id, role, content, state, now),
                )
                db.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (now, chat_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def update_message(self, message_id: int, **fields: Any) -> None:
        allowed = {"content", "state", "prompt_tokens", "cached_tokens", "generated_tokens",
                   "ttft_ms", "decode_tps", "error", "thinking", "tool_calls", "tool_call_id"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not message fields: {bad}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._guard() as db:
            db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*fields.values(), message_id))

    def messages(self, chat_id: int) -> list[StoredMessage]:
        with self._guard() as db:
            rows = db.execute(
                "SELECT * FROM messages WHERE chat_id = ? ORDER BY id", (chat_id,)
            ).fetchall()
        return [StoredMessage(**dict(r)) for r in rows]

    def messages_page(self, chat_id: int, before_id: int | None, limit: int) -> list[StoredMessage]:
        """Up to `limit` messages older than `before_id` (the newest when None), oldest first."""
        with self._guard() as db:
            rows = db.execute(
                "SELECT * FROM messages WHERE chat_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (chat_id, before_id if before_id is not None else 2**62, limit),
            ).fetchall()
        return [StoredMessage(**dict(r)) for r in reversed(rows)]

    def count_messages(self, chat_id: int) -> int:
        with self._guard() as db:
            row = db.execute("SELECT count(*) FROM messages WHERE chat_id = ?", (chat_id,)).fetchone()
        return int(row[0])

    def search(self, text: str, limit: int = 200) -> list[Chat]:
        """Chats whose title or any message matches every word of `text`, newest first."""
        words = [w for w in text.replace('"', " ").split() if w]
        if not words:
            return self.chats(limit)
        limit = limit if limit > 0 else -1
        match = " ".join(f'"{w}"*' for w in words)
        # % and _ are LIKE's wildcards: escaped, a search for "50%" finds "50%", not "50 ..."
        like = "%" + "%".join(w.replace("\\", "\\\\").replace("%", "\\%")
                              .replace("_", "\\_") for w in words) + "%"
        with self._guard() as db:
            rows = db.execute(
                "SELECT * FROM chats WHERE title LIKE ? ESCAPE '\\' OR id IN ("
                " SELECT m.chat_id FROM messages_fts f JOIN messages m ON m.id = f.rowid"
                " WHERE messages_fts MATCH ?)"
                " ORDER BY updated_at DESC, id DESC LIMIT ?",
                (like, match, limit),
            ).fetchall()
        return [_chat(r) for r in rows]

    def delete_message(self, message_id: int) -> None:
        with self._guard() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    # -- export ------------------------------------------------------------------------------

    def export_json(self, chat_id: int) -> str:
        chat = self.chat(chat_id)
        data = {"chat": asdict(chat), "messages": [asdict(m) for m in self.messages(chat_id)]}
        return json.dumps(data, indent=2, ensure_ascii=False)

    def export_markdown(self, chat_id: int) -> str:
        chat = self.chat(chat_id)
        out = [f"# {chat.title or 'Untitled chat'}", "",
               f"Model: {chat.model} ({chat.backend})", ""]
        if chat.system_prompt:
            out += ["## System", "", chat.system_prompt, ""]
        for msg in self.messages(chat_id):
            heading = {"user": "## You", "assistant": "## Assistant", "system": "## System"}
            if msg.tool_call_id:
                out += ["## Tool result", "", "```", msg.content, "```", ""]
                continue
            out += [heading.get(msg.role, msg.role), ""]
            if msg.thinking:
                out += ["<details><summary>Thinking</summary>", "", msg.thinking.strip(), "",
                        "</details>", ""]
            out += [msg.content, ""]
            for call in json.loads(msg.tool_calls or "[]"):
                out += [f"*(calls `{call['name']}` with `{json.dumps(call['arguments'])}`)*", ""]
            if msg.state == "partial":
                out += ["*(reply cut off)*", ""]
            elif msg.state == "error":
                out += [f"*(error: {msg.error or 'unknown'})*", ""]
        return "\n".join(out).rstrip() + "\n"


def _chat(row: sqlite3.Row) -> Chat:
    values = dict(row)
    values["params"] = json.loads(values["params"] or "{}")
    return Chat(**values)
