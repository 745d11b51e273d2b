"""The chat-management actions of the app: rename, delete, parameters, export, and the
chats list they refresh. A mixin of `TramontaneApp`, kept apart to keep each module short."""

from __future__ import annotations

from typing import Any

from textual.app import App

from app.engine.backend import Params
from app.errors import TramontaneError
from app.session.chat import ChatSession
from app.session.library import ChatLibrary
from app.ui.tui.dialogs import ConfirmDialog, ParamsDialog, TextDialog
from app.ui.tui.sidebar import ChatList


class ChatActions(App[None]):
    library: ChatLibrary
    session: ChatSession | None

    async def action_new_chat(self) -> None:
        raise NotImplementedError  # the app's own

    def _refresh_chats(self, query: str | None = None) -> list[Any]:
        if query is None:
            query = self.query_one("#search").value  # type: ignore[attr-defined]
        try:
            chats = self.library.chats(query or "")
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return []
        self.query_one(ChatList).show(chats, self.session.chat_id if self.session else None)
        return chats

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
                self._refresh_chats()

        self.push_screen(TextDialog("Rename chat", title), done)

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
            self._refresh_chats()
            self.notify(f"Deleted “{title}”.")

        self.push_screen(ConfirmDialog(f"Delete the chat “{title}” and all its messages?"), done)

    def _target_chat(self) -> int | None:
        sidebar = self.query_one(ChatList)
        if sidebar.options.has_focus:
            return sidebar.highlighted_chat()
        return self.session.chat_id if self.session else sidebar.highlighted_chat()

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

        self.push_screen(ParamsDialog(session.chat.system_prompt, session.params.to_dict()), done)

    def action_export(self) -> None:
        if self.session is None:
            return
        path = self.library.export_markdown(self.session.chat_id)
        self.notify(f"Exported to {path}")
