"""The user's chats as a whole: list, search, start, open, rename, delete, export."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from app.atomic import atomic_write
from app.engine.backend import Backend, ModelRef, Params, ServerBackend
from app.errors import TramontaneError
from app.models.local import LocalModel
from app.session.chat import ChatSession
from app.session.complete import CompletionSession
from app.session.context import AppContext, model_ref, stored_name
from app.store.history import Chat, ChatStore, StoredMessage

__all__ = ["Chat", "ChatLibrary", "ModelChoice", "StoredMessage"]


@dataclass(frozen=True)
class ModelChoice:
    """One line of the model picker."""

    name: str  # what a chat stores
    label: str
    ref: ModelRef


class ChatLibrary:
    def __init__(self, ctx: AppContext, backend: Backend | None = None) -> None:
        self.ctx = ctx
        self.backend: Backend = backend if backend is not None else ctx.backend

    @property
    def store(self) -> ChatStore:
        return self.ctx.store

    def chats(self, query: str = "") -> list[Chat]:
        return self.store.search(query) if query.strip() else self.store.chats()

    def new(self, model: str | None = None, system_prompt: str | None = None) -> ChatSession:
        ref, name, _ = self.ctx.chat_model(model)
        params = self.ctx.default_params()
        system = system_prompt if system_prompt is not None else str(
            self.ctx.cfg.get("chat", "system_prompt"))
        chat = self.store.create_chat(name, self.backend.name, system, params.to_dict())
        return ChatSession(self.store, self.backend, chat, ref, params, self.ctx.plugins)

    def ask_about(self, code: CompletionSession, path: str, question: str) -> ChatSession:
        """A chat about code in a file (the code pane's Ctrl+L), kept in the history like any
        chat, titled with the file's name; it runs on the code model."""
        from app.engine.prompts.edit import ASK_SYSTEM

        title = f"{Path(path).name}: {question.strip().splitlines()[0][:60]}"
        params = replace(code.params, max_tokens=self.ctx.default_params().max_tokens,
                         temperature=0.2)
        chat = self.store.create_chat(code.model.name, code.backend.name, ASK_SYSTEM,
                                      params.to_dict(), title=title)
        return ChatSession(self.store, code.backend, chat, code.model, params,
                           self.ctx.plugins)

    def open(self, chat_id: int) -> ChatSession:
        """A saved chat. If its model is gone, the chat still opens with the default model."""
        chat = self.store.chat(chat_id)
        params = Params.from_dict(self.ctx.default_params().to_dict() | chat.params)
        try:
            ref, _, _ = self.ctx.chat_model(chat.model, params)
        except TramontaneError:
            ref, _, _ = self.ctx.chat_model(None, params)
        return ChatSession(self.store, self.backend, chat, ref, params, self.ctx.plugins)

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

    def export_markdown(self, chat_id: int, folder: Path | None = None) -> Path:
        chat = self.store.chat(chat_id)
        folder = folder or self.ctx.paths.data_dir / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in chat.title or "chat")
        path = folder / f"{chat.id:04d} {safe.strip()[:50]}.md"
        atomic_write(path, self.store.export_markdown(chat_id), mode=0o600)
        return path
