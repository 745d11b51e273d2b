"""The conversation: messages of one chat. A long chat mounts only its newest page and loads
older pages as the reader scrolls up; it stays at the bottom only while the reader is there.
A reply streams into a view of its own; cancelling the stream keeps the partial reply, marked
stopped."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from contextlib import aclosing

from textual.containers import VerticalScroll

from app.engine.backend import Done, Error, Stats, Thought, Token
from app.session.chat_tools import ChatEvent, ToolAsked, ToolDone
from app.session.library import ChatLibrary
from app.ui.tui.message_view import MessageView, ToolView, stored_view

PAGE = 40


class Conversation(VerticalScroll):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.library: ChatLibrary | None = None
        self.chat_id: int | None = None
        self.oldest_id: int | None = None
        self.has_older = False
        self._loading = False

    async def show_chat(self, library: ChatLibrary, chat_id: int | None) -> None:
        self.library, self.chat_id = library, chat_id
        await self.remove_children()
        self.oldest_id, self.has_older = None, False
        if chat_id is None:
            return
        page = library.messages_page(chat_id, None, PAGE)
        if page:
            self.oldest_id = page[0].id
            self.has_older = len(page) == PAGE
            await self.mount_all([stored_view(m) for m in page])
        self.anchor()

    async def add(self, view: MessageView) -> MessageView:
        await self.mount(view)
        return view

    def last_turn(self) -> list[MessageView]:
        """The views of the last question and its reply."""
        views = list(self.query(MessageView))
        for i in range(len(views) - 1, -1, -1):
            if views[i].role == "user":
                return views[i:]
        return []

    async def stream(self, events: AsyncGenerator[ChatEvent, None],
                     replaces: list[MessageView]) -> Stats | None:
        """Stream a reply into a new view; the views `replaces` names (an old turn) go once the
        new reply is complete, and stay when it fails or is stopped. A tool call is shown, and
        its result folded, between replies. The last reply's stats, if it ended."""
        reply = await self.add(MessageView("assistant", state="streaming"))
        self.anchor()
        thresholds = gc.get_threshold()
        # A full collection walks every object the app holds (100-200 ms once a long reply is on
        # screen); while streaming only the young generations are collected, the rest after.
        gc.set_threshold(thresholds[0], thresholds[1], 1_000_000)
        ended: Stats | None = None
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    match event:
                        case Token(text):
                            await reply.append(text)
                        case Thought(text):
                            reply.think(text)
                        case Done(stats):
                            ended = stats
                            state = "partial" if stats.stop_reason == "cancelled" else "complete"
                            await reply.finish(state)
                            if state == "complete":
                                for view in replaces:
                                    await view.remove()
                        case Error(message):
                            await reply.finish("error", message)
                        case ToolAsked(call):
                            await reply.finish("complete")
                            reply.set_call(call)
                        case ToolDone(call, result, ran):
                            await self.mount(ToolView(call, result, ran))
                            reply = await self.add(MessageView("assistant", state="streaming"))
                            self.anchor()
        except asyncio.CancelledError:
            await reply.finish("partial")
            raise
        finally:
            gc.set_threshold(*thresholds)
        return ended

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 2 and self.has_older and not self._loading and new < old:
            self.run_worker(self.load_older(), exclusive=True, group="older")

    async def load_older(self) -> None:
        """Mount the page before the oldest shown, keeping the reader's place."""
        if self.library is None or self.chat_id is None or not self.has_older or self._loading:
            return
        self._loading = True
        try:
            page = self.library.messages_page(self.chat_id, self.oldest_id, PAGE)
            self.has_older = len(page) == PAGE
            if not page:
                return
            self.oldest_id = page[0].id
            height_before = self.virtual_size.height
            first = self.children[0] if self.children else None
            views = [stored_view(m) for m in page]
            await self.mount_all(views, before=first) if first else await self.mount_all(views)
            self.call_after_refresh(self._keep_place, height_before)
        finally:
            self._loading = False

    def _keep_place(self, height_before: int) -> None:
        grown = self.virtual_size.height - height_before
        self.scroll_to(y=self.scroll_y + grown, animate=False, immediate=True)
