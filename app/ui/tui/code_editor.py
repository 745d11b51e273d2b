"""The code editor: Textual's TextArea with ghost-text suggestions.

A suggestion shows dimmed at the cursor, all of it: its first line after the cursor (Textual's
own `suggestion`), its other lines as dimmed lines under the cursor's line that push the code
below them down until the suggestion is accepted or dismissed. Tab accepts it all, Ctrl+Down
one line, Ctrl+Right (or Right) one word, Esc dismisses it, and typing what it starts with
keeps the rest."""

from __future__ import annotations

import re
from typing import Any

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.strip import Strip
from textual.widgets import TextArea
from textual.widgets.text_area import Edit, EditResult

_WORD = re.compile(r"\s*(\w+|[^\w\s]+)|\s+")

LANGUAGES = {".py": "python", ".js": "javascript", ".ts": "javascript", ".rs": "rust",
             ".go": "go", ".java": "java", ".json": "json", ".toml": "toml", ".md": "markdown",
             ".html": "html", ".css": "css", ".sh": "bash", ".yaml": "yaml", ".yml": "yaml",
             ".sql": "sql", ".xml": "xml", ".c": "c", ".h": "c", ".cpp": "cpp", ".rb": "ruby"}


def split_suggestion(pending: str) -> tuple[str, list[str]]:
    """The part shown after the cursor, and the whole lines shown under it."""
    first, _, rest = pending.partition("\n")
    return first, rest.split("\n") if rest else []


class CodeEditor(TextArea):
    BINDINGS = [
        Binding("tab", "accept", "Accept suggestion", show=True),
        Binding("ctrl+right", "accept_word", "Accept word"),
        Binding("ctrl+down", "accept_line", "Accept line"),
        Binding("escape", "dismiss", "Dismiss suggestion"),
    ]

    def __init__(self, text: str, language: str | None, **kwargs: Any) -> None:
        super().__init__(text, language=language, show_line_numbers=True, tab_behavior="indent",
                         soft_wrap=False, **kwargs)
        self.pending = ""
        self.ghost_lines: list[str] = []

    async def _on_key(self, event: events.Key) -> None:
        # TextArea would indent on Tab, and on Esc move the focus away, before any binding
        actions = {"tab": self.action_accept, "escape": self.action_dismiss}
        if event.key in actions and self.pending:
            event.prevent_default()
            event.stop()
            actions[event.key]()
            return
        await super()._on_key(event)

    def offer(self, suggestion: str) -> None:
        self.pending = suggestion
        first, self.ghost_lines = split_suggestion(suggestion)
        if "\n" in suggestion and not self.ghost_lines[-1]:
            self.ghost_lines = self.ghost_lines[:-1] or [""]  # a final line break: an empty line
        self.suggestion = first
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """The editor's lines, with the suggestion's other lines under the cursor's line."""
        ghost = self.ghost_lines if self.pending and self.has_focus else []
        if not ghost or self.soft_wrap:
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        below = self.cursor_location[0] - scroll_y  # the screen row of the cursor's line
        if y <= below:
            return super().render_line(y)
        if y > below + len(ghost):
            return super().render_line(y - len(ghost))
        text = ghost[y - below - 1].expandtabs(self.indent_width)[scroll_x:]
        style = self.get_component_rich_style("text-area--suggestion")
        base = self.rich_style
        width = self.size.width
        return Strip([Segment(" " * self.gutter_width, base), Segment(text, base + style)]
                     ).adjust_cell_length(width, base)

    def edit(self, edit: Edit) -> EditResult:
        left = self.pending[len(edit.text):] if self.pending.startswith(edit.text) and \
            edit.text else ""
        result = super().edit(edit)
        self.offer(left)
        return result

    def action_accept(self) -> None:
        if self.pending:
            self.insert(self.pending)
        else:
            self.insert(" " * self.indent_width if self.indent_type == "spaces" else "\t")

    def action_accept_word(self) -> None:
        if not self.pending:
            self.action_cursor_word_right()
            return
        match = _WORD.match(self.pending)
        self.insert(match.group(0) if match else self.pending[0])

    def action_accept_line(self) -> None:
        """The suggestion up to the end of its first line (the line break too, when more
        follows); without one, the cursor moves down a line as usual."""
        if not self.pending:
            self.action_cursor_down()
            return
        first, newline, _ = self.pending.partition("\n")
        self.insert(first + newline)

    def action_dismiss(self) -> None:
        self.offer("")

    def action_cursor_right(self, select: bool = False) -> None:
        """Right with a suggestion showing takes its next word (as Ctrl+Right), never the
        whole of a multi-line suggestion; without one, it moves the cursor."""
        if self.pending and not select:
            self.action_accept_word()
            return
        super().action_cursor_right(select)

    @property
    def prefix_suffix(self) -> tuple[str, str]:
        doc = self.document
        return (doc.get_text_range((0, 0), self.cursor_location),
                doc.get_text_range(self.cursor_location, doc.end))
