"""The chats sidebar: a search box over titles and message text, and the chats, newest first."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from app.session.library import Chat


class ChatList(Vertical):
    @dataclass
    class Chosen(Message):
        chat_id: int

    @dataclass
    class SearchChanged(Message):
        query: str

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search chats", id="search")
        yield OptionList(id="chats")

    @property
    def options(self) -> OptionList:
        return self.query_one("#chats", OptionList)

    def show(self, chats: list[Chat], current: int | None) -> None:
        options = self.options
        options.clear_options()
        options.add_options(
            [Option(Text(c.title or "(untitled)"), id=str(c.id)) for c in chats]
        )
        ids = [c.id for c in chats]
        if ids:
            options.highlighted = ids.index(current) if current in ids else 0

    def highlighted_chat(self) -> int | None:
        opts = self.options
        if opts.highlighted is None:
            return None
        option = opts.get_option_at_index(opts.highlighted)
        return int(option.id) if option.id else None

    @on(OptionList.OptionSelected, "#chats")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.Chosen(int(event.option.id)))

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.SearchChanged(event.value))
