"""The user's chats as a whole: list, search, start, open, rename, delete, export."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from app.atomic import atomic_write
from app.engine.backend import Backend, Message, ModelRef, Params, ServerBackend
from app.engine.prompts.chat import as_text
from app.errors import TramontaneError
from app.models.local import LocalModel
from app.session.chat import ChatSession
from app.session.complete import CompletionSession
from app.session.context import SERVER_BACKENDS, AppContext, model_ref, stored_name
from app.session.think_time import think_seconds
from app.store.history import Chat, ChatStore, StoredMessage

__all__ = ["Chat", "ChatLibrary", "ModelChoice", "StoredMessage"]


@dataclass(frozen=True)
class ModelChoice:
    """One line of the model picker."""

    name: str  # what a chat stores
    label: str
    ref: ModelRef


BACKENDS = ("llama.cpp", *SERVER_BACKENDS)


class ChatLibrary:
    """Every face starts, opens and lists chats here: the app, `chat`, `history` and `serve`."""

    def __init__(self, ctx: AppContext, backend: Backend | None = None) -> None:
        self.ctx = ctx
        self._given = backend is not None  # a test's backend, used for every chat
        self.backend: Backend = backend if backend is not None else ctx.backend

    @property
    def store(self) -> ChatStore:
        return self.ctx.store

    def chats(self, query: str = "", limit: int = 200) -> list[Chat]:
        """The newest chats (those matching `query`), at most `limit` (0: every one)."""
        return self.store.search(query, limit) if query.strip() else self.store.chats(limit)

    def count(self) -> int:
        return self.store.count_chats()

    def new(self, model: str | None = None, system_prompt: str | None = None,
            overrides: Mapping[str, object] | None = None) -> ChatSession:
        """A new chat on the chosen backend; `overrides` change the default parameters (and
        are saved with the chat). A model that does not fit says so in `session.model`."""
        params = Params.from_dict(self.ctx.default_params().to_dict() | dict(overrides or {}))
        ref, name, _ = self.ctx.chat_model(model, params)
        system = system_prompt if system_prompt is not None else str(
            self.ctx.cfg.get("chat", "system_prompt"))
        chat = self.store.create_chat(name, self.backend.name, system, params.to_dict())
        return self._timed(ChatSession(self.store, self.backend, chat, ref, params,
                                       self.ctx.plugins))

    def for_client(self, messages: list[Message], model: ModelRef, backend: Backend,
                   params: Params) -> ChatSession:
        """A chat a client sent whole (`serve`), saved with its own parameters: its turns now,
        the reply as it streams (`ChatSession.answer`)."""
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        first = next((m.content for m in messages if m.role == "user"), "").strip()
        chat = self.store.create_chat(model.name, backend.name, system, params.to_dict(),
                                      title=first.splitlines()[0][:60] if first else "API chat")
        for m in messages:
            if m.role != "system":  # calls and tool answers are kept as their text
                shown = as_text(m) if m.role == "tool" or m.tool_calls else m
                self.store.add_message(chat.id, shown.role, shown.content)
        return self._timed(ChatSession(self.store, backend, chat, model, params,
                                       self.ctx.plugins))

    def ask_about(self, code: CompletionSession, path: str, question: str) -> ChatSession:
        """A chat about code in a file (the code pane's Ctrl+L), kept in the history like any
        chat, titled with the file's name; it runs on the code model."""
        from app.engine.prompts.edit import ASK_SYSTEM

        title = f"{Path(path).name}: {question.strip().splitlines()[0][:60]}"
        params = replace(code.params, max_tokens=self.ctx.default_params().max_tokens,
                         max_time_ms=0,
                         temperature=0.2)
        chat = self.store.create_chat(code.model.name, code.backend.name, ASK_SYSTEM,
                                      params.to_dict(), title=title)
        return self._timed(ChatSession(self.store, code.backend, chat, code.model, params,
                                       self.ctx.plugins))

    def open(self, chat_id: int, model: str | None = None,
             overrides: Mapping[str, object] | None = None) -> ChatSession:
        """A saved chat, on the backend it was saved on (unless --backend chose one): a chat
        kept on Ollama goes on with Ollama. `model` and `overrides` change it from now on (and
        are saved). If its own model is gone, the chat still opens with the default model."""
        chat = self.store.chat(chat_id)
        name = chat.backend if (not self._given and self.ctx.choice is None
                                and chat.backend in BACKENDS) else None
        backend = self.ctx.backend_for(name) if name else self.backend
        params = Params.from_dict(self.ctx.default_params().to_dict() | chat.params
                                  | dict(overrides or {}))
        if model:
            ref, stored, _ = self.ctx.chat_model(model, params, backend=name)
        else:
            try:
                ref, stored, _ = self.ctx.chat_model(chat.model, params, backend=name)
            except TramontaneError:
                ref, stored, _ = self.ctx.chat_model(None, params, backend=name)
        if model or overrides:
            self.store.update_chat(chat.id, params=params.to_dict(), model=stored)
            chat = self.store.chat(chat_id)
        return self._timed(ChatSession(self.store, backend, chat, ref, params, self.ctx.plugins))

    def _timed(self, session: ChatSession) -> ChatSession:
        """A thinking model's budget from the speed model, on llama.cpp (think_time.py)."""
        if session.backend.name == "llama.cpp":
            session.think_time = functools.partial(think_seconds, self.ctx.paths.data_dir,
                                                   self.ctx.hardware)
        return session

    @property
    def tools_on(self) -> bool:
        """config.toml's [tools] enabled: chats may call tools unless the face says not."""
        return bool(self.ctx.cfg.get("tools", "enabled"))

    async def with_tools(self, session: ChatSession, folder: Path | None = None) -> list[str]:
        """Let `session` call the read-only tools over `folder` (the current one) and the MCP
        servers' tools; what could not be started, in words (an MCP server that fails)."""
        from app.session import mcp
        from app.session.chat_tools import Toolbox

        if session.backend.name in SERVER_BACKENDS:
            return [f"Tools need the llama.cpp backend (its grammar keeps each call valid); "
                    f"this chat runs on {session.backend.name}."]
        t = self.ctx.cfg.section("tools")
        box = Toolbox.for_folder(folder or Path.cwd(), bool(t.get("allow_secrets")))
        problems = await mcp.add_servers(box, self.ctx.cfg.values.get("mcp", {}))
        session.toolbox = box
        session.auto_approve = {str(n) for n in t.get("auto_approve") or []}
        return problems

    async def tool_list(self) -> tuple[list[dict[str, str]], list[str]]:
        """The tools a chat started here may call (name, source, description), and what
        could not be started."""
        from app.session import mcp
        from app.session.chat_tools import Toolbox

        box = Toolbox.for_folder(Path.cwd())
        problems = await mcp.add_servers(box, self.ctx.cfg.values.get("mcp", {}))
        await box.close()
        return [{"name": t.name, "source": box.sources[t.name], "description": t.description}
                for t in box.tools], problems

    def chat(self, chat_id: int) -> Chat:
        return self.store.chat(chat_id)

    def messages_page(self, chat_id: int, before_id: int | None, limit: int,
                      ) -> list[StoredMessage]:
        """`limit` messages of a chat, the newest before `before_id` (None: the newest)."""
        return self.store.messages_page(chat_id, before_id, limit)

    def models(self) -> list[LocalModel]:
        return self.ctx.local_models()

    async def model_choices(self) -> list[ModelChoice]:
        """What the model picker lists: the configured backend's models (the files on disk for
        llama.cpp, the server's list for Ollama and OpenAI-compatible servers)."""
        if self.ctx.uses_server and isinstance(self.backend, ServerBackend):
            return [ModelChoice(r.name, f"{r.name}  ({r.source})", self.ctx.server_model(r.name))
                    for r in await self.backend.models()]
        found = await asyncio.to_thread(self.models)  # reads folders and headers: off the loop
        return [ModelChoice(stored_name(m), f"{m.name}  ({m.size / 2**20:.0f} MiB, {m.source})"
                            + ("" if m.chat_tuned else "  base model"), model_ref(m))
                for m in found]

    def switch_model(self, session: ChatSession, model: LocalModel | ModelChoice) -> None:
        if isinstance(model, ModelChoice):
            session.switch_model(model.ref, model.name)
        else:
            session.switch_model(model_ref(model), stored_name(model))

    def rename(self, chat_id: int, title: str) -> None:
        self.store.update_chat(chat_id, title=title.strip())

    def delete(self, chat_id: int) -> None:
        self.store.delete_chat(chat_id)

    def markdown(self, chat_id: int) -> str:
        return self.store.export_markdown(chat_id)

    def json(self, chat_id: int) -> str:
        return self.store.export_json(chat_id)

    def own_files(self) -> set[Path]:
        """Files an export must never replace: the history and its WAL, config.toml."""
        db = self.ctx.paths.history_db
        return {f.resolve() for f in (db, db.with_name(db.name + "-wal"),
                                      db.with_name(db.name + "-shm"),
                                      self.ctx.paths.config_file)}

    def export_markdown(self, chat_id: int, folder: Path | None = None) -> Path:
        chat = self.store.chat(chat_id)
        folder = folder or self.ctx.paths.data_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in chat.title or "chat")
        path = folder / f"{chat.id:04d} {safe.strip()[:50]}.md"
        atomic_write(path, self.store.export_markdown(chat_id), mode=0o600)
        return path
