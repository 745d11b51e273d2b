"""The front door: what every face (the app, each command, the server) gets, built once from the
user's folders, config.toml and --backend, and never changed afterwards.

Faces ask it for services (chats, code sessions, models, serving) and nothing else; the store,
the config object and the backends stay behind it. One backend is made per name, when first
used, and a chat saved on one backend goes on with that backend wherever it is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.config import Config, Paths, load_config
from app.engine.backend import Backend, Params
from app.plugins.manager import PluginHost
from app.session import serving
from app.session.complete import CompletionSession
from app.session.context import AppContext, remote_server
from app.session.library import ChatLibrary
from app.session.models import ModelManager
from app.session.server_models import ServerModels

__all__ = ["Serving", "Tramontane", "remote_server"]


@dataclass(frozen=True)
class Serving:
    """`tramontane serve` and F9: the settings, the proof file, and a server already running."""

    _ctx: AppContext = field(repr=False)

    def settings(self, host: str | None = None, port: int | None = None,
                 key: str | None = None) -> serving.ServeSettings:
        return serving.ServeSettings.read(self._ctx, host, port, key)

    def start(self, model: str | None = None, code_model: str | None = None,
              ) -> serving.ServeSession:
        return serving.ServeSession.start(self._ctx, model, code_model)

    def write_token(self, port: int) -> str:
        return serving.write_token(self._ctx, port)

    def remove_token(self, port: int, secret: str) -> None:
        serving.remove_token(self._ctx, port, secret)

    def running(self) -> str:
        """The URL of this user's own server when one answers and proves it, else ''."""
        return serving.running_server(self._ctx)


@dataclass(frozen=True)
class Tramontane:
    chats: ChatLibrary
    models: ModelManager
    server_models: ServerModels
    serving: Serving
    _ctx: AppContext = field(repr=False)

    @classmethod
    def open(cls, backend: str | None = None, home: Paths | None = None,
             config: Config | None = None, chat_backend: Backend | None = None) -> Tramontane:
        """The front door for `backend` (None: [chat] backend in config.toml). `home` and
        `config` default to the user's own; `chat_backend` replaces the chat backend (tests)."""
        ctx = AppContext(home, config, backend) if home is not None else \
            AppContext(config=config, choice=backend)
        return cls(ChatLibrary(ctx, chat_backend), ModelManager(ctx), ServerModels(ctx),
                   Serving(ctx), ctx)

    # -- what a face may read -------------------------------------------------------------

    @property
    def config(self) -> Config:
        """Settings (read, and `set` for a choice the user makes in the app)."""
        return self._ctx.cfg

    @property
    def warnings(self) -> list[str]:
        """Problems found in config.toml and the folders, for the face to show once."""
        return self._ctx.cfg.warnings

    @property
    def paths(self) -> Paths:
        return self._ctx.paths

    @property
    def plugins(self) -> PluginHost:
        return self._ctx.plugins

    @property
    def backend_name(self) -> str:
        return self._ctx.backend_name

    @property
    def uses_server(self) -> bool:
        """The chosen backend is Ollama or an OpenAI-compatible server."""
        return self._ctx.uses_server

    def remote(self) -> str:
        """'Ollama at HOST' (or the OpenAI-compatible server) when the chosen backend sends
        the user's text to another machine, else ''."""
        return remote_server(self.chats.backend)

    def default_params(self) -> Params:
        return self._ctx.default_params()

    def speculation(self, mode: str | None, draft_model: str | None) -> None:
        """`--speculative` and `--draft-model`: [params] for this run only (not saved)."""
        params = self._ctx.cfg.values.setdefault("params", {})
        if mode:
            params["speculative"] = mode
        if draft_model:
            params["draft_model"] = draft_model

    def default_model_name(self, purpose: str = "chat") -> str:
        return self._ctx.default_model_name(purpose)

    # -- code -------------------------------------------------------------------------------

    def code(self, model: str | None = None, max_tokens: int | None = None,
             backend: Backend | None = None) -> CompletionSession:
        """Completion and edits on the chosen backend: the code worker for llama.cpp (shared by
        every pane, `complete`, `edit` and the in-app server), else the server's model.
        `backend` runs a model file from disk on another backend (tests, benches)."""
        if backend is not None:
            return CompletionSession.for_context(self._ctx, backend, model, max_tokens)
        return CompletionSession.for_code(self._ctx, model, max_tokens)

    def code_window(self) -> tuple[int, int]:
        from app.session.complete import code_window

        return code_window(self._ctx)

    async def doctor(self, measure_speed: bool = True, recalibrate: bool = False,
                     ) -> dict[str, Any]:
        """`tramontane doctor`'s report: this machine, the models, the servers, a smoke test."""
        from app.session.doctor import run_doctor

        return await run_doctor(self._ctx, measure_speed=measure_speed,
                                recalibrate=recalibrate)

    # -- the end ----------------------------------------------------------------------------

    async def unload(self) -> None:
        """Stop every model worker and close every server connection made."""
        made = [self.chats.backend, *self._ctx.backends()]
        for backend in {id(b): b for b in made}.values():
            await backend.unload()

    def close(self) -> None:
        self._ctx.close()


def config_warnings() -> list[str]:
    """What is wrong in config.toml, for a command that opens no session of its own."""
    return load_config().warnings
