"""The prompt box: multi-line; Enter sends, Shift+Enter or Ctrl+J adds a line, Up on an
empty box recalls the last prompt."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class PromptBox(TextArea):
    @dataclass
    class Submitted(Message):
        text: str

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         **kwargs)  # type: ignore[arg-type]
        self.last_prompt = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            text = self.text
            if text.strip():
                self.last_prompt = text
                self.post_message(self.Submitted(text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        if event.key == "up" and not self.text and self.last_prompt:
            event.prevent_default()
            event.stop()
            self.load_text(self.last_prompt)
            self.move_cursor(self.document.end)
            return
        await super()._on_key(event)
