"""The chat screen: chats on the left, the conversation and the prompt box on the right.

It talks to `session` objects only. A reply streams in an exclusive worker that Esc cancels;
the partial reply stays, marked stopped. Its keys are the screen's own, so a dialog or another
screen above it never sees them; the few the prompt box would take first are priority keys.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, TextArea
from textual.worker import Worker

from app.engine.backend import Params
from app.engine.tools import ToolCall
from app.errors import TramontaneError
from app.session.chat import ChatSession
from app.session.chat_tools import ChatEvent
from app.session.front import Tramontane
from app.session.library import Chat
from app.session.slash import ChatPrompt
from app.ui.tui.conversation import Conversation
from app.ui.tui.dialogs import (
    ChoiceDialog,
    ConfirmDialog,
    ModelPicker,
    ParamsDialog,
    TextDialog,
)
from app.ui.tui.message_view import MessageView
from app.ui.tui.prompt import PromptBox
from app.ui.tui.serving import AppServer
from app.ui.tui.sidebar import ChatList


class ChatScreen(Screen[None]):
    CSS_PATH = "chat_screen.tcss"
    BINDINGS = [
        # priority: keys the prompt box would take first (Esc leaves it, Ctrl+E and Ctrl+Y
        # edit, F6 and F7 select); the chat's meaning wins while this screen is on top
        Binding("escape", "stop", "Stop reply", priority=True),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+e", "edit_last", "Edit last question", priority=True),
        Binding("f2", "rename", "Rename"),
        Binding("f3", "params", "Parameters"),
        Binding("f4", "pick_model", "Model"),
        Binding("f6", "export", "Export", priority=True),
        Binding("f7", "app.open_code", "Code", priority=True),
        Binding("f8", "delete", "Delete chat"),
        Binding("ctrl+f", "search", "Search"),
        Binding("ctrl+y", "copy_reply", "Copy reply", priority=True),
        Binding("ctrl+t", "tools", "Tools on/off", priority=True),
    ]

    def __init__(self, door: Tramontane, server: AppServer,
                 chat_id: int | None = None) -> None:
        super().__init__()
        self.door = door
        self.library = door.chats
        self.server = server
        self.start_chat = chat_id
        self.session: ChatSession | None = None
        self.chat_prompt = ChatPrompt(door.plugins)
        self.editing = False
        self.hinting = False
        self.last_stats = ""
        self.fit_confirmed: set[str] = set()  # models the user chose to load though too big
        self.tools_wanted = door.chats.tools_on  # the model may call tools (Ctrl+T)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ChatList(id="sidebar")
            with Vertical(id="main"):
                yield Conversation(id="conversation")
                yield Label("", id="status")
                yield PromptBox(id="prompt")
        yield Footer()

    async def on_mount(self) -> None:
        chats = self.refresh_chats()
        first = self.start_chat if self.start_chat is not None else (chats[0].id if chats else None)
        if first is not None:
            await self.open_chat(first)
        self.update_status()
        self.query_one(PromptBox).focus()

    @property
    def conversation(self) -> Conversation:
        return self.query_one(Conversation)

    @property
    def busy(self) -> bool:
        return any(w.group == "reply" and w.is_running for w in self.workers)

    def update_status(self) -> None:
        s = self.session
        if s is None:
            text = f"{self.door.default_model_name()} · {self.library.backend.name} · new chat"
        else:
            text = f"{s.model.name} · {s.backend.name} · {self.last_stats or 'ready'}"
        if self.server.running:
            text += f" · serving {self.server.url}"
        if self.tools_wanted:
            text += " · tools on"
        self.query_one("#status", Label).update(text)

    def refresh_chats(self, query: str | None = None) -> list[Chat]:
        if query is None:
            query = self.query_one("#search", Input).value
        try:
            chats = self.library.chats(query or "")
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return []
        self.query_one(ChatList).show(chats, self.session.chat_id if self.session else None)
        return chats

    async def open_chat(self, chat_id: int | None) -> None:
        """Show a saved chat, or (None) an empty one that starts with the first message."""
        if self.busy:
            self.notify("Stop the reply first (Esc).", severity="warning")
            return
        try:
            self.session = self.library.open(chat_id) if chat_id is not None else None
            await self.conversation.show_chat(self.library, chat_id)
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return
        self.last_stats = ""
        self.update_status()

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
            self.update_status()

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
            self.app.push_screen(ConfirmDialog(f"{warning} Load it anyway?", yes="Load anyway"),
                                 send)
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
        await self._tools_for(session)
        old: list[MessageView] = []
        if self.editing:
            self.editing = False
            old = self.conversation.last_turn()
            events = session.edit_last(prepared.content)
        else:
            events = session.send(prepared.content, title=prepared.question)
        await self.conversation.add(MessageView("user", prepared.content))
        await self._stream(events, old)

    async def _tools_for(self, session: ChatSession) -> None:
        """Give the session its tools (or take them away) as Ctrl+T last said."""
        if self.tools_wanted and session.toolbox is None:
            for problem in await self.library.with_tools(session):
                self.notify(problem, severity="warning", timeout=10)
            session.approve = self._approve
        elif not self.tools_wanted and session.toolbox is not None:
            await session.toolbox.close()
            session.toolbox = None

    async def _approve(self, call: ToolCall) -> str:
        """Ask before a tool runs: once, always in this chat, or not."""
        return await self.app.push_screen_wait(ChoiceDialog(
            f"The model wants to run {call.shown()}.",
            [("once", "Run it"), ("always", "Always in this chat"), ("deny", "Don't run")]))

    def action_tools(self) -> None:
        self.tools_wanted = not self.tools_wanted
        self.notify("Tools on: the model may read this folder (each call asks first)."
                    if self.tools_wanted else "Tools off.")
        self.update_status()

    @work(exclusive=True, group="reply")
    async def stream_reply(self, events: AsyncGenerator[ChatEvent, None],
                           replaces: list[MessageView]) -> None:
        await self._stream(events, replaces)

    async def _stream(self, events: AsyncGenerator[ChatEvent, None],
                      replaces: list[MessageView]) -> None:
        try:
            stats = await self.conversation.stream(events, replaces)
        finally:
            self.refresh_chats()
            session = self.session
            if session is not None and session.unsaved_note():
                self.notify(session.unsaved_note(), severity="error", timeout=15)
            if session is not None and session.left_out:
                self.notify(f"The {session.left_out} oldest messages were not sent: with "
                            "them, the context would be full.", severity="warning")
        if stats is not None and session is not None:
            used = stats.prompt_tokens + stats.generated_tokens
            drafted = f" · {stats.drafting()}" if stats.drafted_tokens else ""
            self.last_stats = (f"context {used}/{session.params.context_length} · "
                               f"{stats.decode_tps:.1f} tok/s{drafted}")
            self.update_status()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "reply" and event.worker.error is not None:
            self.notify(f"The reply failed: {event.worker.error}", severity="error")

    # -- the reply and the question -------------------------------------------------------------

    def action_stop(self) -> None:
        for worker in self.workers:
            if worker.group == "reply" and worker.is_running:
                worker.cancel()
                self.notify("Reply stopped.")

    async def action_new_chat(self) -> None:
        await self.open_chat(None)
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

    def action_copy_reply(self) -> None:
        replies = [v for v in self.conversation.query(MessageView) if v.role == "assistant"]
        if replies:
            replies[-1].action_copy_text()

    # -- the chat: its model, parameters, name, file --------------------------------------------

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
            self.update_status()
            self.refresh_chats()

        self.app.push_screen(ModelPicker([m.label for m in models], current), done)

    def action_params(self) -> None:
        session = self.session
        if session is None:
            self.notify("Send a first message to start a chat.", severity="warning")
            return

        def done(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            session.set_system_prompt(values.pop("system_prompt"))
            session.set_params(Params.from_dict(session.params.to_dict() | values))
            self.notify("Parameters saved with this chat.")

        self.app.push_screen(ParamsDialog(session.chat.system_prompt, session.params.to_dict()),
                             done)

    def action_rename(self) -> None:
        chat_id = self._target_chat()
        if chat_id is None:
            return
        title = self.library.chat(chat_id).title

        def done(value: str | None) -> None:
            if value is not None and value.strip():
                self.library.rename(chat_id, value)
                if self.session and self.session.chat_id == chat_id:
                    self.session.chat.title = value.strip()
                self.refresh_chats()

        self.app.push_screen(TextDialog("Rename chat", title), done)

    def action_delete(self) -> None:
        chat_id = self._target_chat()
        if chat_id is None:
            return
        title = self.library.chat(chat_id).title or "(untitled)"

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            self.library.delete(chat_id)
            if self.session and self.session.chat_id == chat_id:
                await self.action_new_chat()
            self.refresh_chats()
            self.notify(f"Deleted “{title}”.", markup=False)

        self.app.push_screen(ConfirmDialog(f"Delete the chat “{title}” and all its messages?"),
                             done)

    def _target_chat(self) -> int | None:
        """The chat highlighted in the list while the list has the focus, else the open one."""
        sidebar = self.query_one(ChatList)
        if sidebar.options.has_focus:
            return sidebar.highlighted_chat()
        return self.session.chat_id if self.session else sidebar.highlighted_chat()

    def action_export(self) -> None:
        if self.session is None:
            return
        path = self.library.export_markdown(self.session.chat_id)
        self.notify(f"Exported to {path}")

    # -- the chats list -------------------------------------------------------------------------

    def action_search(self) -> None:
        self.query_one("#search").focus()

    @on(ChatList.Chosen)
    async def _chosen(self, event: ChatList.Chosen) -> None:
        await self.open_chat(event.chat_id)
        self.query_one(PromptBox).focus()

    @on(ChatList.SearchChanged)
    def _search(self, event: ChatList.SearchChanged) -> None:
        self.refresh_chats(event.query)
