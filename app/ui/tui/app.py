"""The Tramontane app: what is app-wide. The chat screen is its first screen; the code pane
(F7, or a file named on the command line), the models screen (F5) and the in-app server (F9)
open from any screen. The app owns the theme, the plugin reports and the model workers, and
quits only once every code pane's unsaved edits are saved or knowingly discarded."""

from __future__ import annotations

import gc
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel

from app.engine.backend import Backend
from app.errors import TramontaneError
from app.session.context import remote_server
from app.session.library import ChatLibrary
from app.ui.tui.chat_screen import ChatScreen
from app.ui.tui.code_screen import CodeScreen, OpenFileRequested
from app.ui.tui.serving import AppServer


class TramontaneApp(App[None]):
    TITLE = "Tramontane"
    DEFAULT_MODE = "chat"
    BINDINGS = [
        Binding("f5", "models", "Models"),
        Binding("f9", "toggle_server", "Serve"),
    ]

    def __init__(self, library: ChatLibrary, chat_id: int | None = None,
                 open_file: Path | None = None, code_backend: Backend | None = None) -> None:
        super().__init__()
        self.library = library
        self.open_file = open_file
        self._code_backend = code_backend
        self.server = AppServer(library.ctx)
        self.chat = ChatScreen(library, self.server, chat_id)
        self.add_mode("chat", lambda: self.chat)  # the first screen (a mode's CSS loads with it)
        self._saved_theme: str | None = None
        self.hub_endpoint: str | None = None  # a Hugging Face mirror (tests use a local one)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notice holds text (file names, chat titles, server messages), never markup,
        whatever a screen's `notify` passes on."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    async def on_mount(self) -> None:
        ctx = self.library.ctx
        theme = str(ctx.cfg.get("ui", "theme"))
        if theme in self.available_themes:
            self.theme = theme
        self._saved_theme = self.theme
        remote = remote_server(self.library.backend)
        if remote:
            self.sub_title = f"{remote[0].upper()}{remote[1:]} (remote)"
        for warning in ctx.cfg.warnings:
            self.notify(warning, severity="warning", timeout=10)
        for message in ctx.plugins.reports:
            self.notify(message, severity="error", timeout=10)
        ctx.plugins.on_report = lambda message: self.notify(message, severity="error", timeout=10)
        if self.open_file is not None:
            self.open_code(self.open_file)
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the app: keep it out of GC passes

    def watch_theme(self, theme: str) -> None:
        if self._saved_theme is not None and theme != self._saved_theme:
            self._saved_theme = theme
            try:
                self.library.ctx.cfg.set("ui", "theme", theme)
            except TramontaneError as exc:
                self.notify(str(exc), severity="warning", timeout=10)

    # -- the models screen and the server ------------------------------------------------------

    def action_models(self) -> None:
        from app.session.models import ModelManager
        from app.ui.tui.models_screen import ModelsScreen

        if not isinstance(self.screen, ModelsScreen):
            self.push_screen(ModelsScreen(ModelManager(self.library.ctx,
                                                       endpoint=self.hub_endpoint)))

    async def action_toggle_server(self) -> None:
        """F9: serve /infill and /v1 from this app's models (editors, OpenAI clients)."""
        await self.server.toggle(self.notify)
        self.chat.update_status()

    # -- the code pane -------------------------------------------------------------------------

    @property
    def code_backend(self) -> Backend:
        """The code worker, shared by every code pane and the in-app server."""
        if self._code_backend is None:
            self._code_backend = self.library.ctx.code_backend
        return self._code_backend

    def open_code(self, path: Path) -> None:
        try:
            screen = CodeScreen.for_file(path, self.library.ctx, self.code_backend)
        except TramontaneError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.push_screen(screen)

    def on_open_file_requested(self, event: OpenFileRequested) -> None:
        self.open_code(event.path)

    def action_open_code(self) -> None:
        from app.ui.tui.dialogs import FilePicker

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.open_code(path)

        self.push_screen(FilePicker(Path.cwd()), chosen)

    async def action_quit(self) -> None:
        """Quit, once every code pane's unsaved edits are saved or knowingly discarded."""
        dirty = [s for s in self.screen_stack if isinstance(s, CodeScreen) and s.dirty]
        if not dirty:
            self.exit()
            return
        dirty[-1].confirm_leave(self._quit_again)

    def _quit_again(self) -> None:
        self.call_later(self.action_quit)

    async def on_unmount(self) -> None:
        if self.server.running:
            await self.server.stop()
        await self.library.backend.unload()
        if self._code_backend is not None:
            await self._code_backend.unload()
