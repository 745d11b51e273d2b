"""What `tramontane serve` does behind HTTP: one warm code worker and one chat worker shared by
every client (each backend runs one request at a time and queues the rest), completion through
the same session as the code pane, and chat that is kept in the history only when asked
(`[serve] save_chats`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from app.config import LOOPBACK
from app.engine import structured
from app.engine.backend import (
    Backend,
    ContextChunk,
    Event,
    Message,
    ModelRef,
    Params,
)
from app.errors import TramontaneError
from app.session import editor_edit
from app.session.complete import Completion, CompletionSession
from app.session.context import AppContext

KEY_VARIABLE = "TRAMONTANE_SERVE_API_KEY"


class UsageError(Exception):
    """A serve setting that cannot work: exit code 2, as argparse's own."""


@dataclass(frozen=True)
class ServeSettings:
    """Where the server listens, its key, and who may talk to it."""

    host: str
    port: int
    key: str
    allowed_hosts: tuple[str, ...] = ()  # Host headers besides loopback names (on loopback)
    allowed_origins: tuple[str, ...] = ()  # browser origins besides loopback pages

    @classmethod
    def read(cls, ctx: AppContext, host: str | None = None, port: int | None = None,
             key: str | None = None) -> ServeSettings:
        """Host, port and key from the flags, then [serve], then the environment. Any address
        but this machine's own needs a key: the models and the history are the user's."""
        host = host or str(ctx.cfg.get("serve", "host") or "127.0.0.1")
        port = port or int(ctx.cfg.get("serve", "port") or 8012)
        key = key or str(ctx.cfg.get("serve", "api_key") or "") or os.environ.get(KEY_VARIABLE, "")
        if host not in LOOPBACK - {"0.0.0.0"} and not key:
            raise UsageError(f"Serving on {host} lets other machines use your models: give "
                             f"--api-key KEY (or {KEY_VARIABLE}), or serve on 127.0.0.1.")
        if not 0 < port < 65536:
            raise UsageError(f"--port {port} is not a port number.")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise TramontaneError(f"Cannot listen on {host}:{port} ({exc.strerror}); is a "
                                      "server already running there? Pick another with --port.") \
                    from exc
        hosts = ctx.cfg.get("serve", "allowed_hosts") or []
        origins = ctx.cfg.get("serve", "allowed_origins") or []
        return cls(host, port, key, tuple(str(h).lower() for h in hosts),
                   tuple(str(o).lower().rstrip("/") for o in origins))


# -- proving a server is ours -------------------------------------------------------------
# `serve` writes a random secret to a 0600 file in the data folder when it starts; `complete`
# sends a fresh nonce to /health and trusts the server only if it answers HMAC(secret, nonce).
# Another process on the port cannot answer, and never gets the buffer or the key.

def token_file(ctx: AppContext, port: int) -> Path:
    return ctx.paths.data_dir / f"serve-{port}.token"


def write_token(ctx: AppContext, port: int) -> str:
    """A new secret for the server on `port`, in a file only this user can read."""
    secret = secrets.token_hex(32)
    path = token_file(ctx, port)
    with suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def remove_token(ctx: AppContext, port: int, secret: str) -> None:
    path = token_file(ctx, port)
    with suppress(OSError):
        if path.read_text() == secret:
            path.unlink()


def proof(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def running_server(ctx: AppContext) -> str:
    """The URL of a Tramontane server of this user's that answers now and proves it ("" when
    none): TRAMONTANE_SERVER or [serve] url (either "off" for never), else the default port
    on this machine."""
    from urllib.parse import urlsplit

    import httpx

    url = os.environ.get("TRAMONTANE_SERVER") or str(ctx.cfg.get("serve", "url") or "")
    if url == "off":
        return ""
    url = (url or f"http://127.0.0.1:{ctx.cfg.get('serve', 'port') or 8012}").rstrip("/")
    try:
        port = urlsplit(url).port or 80
        secret = token_file(ctx, port).read_text().strip()
    except (OSError, ValueError):
        return ""  # no server of ours was started on that port
    nonce = secrets.token_hex(16)
    try:
        answer = httpx.get(f"{url}/health", params={"nonce": nonce}, timeout=0.3).json()
    except (httpx.HTTPError, ValueError):
        return ""
    if not isinstance(answer, dict) or not isinstance(answer.get("proof"), str):
        return ""
    return url if hmac.compare_digest(answer["proof"], proof(secret, nonce)) else ""


def _checked(events: AsyncGenerator[Event, None],
             params: Params) -> AsyncGenerator[Event, None]:
    """A reply that must be JSON is checked before it counts as done."""
    return structured.checked(events, params.json_schema) if params.json_schema else events


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
        async with aclosing(_checked(self.code.backend.complete(prefix, suffix, params),
                                     params)) as stream:
            async for event in stream:
                yield event

    async def chat(self, messages: list[Message], params: Params,
                   code_model: bool = False) -> AsyncGenerator[Event, None]:
        """A reply from the chat model (or the code model, when a client names it: edits);
        saved as a new chat in the history when asked."""
        asked = editor_edit.parse(messages)
        if asked is not None:  # llama.vim's instruction edit: the code pane's edit instead
            ours = editor_edit.messages_for(replace(asked, instruction="")) \
                if params.max_tokens <= 0 else editor_edit.messages_for(asked)
            async with aclosing(editor_edit.answered(
                    asked, self._code_reply(ours, replace(params, work="edit")))) as stream:
                async for event in stream:
                    yield event
            return
        if code_model:
            async with aclosing(self._code_reply(messages, params)) as stream:
                async for event in stream:
                    yield event
            return
        if self.save_chats and params.max_tokens > 0:  # a warm-up (n_predict 0) is no chat
            from app.session.library import ChatLibrary

            session = ChatLibrary(self.ctx, self.chat_backend).for_client(
                messages, self.chat_model, self.chat_backend, params)
            async with aclosing(session.answer(messages)) as saved:
                async for event in saved:
                    yield event
            return
        await self.chat_backend.load(self.chat_model, params)
        async with aclosing(_checked(self.chat_backend.chat(messages, params), params)) as stream:
            async for event in stream:
                yield event

    async def _code_reply(self, messages: list[Message],
                          params: Params) -> AsyncGenerator[Event, None]:
        """A chat reply from the code model, loaded as the code worker holds it."""
        params = replace(params, context_length=self.code.params.context_length,
                         threads=self.code.params.threads,
                         gpu_layers=self.code.params.gpu_layers)
        await self.code.backend.load(self.code.model, params)
        async with aclosing(_checked(self.code.backend.chat(messages, params),
                                     params)) as stream:
            async for event in stream:
                yield event

    def default_params(self) -> Params:
        return self.ctx.default_params()

    async def close(self) -> None:
        await self.code.backend.unload()
        await self.chat_backend.unload()
