"""One message in the conversation. A reply streams through Textual's MarkdownStream and gets
one full update at the end; `c` copies the whole text, `b` the next code block."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Markdown
from textual.widgets.markdown import MarkdownStream

from app.store.history import StoredMessage

_CODE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_LABELS = {"user": "You", "assistant": "Assistant", "system": "System", "error": "Error"}
STATE_NOTES = {"partial": "stopped", "error": "error", "complete": ""}


def code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in _CODE.finditer(text)]


class MessageView(Vertical, can_focus=True):
    BINDINGS = [
        Binding("c", "copy_text", "Copy message"),
        Binding("b", "copy_code", "Copy code block"),
    ]

    def __init__(self, role: str, text: str = "", state: str = "complete",
                 message_id: int | None = None, note: str = "") -> None:
        super().__init__(classes=f"message {role} {state}")
        self.role = role
        self.text = text
        self.state = state
        self.message_id = message_id
        self.note = note
        self._stream: MarkdownStream | None = None
        self._code_index = 0

    @classmethod
    def from_stored(cls, msg: StoredMessage) -> MessageView:
        note = msg.error or "" if msg.state == "error" else ""
        return cls(msg.role, msg.content, msg.state, msg.id, note)

    def compose(self) -> ComposeResult:
        yield Label(self._title(), classes="message-title")
        yield Markdown(self.text, classes="message-body")
        yield Label(self.note, classes="message-note")

    def _title(self) -> str:
        note = STATE_NOTES.get(self.state, "")
        return _LABELS.get(self.role, self.role) + (f"  · {note}" if note else "")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def append(self, piece: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        self.text += piece
        await self._stream.write(piece)

    async def finish(self, state: str, note: str = "") -> None:
        """End the stream; one full update fixes code-block state."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        await self.markdown.update(self.text)
        self.set_state(state, note)

    def set_state(self, state: str, note: str = "") -> None:
        self.remove_class(self.state)
        self.state = state
        self.add_class(state)
        self.note = note
        self.query_one(".message-title", Label).update(self._title())
        self.query_one(".message-note", Label).update(note)

    def action_copy_text(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Message copied to the clipboard.")

    def action_copy_code(self) -> None:
        blocks = code_blocks(self.text)
        if not blocks:
            self.notify("This message has no code block.", severity="warning")
            return
        index = self._code_index % len(blocks)
        self.app.copy_to_clipboard(blocks[index])
        self._code_index += 1
        self.notify(f"Code block {index + 1} of {len(blocks)} copied.")
