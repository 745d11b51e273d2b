"""The code pane: a file in the editor, suggestions after a pause in typing (or on Ctrl+Space),
atomic saves that keep the file's permissions and never overwrite changes made on disk
without asking. No way out (close, open another file, quit) drops unsaved edits without
asking, and a recovery copy kept in the data folder survives a lost terminal or a crash."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, TextArea

from app.atomic import atomic_write
from app.engine.backend import Backend
from app.errors import TramontaneError
from app.session import edit
from app.session.complete import CompletionSession, read_text_file
from app.session.front import Tramontane
from app.session.library import ChatLibrary
from app.session.recovery import RecoveryStore
from app.ui.tui.code_editor import LANGUAGES, CodeEditor
from app.ui.tui.dialogs import ChoiceDialog, ConfirmDialog, unsaved_question

RECOVERY_DELAY_S = 0.5  # a recovery copy is written this long after the last edit


def _fingerprint(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


@dataclass
class OpenFileRequested(Message):
    """Open `path` in a new code pane (the app owns the completion session)."""

    path: Path


class CodeScreen(Screen[None]):
    CSS_PATH = "code_screen.tcss"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+space,ctrl+@", "suggest", "Suggest", priority=True),
        Binding("ctrl+w", "close", "Close file", priority=True),
        Binding("ctrl+o", "open_other", "Open file", priority=True),
        # priority: TextArea's own Ctrl+K deletes to the end of the line
        Binding("ctrl+k", "edit", "Edit by instruction", priority=True),
        Binding("ctrl+l", "ask", "Ask about the code", priority=True),
    ]

    def __init__(self, path: Path, session: CompletionSession, debounce_ms: int = 250,
                 recovery: RecoveryStore | None = None, quiet: set[str] | None = None,
                 library: ChatLibrary | None = None) -> None:
        super().__init__()
        self.library = library
        self.path = path
        self.session = session
        self.debounce_s = debounce_ms / 1000
        language = LANGUAGES.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
        # 0 ms, or a language the user listed: suggestions come on Ctrl+Space only
        self.auto_suggest = debounce_ms > 0 and language not in (quiet or set())
        self.text = read_text_file(path) if path.exists() else ""
        self.disk_print = _fingerprint(path) if path.exists() else ""
        self._timer: Timer | None = None
        self._recovery_timer: Timer | None = None
        self._warm_timer: Timer | None = None
        self.saved_text = self.text
        self.recovery = recovery

    @classmethod
    def for_file(cls, path: Path, door: Tramontane, backend: Backend | None = None,
                 ) -> CodeScreen:
        """The pane for `path` with the code model on the chosen backend (or `backend`) and
        the [code] settings of config.toml."""
        code = door.config.section("code")
        return cls(path, door.code(backend=backend), int(code["debounce_ms"]),
                   RecoveryStore(door.paths.recovery_dir), quiet=set(code["auto_suggest_off"]),
                   library=door.chats)

    @property
    def changed_on_disk(self) -> bool:
        """Someone else changed the file since it was opened or saved here."""
        return self.path.exists() and _fingerprint(self.path) != self.disk_print

    @property
    def dirty(self) -> bool:
        """The buffer holds edits that are not on disk."""
        return bool(self.is_mounted and self.editor.text != self.saved_text)

    def compose(self) -> ComposeResult:
        language = LANGUAGES.get(self.path.suffix.lower())
        with Vertical(id="code-pane"):
            yield Label(self._title(), id="code-title", markup=False)
            yield CodeEditor(self.text, language, id="editor")
            yield Label("", id="code-status", markup=False)
        yield Footer()

    def _title(self) -> str:
        return f"{self.path} · completion by {self.session.model.name} " \
               f"({self.session.model.fim_format or 'continue'})"

    def on_mount(self) -> None:
        self.editor.focus()
        self.session.touched(str(self.path.resolve()), "opened", self.text)
        if self.auto_suggest:
            self.warm()
        found = self.recovery.load(self.path) if self.recovery else None
        if found is not None and found.text != self.text:
            def answered(choice: str | None) -> None:
                if choice == "restore":
                    self.editor.load_text(found.text)
                    self.status(f"restored the unsaved changes from {found.when()}; "
                                "Ctrl+S saves them")
                elif self.recovery is not None:
                    self.recovery.drop(self.path)
            self.app.push_screen(ChoiceDialog(
                f"Unsaved changes to {self.path.name} from {found.when()} were kept when the "
                "app last stopped. Restore them?",
                [("restore", "Restore"), ("discard", "Discard")]), answered)
        elif found is not None and self.recovery is not None:
            self.recovery.drop(self.path)

    @property
    def editor(self) -> CodeEditor:
        return self.query_one(CodeEditor)

    def status(self, text: str) -> None:
        self.query_one("#code-status", Label).update(text)

    # -- suggestions -----------------------------------------------------------------------------

    @on(TextArea.SelectionChanged, "#editor")
    def _moved(self, event: TextArea.SelectionChanged) -> None:
        """The cursor moved without an edit: once it rests, warm the cache there."""
        if self._warm_timer is not None:
            self._warm_timer.stop()
        busy = any(w.group == "suggest" and w.is_running for w in self.workers)
        if self.auto_suggest and not self.editor.pending and self._timer is None and not busy:
            self._warm_timer = self.set_timer(self.debounce_s * 2, self.warm)

    @on(TextArea.Changed, "#editor")
    def _changed(self, event: TextArea.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.auto_suggest and self.editor.text != self.saved_text and not self.editor.pending:
            if self.session.cached(*self.editor.prefix_suffix) is not None:
                self.action_suggest()  # known already (the one after an accepted suggestion)
            else:
                self._timer = self.set_timer(self.debounce_s, self.action_suggest)
        if self._recovery_timer is not None:
            self._recovery_timer.stop()
        self._recovery_timer = self.set_timer(RECOVERY_DELAY_S, self.keep_recovery_copy)

    def keep_recovery_copy(self) -> None:
        """Write (or, once the buffer is clean again, remove) the recovery copy."""
        self._recovery_timer = None
        if self.recovery is None or not self.is_mounted:
            return
        if self.dirty:
            self.recovery.save(self.path, self.editor.text)
        else:
            self.recovery.drop(self.path)

    def action_suggest(self) -> None:
        self._timer = None
        if self._warm_timer is not None:
            self._warm_timer.stop()
            self._warm_timer = None
        prefix, suffix = self.editor.prefix_suffix
        self.suggest(prefix, suffix, self.editor.text, self.editor.cursor_location)

    @work(exclusive=True, group="suggest")
    async def warm(self) -> None:
        """While the file is read: load the model and evaluate the prompt at the cursor, so
        the first suggestion does not wait for the whole window (a suggestion cancels it)."""
        self._warm_timer = None
        with contextlib.suppress(TramontaneError):
            await self.session.warm(*self.editor.prefix_suffix, str(self.path.resolve()))

    @work(exclusive=True, group="suggest")
    async def suggest(self, prefix: str, suffix: str, text: str,
                      cursor: tuple[int, int]) -> None:
        self.status("thinking…")
        editor = self.editor

        def first_line(line: str) -> None:
            if editor.text == text and editor.cursor_location == cursor and not editor.pending:
                editor.offer(line)  # the rest follows when the model is done

        try:
            result = await self.session.complete(prefix, suffix, str(self.path.resolve()),
                                                 first_line=first_line)
        except TramontaneError as exc:
            self.status(f"no suggestion: {exc}")
            return
        if editor.text != text or editor.cursor_location != cursor:
            self.status("")
            return  # the user moved on; the cache keeps this one for later
        editor.offer(result.text)
        s = result.stats
        detail = "from cache" if result.source == "cache" else (
            f"{result.elapsed_ms:.0f} ms, {s.prompt_tokens - s.cached_tokens} new prompt tokens")
        self.status(f"suggestion ({detail})" if result.text else "no suggestion")
        # meanwhile, the one after accepting it (a keystroke's next request cancels this)
        with contextlib.suppress(TramontaneError):  # a head start: the real request says why
            await self.session.speculate(prefix, suffix, result.text, str(self.path.resolve()))

    # -- edit and ask ----------------------------------------------------------------------------

    def target(self) -> edit.Span:
        """The selected lines, else the function, method or class at the cursor."""
        text = self.editor.text
        start, end = sorted([self.editor.selection.start, self.editor.selection.end])
        if start == end:
            return edit.span(text, *edit.range_at(text, start[0] + 1, str(self.path)))
        # a selection ending at the start of a line does not take that line
        last = end[0] if end[1] > 0 or end[0] == start[0] else end[0] - 1
        return edit.span(text, start[0] + 1, min(last + 1, max(1, len(text.splitlines()))))

    def _replace(self, where: edit.Span, code: str) -> None:
        """Put `code` in place of the range: one edit, so one undo step."""
        editor = self.editor
        if editor.text != where.text:
            self.notify("The buffer changed during the review; the edit was not applied.",
                        severity="warning")
            return
        lines = where.text.split("\n")
        end = (where.end, 0) if where.end < len(lines) else (where.end - 1,
                                                              len(lines[where.end - 1]))
        new = code if where.end < len(lines) or where.code.endswith("\n") else code.rstrip("\n")
        editor.replace(new, (where.start - 1, 0), end)
        self.status(f"edited lines {where.start}-{where.end} (Ctrl+Z undoes it)")

    def _review(self, where: edit.Span, instruction: str, code: str | None = None) -> None:
        from app.ui.tui.edit_review import EditReview

        def done(result: str | None) -> None:
            if result is not None:
                self._replace(where, result)

        self.app.push_screen(EditReview(self.session, where, str(self.path), instruction,
                                        code), done)

    def action_edit(self) -> None:
        from app.ui.tui.dialogs import TextDialog

        try:
            where = self.target()
        except TramontaneError as exc:
            self.status(str(exc))
            return
        self.warm_edit(where)

        def given(instruction: str | None) -> None:
            if instruction and instruction.strip():
                self._review(where, instruction.strip())

        self.app.push_screen(TextDialog(
            f"Edit lines {where.start}-{where.end}: what should change?", ""), given)

    @work(exclusive=True, group="suggest")
    async def warm_edit(self, where: edit.Span) -> None:
        """While the instruction is typed, evaluate the edit's prompt up to it."""
        with contextlib.suppress(TramontaneError):
            await edit.warm(self.session, where, str(self.path))

    def action_ask(self) -> None:
        from app.ui.tui.ask_screen import AskScreen

        if self.library is None:
            return
        try:
            where = self.target()
        except TramontaneError as exc:
            self.status(str(exc))
            return

        def answered(code: str | None) -> None:
            if code is not None:
                self._review(where, "the code from the answer", code)

        self.app.push_screen(AskScreen(self.library, self.session, where, str(self.path)),
                             answered)

    # -- saving ----------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.changed_on_disk:
            def done(yes: bool | None) -> None:
                if yes:
                    self._write()
            self.app.push_screen(ConfirmDialog(
                f"{self.path.name} changed on disk since it was opened. Overwrite it?",
                yes="Overwrite"), done)
            return
        self._write()

    def _write(self) -> bool:
        text = self.editor.text
        try:
            atomic_write(self.path, text)
        except OSError as exc:
            self.notify(f"Could not save {self.path}: {exc.strerror or exc}. The file on disk "
                        "is unchanged; your edits are still here.", severity="error")
            return False
        self.saved_text = text
        self.disk_print = _fingerprint(self.path)
        if self.recovery is not None:
            self.recovery.drop(self.path)
        self.session.touched(str(self.path.resolve()), "saved", text)
        self.status(f"saved {self.path.name}")
        return True

    def confirm_leave(self, then: Callable[[], None]) -> None:
        """Run `then` once the buffer's edits are saved or knowingly discarded; ask first when
        there are any. A save that fails (or waits on a changed-on-disk question) stays."""
        if not self.dirty:
            if self.recovery is not None:
                self.recovery.drop(self.path)
            then()
            return

        def answered(choice: str | None) -> None:
            if choice == "save":
                if self.changed_on_disk:
                    self.notify(f"{self.path.name} changed on disk since it was opened; save "
                                "with Ctrl+S to choose whether to overwrite it.",
                                severity="warning")
                    return
                if self._write():
                    then()
            elif choice == "discard":
                if self.recovery is not None:
                    self.recovery.drop(self.path)
                self.saved_text = self.editor.text  # nothing left to ask about
                then()

        self.app.push_screen(unsaved_question(self.path.name), answered)

    def _leave(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.confirm_leave(self._leave)

    def action_open_other(self) -> None:
        """Open another file in the pane, once this one's edits are saved or discarded."""
        from app.ui.tui.dialogs import FilePicker

        def chosen(path: Path | None) -> None:
            if path is None or path.resolve() == self.path.resolve():
                return

            def swap() -> None:
                self._leave()
                self.app.post_message(OpenFileRequested(path))

            self.confirm_leave(swap)

        self.app.push_screen(FilePicker(self.path.resolve().parent), chosen)
