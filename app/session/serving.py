"""What `tramontane serve` does behind HTTP: one warm code worker and one chat worker shared by
every client (each backend runs one request at a time and queues the rest), completion through
the same session as the code pane, and chat that is kept in the history only when asked
(`[serve] save_chats`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from app.engine.backend import (
    Backend,
    ContextChunk,
    Done,
    Error,
    Event,
    Message,
    ModelRef,
    Params,
    Token,
)
from app.session.complete import Completion, CompletionSession
from app.session.context import AppContext


@dataclass
class ServeSession:
    ctx: AppContext
    code: CompletionSession
    chat_backend: Backend
    chat_model: ModelRef
    save_chats: bool = False

    @classmethod
    def start(cls, ctx: AppContext, model: str | None = None,
              code_model: str | None = None) -> ServeSession:
        """The models to serve on `ctx`'s backend: `model` for chat, `code_model` for
        completion (each defaulting as the app's do)."""
        return cls(ctx, CompletionSession.for_code(ctx, code_model), ctx.backend,
                   ctx.chat_model(model)[0], bool(ctx.cfg.get("serve", "save_chats")))

    @property
    def backend_name(self) -> str:
        return self.chat_backend.name

    def model_names(self) -> list[str]:
        """The models a client can name: chat first, then code."""
        names = [self.chat_model.name]
        if self.code.model.name not in names:
            names.append(self.code.model.name)
        return names

    def fit_warnings(self) -> list[str]:
        return [w for w in (self.chat_model.fit_warning, self.code.model.fit_warning) if w]

    async def warm(self) -> None:
        """Load the code model now, so the first suggestion does not wait for it."""
        await self.code.backend.load(self.code.model, self.code.params)

    def code_params(self, **changes: object) -> Params:
        """The completion parameters with a client's own (n_predict, time cap, sampling)."""
        return replace(self.code.params, **changes)  # type: ignore[arg-type]

    async def infill(self, prefix: str, suffix: str, params: Params,
                     extra: Sequence[ContextChunk] = (), path: str = "") -> Completion:
        return await self.code.complete(prefix, suffix, path, params, extra)

    async def raw_fill(self, prefix: str, suffix: str,
                       params: Params) -> AsyncGenerator[Event, None]:
        """The model's own text between prefix and suffix, unprocessed (OpenAI
        /v1/completions gives what the model wrote)."""
        await self.code.backend.load(self.code.model, self.code.params)
        async with aclosing(self.code.backend.complete(prefix, suffix, params)) as stream:
            async for event in stream:
                yield event

    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        """A reply from the chat model; saved as a new chat in the history when asked."""
        await self.chat_backend.load(self.chat_model, params)
        saved = self._save_question(messages) if self.save_chats else None
        text, last = "", None
        async with aclosing(self.chat_backend.chat(messages, params)) as stream:
            async for event in stream:
                if isinstance(event, Token):
                    text += event.text
                last = event
                yield event
        if saved is not None:
            state = "complete" if isinstance(last, Done) else (
                "error" if isinstance(last, Error) else "partial")
            self.ctx.store.update_message(saved, content=text, state=state)

    def _save_question(self, messages: list[Message]) -> int:
        store = self.ctx.store
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        first = next((m.content for m in messages if m.role == "user"), "API chat")
        chat = store.create_chat(self.chat_model.name, self.backend_name, system,
                                 self.code.params.to_dict())
        store.update_chat(chat.id, title=first.strip().splitlines()[0][:60] if first.strip()
                          else "API chat")
        for m in messages:
            if m.role != "system":
                store.add_message(chat.id, m.role, m.content)
        return store.add_message(chat.id, "assistant", "", state="partial")

    async def close(self) -> None:
        await self.code.backend.unload()
        await self.chat_backend.unload()
