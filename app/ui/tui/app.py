"""The Tramontane app: what is app-wide. The chat screen is its first screen; the code pane
(F7, or a file named on the command line), the models screen (F5) and the in-app server (F9)
open from any screen. The app owns the theme, the plugin reports and the model workers, and
quits only once every code pane's unsaved edits are saved or knowingly discarded."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel

from app.engine.backend import Backend
from app.errors import TramontaneError
from app.session.front import Tramontane
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

    def __init__(self, door: Tramontane, chat_id: int | None = None,
                 open_file: Path | None = None, code_backend: Backend | None = None) -> None:
        super().__init__()
        self.door = door
        self.library = door.chats
        self.open_file = open_file
        self._code_backend = code_backend
        self.server = AppServer(door)
        self.chat = ChatScreen(door, self.server, chat_id)
        self.add_mode("chat", lambda: self.chat)  # the first screen (a mode's CSS loads with it)
        self._saved_theme: str | None = None
        self.hub_endpoint: str | None = None  # a Hugging Face mirror (tests use a local one)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notice holds text (file names, chat titles, server messages), never markup,
        whatever a screen's `notify` passes on."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    async def on_mount(self) -> None:
        door = self.door
        theme = str(door.config.get("ui", "theme"))
        if theme in self.available_themes:
            self.theme = theme
        self._saved_theme = self.theme
        remote = door.remote()
        if remote:
            self.sub_title = f"{remote[0].upper()}{remote[1:]} (remote)"
        for warning in door.warnings:
            self.notify(warning, severity="warning", timeout=10)
        for message in door.plugins.reports:
            self.notify(message, severity="error", timeout=10)
        door.plugins.on_report = lambda message: self.notify(message, severity="error", timeout=10)
        if self.open_file is not None:
            self.open_code(self.open_file)
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal, a kill: leave as
            loop.add_signal_handler(number, self.exit)  # Ctrl+Q does, replies saved
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the app: keep it out of GC passes

    def watch_theme(self, theme: str) -> None:
        if self._saved_theme is not None and theme != self._saved_theme:
            self._saved_theme = theme
            try:
                self.door.config.set("ui", "theme", theme)
            except TramontaneError as exc:
                self.notify(str(exc), severity="warning", timeout=10)

    # -- the models screen and the server ------------------------------------------------------

    def action_models(self) -> None:
        from app.ui.tui.models_screen import ModelsScreen

        if not isinstance(self.screen, ModelsScreen):
            if self.hub_endpoint is not None:
                self.door.models.endpoint = self.hub_endpoint
            self.push_screen(ModelsScreen(self.door.models))

    async def action_toggle_server(self) -> None:
        """F9: serve /infill and /v1 from this app's models (editors, OpenAI clients)."""
        await self.server.toggle(self.notify)
        self.chat.update_status()

    # -- the code pane -------------------------------------------------------------------------

    def open_code(self, path: Path) -> None:
        try:
            screen = CodeScreen.for_file(path, self.door, self._code_backend)
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
        session = self.chat.session
        if session is not None and session.toolbox is not None:
            await session.toolbox.close()  # the MCP servers it started
        await self.door.unload()
        if self._code_backend is not None:
            await self._code_backend.unload()
