"""One message in the conversation. A reply streams through Textual's MarkdownStream and gets
one full update at the end; `c` copies the whole text, `b` the next code block.

Textual lays out every widget at each reflow, and its Markdown widget is one widget per block.
So only the live tail of a streaming reply is a Markdown widget: text is cut into segments at
paragraph breaks outside code fences, and each finished segment is appended to one
`RenderedMarkdown` (pre-rendered lines), as is every saved message. The widget count stays
constant and streaming cost stays flat however long the reply grows. Writes are coalesced to
at most one every FLUSH_EVERY_S so that rendering leaves the CPU to the model.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Collapsible, Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from app.engine.tools import ToolCall
from app.session.library import StoredMessage
from app.ui.tui.rendered import RenderedMarkdown

_CODE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_LABELS = {"user": "You", "assistant": "Assistant", "system": "System", "error": "Error"}
STATE_NOTES = {"streaming": "replying…", "partial": "stopped", "error": "error", "complete": ""}
SEGMENT_CHARS = 1500
FLUSH_EVERY_S = 0.2


def _closes_segment(segment: str) -> bool:
    """A segment may end here: long enough, at a paragraph break, outside a code fence."""
    if len(segment) < SEGMENT_CHARS or segment.count("```") % 2:
        return False
    return segment.endswith("\n\n") or (len(segment) >= 4 * SEGMENT_CHARS and segment.endswith("\n"))


def split_segments(text: str) -> list[str]:
    """The segments a finished message is shown in (the same rule as while streaming)."""
    out, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line
        if _closes_segment(current):
            out.append(current)
            current = ""
    if current or not out:
        out.append(current)
    return out


class ToolView(Vertical):
    """A tool's result, folded (the model read it; open it to read it too)."""

    def __init__(self, call: ToolCall | None, result: str, ran: bool = True) -> None:
        super().__init__(classes="message tool")
        self.call, self.result, self.ran = call, result, ran

    def compose(self) -> ComposeResult:
        what = self.call.shown() if self.call is not None else "a tool"
        title = f"{'Result of' if self.ran else 'Not run:'} {what}" \
            f" ({len(self.result.splitlines())} lines)"
        yield Collapsible(Static(self.result, markup=False), title=title, collapsed=True)


def stored_view(msg: StoredMessage) -> Widget:
    """The view of a saved message: a reply, a reply that called tools, or a tool's result."""
    if msg.tool_call_id:
        return ToolView(None, msg.content)
    view = MessageView.from_stored(msg)
    view.calls = [ToolCall(c["name"], c["arguments"], c["id"])
                  for c in json.loads(msg.tool_calls or "[]")]
    return view


def code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in _CODE.finditer(text)]


class MessageView(Vertical, can_focus=True):
    BINDINGS = [
        Binding("c", "copy_text", "Copy message"),
        Binding("b", "copy_code", "Copy code block"),
    ]

    def __init__(self, role: str, text: str = "", state: str = "complete",
                 message_id: int | None = None, note: str = "", thinking: str = "") -> None:
        super().__init__(classes=f"message {role}" + (" error" if state == "error" else ""))
        self.role = role
        self._parts = [text]
        self.state = state
        self.message_id = message_id
        self.note = note
        self._stream: MarkdownStream | None = None
        self._live: Markdown | None = None
        self._timer: Timer | None = None
        self._lock = asyncio.Lock()
        self._segment = ""  # text of the last segment, written or waiting
        self._unsent = ""
        self._sent_at = 0.0
        self._code_index = 0
        self.thinking = thinking  # a thinking model's reasoning: folded above the reply
        self.calls: list[ToolCall] = []  # the tools this reply called (shown, not its text)

    @classmethod
    def from_stored(cls, msg: StoredMessage) -> MessageView:
        note = msg.error or "" if msg.state == "error" else ""
        return cls(msg.role, msg.content, msg.state, msg.id, note, msg.thinking)

    def compose(self) -> ComposeResult:
        title = self._title() + (f"  · calls {', '.join(c.shown() for c in self.calls)}"
                                 if self.calls else "")
        yield Label(title, classes="message-title", markup=False)
        fold = Collapsible(Static(self.thinking, markup=False, classes="thinking-text"),
                           title=self._thinking_title(), collapsed=True, classes="thinking")
        fold.display = bool(self.thinking)
        yield fold
        yield RenderedMarkdown(split_segments(self.text) if self.text else [],
                               classes="message-body")
        yield Label(self.note, classes="message-note", markup=False)

    def on_mount(self) -> None:
        if self.calls:
            self.rendered.display = False

    def set_call(self, call: ToolCall) -> None:
        """This reply is a tool call: shown as the call, not as the model's raw text."""
        self.rendered.display = False
        self.query_one(".message-title", Label).update(f"Assistant  · calls {call.shown()}")

    def _thinking_title(self) -> str:
        return f"Thinking ({len(self.thinking.split())} words)"

    def think(self, piece: str) -> None:
        """More of the reasoning: the folded block grows (open it to read it)."""
        self.thinking += piece
        fold = self.query_one(".thinking", Collapsible)
        fold.display = True
        fold.title = self._thinking_title()
        self.query_one(".thinking-text", Static).update(self.thinking)

    def _title(self) -> str:
        note = STATE_NOTES.get(self.state, "")
        return _LABELS.get(self.role, self.role) + (f"  · {note}" if note else "")

    @property
    def rendered(self) -> RenderedMarkdown:
        return self.query_one(RenderedMarkdown)

    @property
    def shown_source(self) -> str:
        live = self._live.source if self._live is not None else ""
        return self.rendered.source + live

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0]

    async def append(self, piece: str) -> None:
        self._parts.append(piece)
        self._unsent += piece
        wait = FLUSH_EVERY_S - (time.monotonic() - self._sent_at)
        if wait <= 0 or _closes_segment(self._segment + self._unsent):
            await self._flush()
        elif self._timer is None:
            self._timer = self.set_timer(wait, self._on_timer)  # shown even if the model pauses

    async def _on_timer(self) -> None:
        self._timer = None  # fired: nothing to stop
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            await self._write()

    async def _write(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._sent_at = time.monotonic()
        if not self._unsent:
            return
        piece, self._unsent = self._unsent, ""
        if self._live is None:
            self._live = Markdown("", classes="message-body")
            await self.mount(self._live, before=self.query_one(".message-note"))
            self._stream = Markdown.get_stream(self._live)
        assert self._stream is not None
        self._segment += piece
        await self._stream.write(piece)
        if _closes_segment(self._segment):
            await self._freeze()

    async def _freeze(self) -> None:
        """End the live segment's stream and show it, complete, as one widget."""
        if self._live is None:
            return
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        live, self._live = self._live, None
        self.rendered.add(self._segment)
        await live.remove()
        self._segment = ""

    async def finish(self, state: str, note: str = "") -> None:
        async with self._lock:
            await self._write()
            await self._freeze()
        self.set_state(state, note)

    def set_state(self, state: str, note: str = "") -> None:
        # only "error" changes the look; a class change restyles every child, so keep them rare
        self.set_class(state == "error", "error")
        self.state = state
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
