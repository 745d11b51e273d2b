"""The app's ways into the code pane: F7 and a file named on the command line open it, with
the code worker it shares; quitting asks first about every pane's unsaved edits. A mixin of
`TramontaneApp`, kept apart to keep each module short."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from app.engine.backend import Backend
from app.errors import TramontaneError
from app.session.library import ChatLibrary
from app.ui.tui.code_screen import CodeScreen, OpenFileRequested


class CodeActions(App[None]):
    library: ChatLibrary
    _code_backend: Backend | None

    @property
    def code_backend(self) -> Backend:
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
