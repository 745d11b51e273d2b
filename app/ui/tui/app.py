"""The Tramontane app: chats on the left, the conversation and the prompt box on the right.

The app talks to `session` objects only; replies stream in an exclusive worker that Esc
cancels, and the partial reply stays, marked stopped.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Label, TextArea
from textual.worker import Worker

from app.config import is_remote
from app.engine.backend import Backend, Done, Error, Event, Token
from app.errors import TramontaneError
from app.session.chat import ChatSession
from app.session.library import ChatLibrary
from app.session.slash import ChatPrompt
from app.ui.tui.chat_actions import ChatActions
from app.ui.tui.code_actions import CodeActions
from app.ui.tui.conversation import Conversation
from app.ui.tui.dialogs import ConfirmDialog, ModelPicker
from app.ui.tui.message_view import MessageView
from app.ui.tui.prompt import PromptBox
from app.ui.tui.serving import AppServer
from app.ui.tui.sidebar import ChatList

_CHAT_ACTIONS = {"stop", "models", "open_code", "new_chat", "regenerate", "edit_last", "rename",
                 "params", "pick_model", "export", "delete", "search", "copy_reply"}


class TramontaneApp(ChatActions, CodeActions):
    CSS_PATH = "app.tcss"
    TITLE = "Tramontane"
    BINDINGS = [
        Binding("escape", "stop", "Stop reply", priority=True),
        Binding("ctrl+n", "new_chat", "New chat", priority=True),
        Binding("ctrl+r", "regenerate", "Regenerate", priority=True),
        Binding("ctrl+e", "edit_last", "Edit last question", priority=True),
        Binding("f2", "rename", "Rename", priority=True),
        Binding("f3", "params", "Parameters", priority=True),
        Binding("f4", "pick_model", "Model", priority=True),
        Binding("f5", "models", "Models", priority=True),
        Binding("f6", "export", "Export", priority=True),
        Binding("f7", "open_code", "Code", priority=True),
        Binding("f8", "delete", "Delete chat", priority=True),
        Binding("ctrl+f", "search", "Search", priority=True),
        Binding("ctrl+y", "copy_reply", "Copy reply", priority=True),
        Binding("f9", "toggle_server", "Serve", priority=True),
    ]

    def __init__(self, library: ChatLibrary, chat_id: int | None = None,
                 open_file: Path | None = None, code_backend: Backend | None = None) -> None:
        super().__init__()
        self.library = library
        self.open_file = open_file
        self._code_backend = code_backend
        self.session: ChatSession | None = None
        self.server = AppServer(library.ctx)
        self.start_chat = chat_id
        self.editing = False
        self.hinting = False
        self.last_stats = ""
        self._saved_theme: str | None = None
        self.hub_endpoint: str | None = None  # a Hugging Face mirror (tests use a local one)
        self.fit_confirmed: set[str] = set()  # models the user chose to load though too big

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Chat keys act on the chat screen only, not inside a dialog."""
        return not (action in _CHAT_ACTIONS and len(self.screen_stack) > 1)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ChatList(id="sidebar")
            with Vertical(id="main"):
                yield Conversation(id="conversation")
                yield Label("", id="status")
                yield PromptBox(id="prompt")
        yield Footer()

    async def on_mount(self) -> None:
        theme = str(self.library.ctx.cfg.get("ui", "theme"))
        if theme in self.available_themes:
            self.theme = theme
        self._saved_theme = self.theme
        for warning in self.library.ctx.cfg.warnings:
            self.notify(warning, severity="warning", timeout=10)
        plugins = self.library.ctx.plugins
        for message in plugins.reports:
            self.notify(message, severity="error", timeout=10)
        plugins.on_report = lambda message: self.notify(message, severity="error", timeout=10)
        self.chat_prompt = ChatPrompt(plugins)
        chats = self._refresh_chats()
        first = self.start_chat if self.start_chat is not None else (chats[0].id if chats else None)
        if first is not None:
            await self.open_chat(first)
        self._update_status()
        self.query_one(PromptBox).focus()
        if self.open_file is not None:
            self.open_code(self.open_file)
        gc.collect()
        gc.freeze()  # what start-up built lives as long as the app: keep it out of GC passes

    def watch_theme(self, theme: str) -> None:
        if self._saved_theme is not None and theme != self._saved_theme:
            self._saved_theme = theme
            try:
                self.library.ctx.cfg.set("ui", "theme", theme)
            except TramontaneError as exc:
                self.notify(str(exc), severity="warning", timeout=10)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def conversation(self) -> Conversation:
        return self.query_one(Conversation)

    @property
    def busy(self) -> bool:
        return any(w.group == "reply" and w.is_running for w in self.workers)

    def _update_status(self) -> None:
        s = self.session
        host = str(getattr(self.library.backend, "host", ""))
        if host and is_remote(host):
            kind = "Ollama" if self.library.backend.name == "ollama" else "Server"
            self.sub_title = f"{kind} at {host} (remote)"
        if s is None:
            model = self.library.ctx.default_model_name()
            text = f"{model} · {self.library.backend.name} · new chat"
        else:
            text = f"{s.model.name} · {self.library.backend.name} · {self.last_stats or 'ready'}"
        if self.server.running:
            text += f" · serving {self.server.url}"
        self.query_one("#status", Label).update(text)

    async def action_toggle_server(self) -> None:
        """F9: serve /infill and /v1 from this app's models (editors, OpenAI clients)."""
        await self.server.toggle(self.notify)
        self._update_status()

    async def open_chat(self, chat_id: int) -> None:
        if self.busy:
            self.notify("Stop the reply first (Esc).", severity="warning")
            return
        try:
            self.session = self.library.open(chat_id)
            await self.conversation.show_chat(self.library, chat_id)
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return
        self.last_stats = ""
        self._update_status()

    # -- sending ------------------------------------------------------------------------------

    @on(TextArea.Changed, "#prompt")
    def _slash_hint(self, event: TextArea.Changed) -> None:
        """While a slash command's name is typed, the status line lists the matching ones."""
        text = event.text_area.text
        if text.startswith("/") and not any(ch.isspace() for ch in text):
            found = [c for name, c in self.chat_prompt.commands.items() if name.startswith(text[1:])]
            hint = "   ".join(f"/{c.name} {c.usage}".rstrip() + f" — {c.help}" for c in found[:3])
            self.query_one("#status", Label).update(hint or f"no command {text}; /help lists them")
            self.hinting = True
        elif self.hinting:
            self.hinting = False
            self._update_status()

    @on(PromptBox.Submitted)
    async def _submitted(self, event: PromptBox.Submitted) -> None:
        if self.busy:
            self.notify("A reply is still streaming; Esc stops it.", severity="warning")
            return
        try:
            if self.session is None:
                self.session = self.library.new()
                await self.conversation.show_chat(self.library, self.session.chat_id)
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return
        session, text = self.session, event.text
        warning = session.model.fit_warning

        def send(load: bool | None = True) -> None:
            if load:
                if warning:  # asked and answered: not asked again for this model
                    self.fit_confirmed.add(session.model.name)
                self.query_one(PromptBox).clear()
                self.submit(session, text)

        if warning and session.model.name not in self.fit_confirmed:
            self.push_screen(ConfirmDialog(f"{warning} Load it anyway?", yes="Load anyway"), send)
        else:
            send()

    @work(exclusive=True, group="reply")
    async def submit(self, session: ChatSession, text: str) -> None:
        """Run a slash command, or send the message with what plugins attach, and stream the
        reply. Plugins run in threads with time limits, so the screen stays live meanwhile."""
        prepared = await self.chat_prompt.prepare(text, session)
        for notice in prepared.notices:
            self.notify(notice, timeout=8)
        box = self.query_one(PromptBox)
        if prepared.refused and not box.text:  # back in the box, to fix and send again
            box.load_text(text)
            box.move_cursor(box.document.end)
        if prepared.content is None:
            return
        old: list[MessageView] = []
        if self.editing:
            self.editing = False
            old = self._last_turn()
            events = session.edit_last(prepared.content)
        else:
            events = session.send(prepared.content, title=prepared.question)
        await self.conversation.add(MessageView("user", prepared.content))
        await self._stream(events, replaces=old)

    def _last_turn(self) -> list[MessageView]:
        """The views of the last question and its reply."""
        views = list(self.conversation.query(MessageView))
        for i in range(len(views) - 1, -1, -1):
            if views[i].role == "user":
                return views[i:]
        return []

    @work(exclusive=True, group="reply")
    async def stream_reply(self, events: AsyncGenerator[Event, None],
                           replaces: list[MessageView] | None = None) -> None:
        await self._stream(events, replaces or [])

    async def _stream(self, events: AsyncGenerator[Event, None],
                      replaces: list[MessageView] | None = None) -> None:
        """Stream a reply into a new view; the views `replaces` names (an old turn) go once
        the new reply is complete, and stay when it fails or is stopped."""
        reply = await self.conversation.add(MessageView("assistant", state="streaming"))
        self.conversation.anchor()
        thresholds = gc.get_threshold()
        # A full collection walks every object the app holds (100-200 ms once a long reply is on
        # screen); while streaming only the young generations are collected, the rest after.
        gc.set_threshold(thresholds[0], thresholds[1], 1_000_000)
        try:
            async with aclosing(events) as stream:
                async for event in stream:
                    match event:
                        case Token(text):
                            await reply.append(text)
                        case Done(stats):
                            state = "partial" if stats.stop_reason == "cancelled" else "complete"
                            await reply.finish(state)
                            if state == "complete":
                                for view in replaces or []:
                                    await view.remove()
                            self._show_stats(stats.prompt_tokens + stats.generated_tokens,
                                             stats.decode_tps)
                        case Error(message):
                            await reply.finish("error", message)
        except asyncio.CancelledError:
            await reply.finish("partial")
            raise
        finally:
            gc.set_threshold(*thresholds)
            self._refresh_chats()
            if self.session is not None and self.session.unsaved_note():
                self.notify(self.session.unsaved_note(), severity="error", timeout=15)
            if self.session is not None and self.session.left_out:
                self.notify(f"The {self.session.left_out} oldest messages were not sent: with "
                            "them, the context would be full.", severity="warning")

    def _show_stats(self, used: int, tps: float) -> None:
        size = self.session.params.context_length if self.session else 0
        self.last_stats = f"context {used}/{size} · {tps:.1f} tok/s"
        self._update_status()

    # -- actions ------------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Esc on the chat screen; other screens bind Esc to their own meaning."""
        for worker in self.workers:
            if worker.group == "reply" and worker.is_running:
                worker.cancel()
                self.notify("Reply stopped.")

    async def action_new_chat(self) -> None:
        if self.busy:
            self.notify("Stop the reply first (Esc).", severity="warning")
            return
        self.session = None
        self.last_stats = ""
        await self.conversation.show_chat(self.library, None)
        self._update_status()
        self.query_one(PromptBox).focus()

    def action_regenerate(self) -> None:
        if self.session is None or self.busy:
            return
        views = list(self.conversation.query(MessageView))
        old = [views[-1]] if views and views[-1].role == "assistant" else []
        self.stream_reply(self.session.regenerate(), old)

    def action_edit_last(self) -> None:
        if self.session is None or self.busy:
            return
        question = self.session.last_question()
        if not question:
            return
        self.editing = True
        prompt = self.query_one(PromptBox)
        prompt.load_text(question)
        prompt.focus()
        self.notify("Edit the question and press Enter to ask again.")

    def action_search(self) -> None:
        self.query_one("#search").focus()

    def action_copy_reply(self) -> None:
        replies = [v for v in self.conversation.query(MessageView) if v.role == "assistant"]
        if replies:
            replies[-1].action_copy_text()

    async def action_pick_model(self) -> None:
        """The configured backend's models: files on disk, or the server's list."""
        session = self.session
        try:
            models = await self.library.model_choices()
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return
        current = next((i for i, m in enumerate(models)
                        if session and m.ref.name == session.model.name), None)

        async def done(index: int | None) -> None:
            if index is None:
                return
            if self.session is None:
                self.session = self.library.new(model=models[index].name)
                await self.conversation.show_chat(self.library, self.session.chat_id)
            else:
                self.library.switch_model(self.session, models[index])
            self._update_status()
            self._refresh_chats()

        self.push_screen(ModelPicker([m.label for m in models], current), done)

    def action_models(self) -> None:
        from app.session.models import ModelManager
        from app.ui.tui.models_screen import ModelsScreen

        self.push_screen(ModelsScreen(ModelManager(self.library.ctx, endpoint=self.hub_endpoint)))

    # -- sidebar ------------------------------------------------------------------------------

    @on(ChatList.Chosen)
    async def _chosen(self, event: ChatList.Chosen) -> None:
        await self.open_chat(event.chat_id)
        self.query_one(PromptBox).focus()

    @on(ChatList.SearchChanged)
    def _search(self, event: ChatList.SearchChanged) -> None:
        self._refresh_chats(event.query)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "reply" and event.worker.error is not None:
            self.notify(f"The reply failed: {event.worker.error}", severity="error")

    async def on_unmount(self) -> None:
        if self.server.running:
            await self.server.stop()
        await self.library.backend.unload()
        if self._code_backend is not None:
            await self._code_backend.unload()
