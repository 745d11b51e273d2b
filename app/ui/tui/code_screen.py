"""The code pane: a file in the editor, suggestions after a pause in typing (or on Ctrl+Space),
atomic saves that keep the file's permissions and never overwrite changes made on disk
without asking."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, TextArea

from app.errors import TramontaneError
from app.session.complete import CompletionSession, read_text_file
from app.ui.tui.code_editor import LANGUAGES, CodeEditor
from app.ui.tui.dialogs import ConfirmDialog


def _fingerprint(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class CodeScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+space,ctrl+@", "suggest", "Suggest"),
        Binding("ctrl+w", "close", "Close file", priority=True),
    ]

    def __init__(self, path: Path, session: CompletionSession, debounce_ms: int = 250) -> None:
        super().__init__()
        self.path = path
        self.session = session
        self.debounce_s = debounce_ms / 1000
        self.text = read_text_file(path) if path.exists() else ""
        self.disk_print = _fingerprint(path) if path.exists() else ""
        self._timer: Timer | None = None
        self.saved_text = self.text

    def compose(self) -> ComposeResult:
        language = LANGUAGES.get(self.path.suffix.lower())
        with Vertical(id="code-pane"):
            yield Label(self._title(), id="code-title")
            yield CodeEditor(self.text, language, id="editor")
            yield Label("", id="code-status")
        yield Footer()

    def _title(self) -> str:
        return f"{self.path} · completion by {self.session.model.name} " \
               f"({self.session.model.fim_format or 'continue'})"

    def on_mount(self) -> None:
        self.editor.focus()
        self.session.touched(str(self.path.resolve()), "opened", self.text)

    @property
    def editor(self) -> CodeEditor:
        return self.query_one(CodeEditor)

    def status(self, text: str) -> None:
        self.query_one("#code-status", Label).update(text)

    # -- suggestions -----------------------------------------------------------------------------

    @on(TextArea.Changed, "#editor")
    def _changed(self, event: TextArea.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.editor.text != self.saved_text and not self.editor.pending:
            self._timer = self.set_timer(self.debounce_s, self.action_suggest)

    def action_suggest(self) -> None:
        self._timer = None
        prefix, suffix = self.editor.prefix_suffix
        self.suggest(prefix, suffix, self.editor.text, self.editor.cursor_location)

    @work(exclusive=True, group="suggest")
    async def suggest(self, prefix: str, suffix: str, text: str,
                      cursor: tuple[int, int]) -> None:
        self.status("thinking…")
        try:
            result = await self.session.complete(prefix, suffix, str(self.path.resolve()))
        except TramontaneError as exc:
            self.status(f"no suggestion: {exc}")
            return
        editor = self.editor
        if editor.text != text or editor.cursor_location != cursor:
            self.status("")
            return  # the user moved on; the cache keeps this one for later
        editor.offer(result.text)
        s = result.stats
        detail = "from cache" if result.source == "cache" else (
            f"{result.elapsed_ms:.0f} ms, {s.prompt_tokens - s.cached_tokens} new prompt tokens")
        self.status(f"suggestion ({detail})" if result.text else "no suggestion")

    # -- saving ----------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.path.exists() and _fingerprint(self.path) != self.disk_print:
            def done(yes: bool | None) -> None:
                if yes:
                    self._write()
            self.app.push_screen(ConfirmDialog(
                f"{self.path.name} changed on disk since it was opened. Overwrite it?",
                yes="Overwrite"), done)
            return
        self._write()

    def _write(self) -> None:
        text = self.editor.text
        tmp = self.path.with_name(f".{self.path.name}.tramontane-save")
        try:
            mode = self.path.stat().st_mode & 0o7777 if self.path.exists() else None
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.notify(f"Could not save {self.path}: {exc.strerror or exc}. The file on disk "
                        "is unchanged.", severity="error")
            return
        self.saved_text = text
        self.disk_print = _fingerprint(self.path)
        self.session.touched(str(self.path.resolve()), "saved", text)
        self.status(f"saved {self.path.name}")

    def action_escape(self) -> None:
        self.editor.action_dismiss()

    def action_close(self) -> None:
        if self.editor.text != self.saved_text:
            def done(yes: bool | None) -> None:
                if yes:
                    self.dismiss(None)
            self.app.push_screen(ConfirmDialog("Close without saving your changes?",
                                               yes="Discard"), done)
            return
        self.dismiss(None)
