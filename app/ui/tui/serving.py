"""The server started from the app (F9): the same routes as `tramontane serve`, in the app's
own event loop, sharing its code worker, so a suggestion in the code pane and one for an
editor never load the model twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from app.errors import TramontaneError
from app.session.front import Tramontane
from app.session.serving import ServeSession, UsageError


class AppServer:
    def __init__(self, door: Tramontane) -> None:
        self.door = door
        self.url = ""
        self._server: object | None = None
        self._task: asyncio.Task[None] | None = None
        self._serve: ServeSession | None = None
        self._secret, self._port = "", 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> str:
        """Listen on [serve] host and port (checked as `tramontane serve` checks them);
        the address, or a TramontaneError / UsageError saying why not."""
        import uvicorn

        from app.ui.serve.routes import Server

        settings = self.door.serving.settings()
        host, port = settings.host, settings.port
        self._serve = self.door.serving.start()
        self._secret, self._port = self.door.serving.write_token(port), port
        app = Server(self._serve, settings, self._secret).app()
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                               lifespan="off", timeout_graceful_shutdown=1))
        # the app owns the terminal's signals: the server must not take Ctrl+C or SIGTERM
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
        self._server = server
        self._task = asyncio.ensure_future(server.serve())
        self.url = f"http://{host}:{port}"
        return self.url

    async def toggle(self, notify: Callable[..., None]) -> None:
        """Start the server, or stop it if it runs; `notify` tells the user (the address, or
        why it cannot start)."""
        if self.running:
            await self.stop()
            notify("The server is stopped.")
            return
        try:
            url = self.start()
        except (TramontaneError, UsageError) as exc:
            notify(str(exc), severity="error")
            return
        notify(f"Serving on {url}: /infill for llama.vim and llama.vscode, /v1 for OpenAI "
               "clients. F9 stops it.")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True  # type: ignore[attr-defined]
            await self._task
        if self._serve is not None and self._serve.chat_backend is not self.door.chats.backend:
            await self._serve.chat_backend.unload()
        if self._secret:
            self.door.serving.remove_token(self._port, self._secret)
        self._server = self._task = self._serve = None
        self._secret, self.url = "", ""
