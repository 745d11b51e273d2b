"""A chat: its history in the store, its model and parameters, and one reply at a time.

The reply is saved while it streams, at most half a second apart, so a process killed mid-reply
leaves the partial text in history.db, marked partial.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace

from app.engine import structured, tools
from app.engine.backend import (
    Backend,
    Done,
    Error,
    Event,
    Message,
    ModelRef,
    Params,
    Thought,
    Token,
)
from app.engine.tools import ToolCall
from app.errors import TramontaneError
from app.plugins.hookspecs import Attachment
from app.plugins.manager import PluginHost
from app.session.autosave import Autosave, stat_fields
from app.session.chat_tools import (
    MAX_TOOL_ROUNDS,
    ChatEvent,
    ToolAsked,
    Toolbox,
    ToolDone,
    stored_calls,
)
from app.store.history import Chat, ChatStore, title_from

CHARS_PER_TOKEN = 3  # a cautious estimate (code and English run 3.5 to 4 with these vocabularies)
TEMPLATE_TOKENS = 64  # the chat template's own tokens around the turns


def token_estimate(text: str) -> int:
    """A cautious count: ASCII at CHARS_PER_TOKEN, and a token for every other character
    (CJK, emoji and accented text run one or more tokens a character)."""
    wide = sum(1 for ch in text if ord(ch) > 127)
    return (len(text) - wide) // CHARS_PER_TOKEN + wide + 8

class ChatSession:
    def __init__(self, store: ChatStore, backend: Backend, chat: Chat, model: ModelRef,
                 params: Params, plugins: PluginHost | None = None) -> None:
        self.store = store
        self.backend = backend
        self.chat = chat
        self.model = model
        self.params = params
        self.plugins = plugins
        self.attachments: list[Attachment] = []  # from slash commands, sent with the next message
        self.left_out = 0  # older messages the last request could not fit
        self.unsaved: list[Autosave] = []  # replies the history could not take yet
        self.toolbox: Toolbox | None = None  # the tools this chat may call (None: none)
        self.approve: Callable[[ToolCall], Awaitable[str]] | None = None  # the face asks
        self.auto_approve: set[str] = set()  # tools that run without asking (config.toml)
        self.always: set[str] = set()  # tools the user allowed for the rest of this chat
        self.calls: list[ToolCall] = []  # the calls the last reply made
        self.think_time: Callable[[ModelRef, Params], float] | None = None  # see think_time

    @property
    def chat_id(self) -> int:
        return self.chat.id

    def history(self, leave_out: frozenset[int] = frozenset()) -> list[Message]:
        """The conversation sent to the model: system prompt, then every saved turn (but the
        messages `leave_out` names: a turn being replaced)."""
        out: list[Message] = []
        if self.chat.system_prompt:
            out.append(Message("system", self.chat.system_prompt))
        for msg in self.store.messages(self.chat.id):
            if msg.id in leave_out:
                continue
            if msg.tool_call_id:  # a tool's result
                out.append(Message("tool", msg.content, tool_call_id=msg.tool_call_id))
            elif msg.tool_calls:
                out.append(Message("assistant", "", stored_calls(msg.tool_calls)))
            elif msg.role in ("user", "assistant") and (msg.content or msg.role == "user"):
                out.append(Message(msg.role, msg.content))  # type: ignore[arg-type]
        return out

    def fit(self, messages: list[Message]) -> list[Message]:
        """The system prompt and as many of the latest turns as the context holds with room
        for the reply (an estimate: CHARS_PER_TOKEN): a chat whose history outgrew the context,
        or that holds one over-long message, goes on with its recent turns. `left_out` says
        how many older messages were not sent."""
        budget = self.room()
        system = messages[:1] if messages and messages[0].role == "system" else []
        turns = messages[len(system):]
        used = sum(token_estimate(m.content) for m in system)
        kept: list[Message] = []
        for m in reversed(turns):
            cost = token_estimate(m.content)
            if kept and used + cost > budget:
                break
            kept.append(m)
            used += cost
        kept.reverse()
        while len(kept) > 1 and kept[0].role != "user":  # a conversation starts with a question
            kept.pop(0)
        self.left_out = len(turns) - len(kept)
        return system + kept

    def room(self) -> int:
        """Tokens an attachment may take in this chat: the context but the reply's room."""
        return self.params.context_length - self.params.max_tokens - TEMPLATE_TOKENS

    async def load(self) -> None:
        await self.backend.load(self.model, self.params)

    def drop_if_empty(self) -> None:
        """Delete this chat if nothing was ever said in it (a start that failed)."""
        if not self.store.messages(self.chat.id):
            self.store.delete_chat(self.chat.id)

    async def send(self, text: str, title: str | None = None,
                   ) -> AsyncGenerator[ChatEvent, None]:
        """Save the question, stream the reply, and keep what arrives saved as it comes.
        `title` names a new chat when `text` starts with attached files."""
        self.store.add_message(self.chat.id, "user", text)
        if not self.chat.title:
            self.chat.title = title_from(title or text)
            self.store.update_chat(self.chat.id, title=self.chat.title)
        async for event in self._turns():
            yield event

    async def _turns(self, replaces: frozenset[int] = frozenset(),
                     ) -> AsyncGenerator[ChatEvent, None]:
        """Replies until one is not a tool call: each call is shown (`ToolAsked`), approved
        (or not) by the face's `approve`, run, and its result kept and sent back."""
        answered: set[str] = set()
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            self.calls = []
            last = round_ == MAX_TOOL_ROUNDS
            async for event in self._reply(replaces, tool_choice="none" if last else "auto"):
                yield event
            replaces = frozenset()
            if not self.calls:
                return
            if all(c.key() in answered for c in self.calls):
                self.calls = []  # a small model asking again for what it has: answer in text
                async for event in self._reply(tool_choice="none"):
                    yield event
                return
            for call in self.calls:
                yield ToolAsked(call)
                allowed = await self._allowed(call)
                result = await self.toolbox.run(call) if allowed and self.toolbox \
                    else "The user did not allow this call."
                saved = self.store.add_message(self.chat.id, "user", result)
                self.store.update_message(saved, tool_call_id=call.id)
                answered.add(call.key())
                yield ToolDone(call, result, allowed)

    async def _allowed(self, call: ToolCall) -> bool:
        if call.name in self.always or call.name in self.auto_approve:
            return True
        decision = await self.approve(call) if self.approve is not None else "deny"
        if decision == "always":
            self.always.add(call.name)
        return decision in ("once", "always")

    async def edit_last(self, text: str) -> AsyncGenerator[ChatEvent, None]:
        """Ask `text` instead of the last question. The old question and its reply stay until
        the new reply is complete (a failed or stopped one leaves both turns)."""
        msgs = self.store.messages_page(self.chat.id, None, 2)
        last_user = next((m for m in reversed(msgs) if m.role == "user"), None)
        old = frozenset(m.id for m in msgs if last_user is not None and m.id >= last_user.id)
        self.store.add_message(self.chat.id, "user", text)
        async for event in self._turns(replaces=old):
            yield event

    def last_question(self) -> str:
        msgs = self.store.messages_page(self.chat.id, None, 2)
        return next((m.content for m in reversed(msgs) if m.role == "user"), "")

    def set_system_prompt(self, text: str) -> None:
        self.chat.system_prompt = text
        self.store.update_chat(self.chat.id, system_prompt=text)

    def set_params(self, params: Params) -> None:
        self.params = params
        self.chat.params = params.to_dict()
        self.store.update_chat(self.chat.id, params=self.chat.params)

    def switch_model(self, model: ModelRef, stored_name: str) -> None:
        """Use another model for this chat from the next reply on."""
        self.model = model
        self.chat.model = stored_name
        self.store.update_chat(self.chat.id, model=stored_name)

    async def regenerate(self) -> AsyncGenerator[ChatEvent, None]:
        """Ask again for the last reply. The old reply stays until the new one is complete
        (a failed or stopped one leaves both)."""
        msgs = self.store.messages_page(self.chat.id, None, 1)
        old = frozenset([msgs[-1].id]) if msgs and msgs[-1].role == "assistant" else frozenset()
        async for event in self._turns(replaces=old):
            yield event

    def retry_unsaved(self) -> bool:
        """Try again to save the replies a full disk or a lock kept out; True when none is
        left."""
        self.unsaved = [s for s in self.unsaved if not s.retry()]
        return not self.unsaved

    def unsaved_note(self, leaving: bool = False) -> str:
        """What was kept, and where, when a reply could not be saved ("" when all were).
        `leaving`: the face is about to exit, so one last try, then exactly what is lost."""
        if leaving:
            self.retry_unsaved()
        if not self.unsaved:
            return ""
        size = sum(len(s.text) for s in self.unsaved)
        if leaving:
            kept = sum(s.saved_chars for s in self.unsaved)
            return (f"{self.unsaved[-1].problem} The reply ({size:,} characters) was shown, "
                    f"but the history (chat {self.chat.id}) holds only its first {kept:,}; the "
                    "rest is lost when this command ends.")
        return (f"{self.unsaved[-1].problem} The reply ({size:,} characters) is complete on "
                "screen and kept in memory; it is saved as soon as the history can be written "
                "(tried again with each message). Only the start saved before the failure is in "
                "the history now.")

    def _save_failed(self, saver: Autosave) -> None:
        if saver not in self.unsaved:
            self.unsaved.append(saver)

    async def answer(self, messages: list[Message]) -> AsyncGenerator[Event, None]:
        """Reply to a conversation a client sent whole (`serve`'s /v1/chat/completions): its
        turns were saved when the chat was made; the reply is saved as it streams."""
        async for event in self._reply(messages=messages):
            yield event

    async def _reply(self, replaces: frozenset[int] = frozenset(),
                     messages: list[Message] | None = None,
                     tool_choice: str = "none") -> AsyncGenerator[Event, None]:
        """Stream a reply (to the saved history, or to `messages`) to the history; once it is
        complete, the messages `replaces` names (an old turn) are deleted, and not before."""
        self.retry_unsaved()
        if messages is None:
            messages = self.fit(self.history(leave_out=replaces))
        reply_id = self.store.add_message(self.chat.id, "assistant", "", state="partial")
        saver = Autosave(self.store, reply_id)
        finished = False
        try:
            try:
                await self.backend.load(self.model, self.params)
            except TramontaneError as exc:
                finished = True
                self._failed(saver, str(exc), retry=bool(replaces))
                yield Error(str(exc))
                return
            async with aclosing(self._stream(messages, tool_choice)) as stream:
                async for event in stream:
                    match event:
                        case Token(text):
                            saver.append(text)
                        case Thought(text):
                            saver.think(text)
                        case Done(stats):
                            finished = True
                            state = "partial" if stats.stop_reason == "cancelled" else "complete"
                            if not saver.finish(state, **stat_fields(stats)):
                                self._save_failed(saver)
                                state = "unsaved"  # the old turn stays until this one is saved
                            if state == "complete":
                                for message_id in replaces:
                                    self.store.delete_message(message_id)
                            if state == "complete" and tool_choice != "none":
                                self._take_calls(reply_id, saver.text)
                            if state == "complete" and self.plugins is not None:
                                self.plugins.notify(
                                    "reply_finished", chat_id=self.chat.id,
                                    question=messages[-1].content if messages else "",
                                    reply=saver.text, stats=stats.to_dict())
                        case Error(message):
                            finished = True
                            self._failed(saver, message, retry=bool(replaces))
                    yield event
        finally:
            if not finished and not saver.finish("partial"):
                self._save_failed(saver)


    def _failed(self, saver: Autosave, message: str, retry: bool = False) -> None:
        """A reply that failed is kept with its error, but a retry of an old turn (regenerate,
        edit) that failed with nothing in it is not kept at all: the old turn stays, and a
        backend that is down must not add an empty reply beside it."""
        if retry and not saver.text and not saver.thoughts:
            try:
                self.store.delete_message(saver.message_id)
                return
            except TramontaneError:
                pass  # kept as an error below, if the history takes that
        if not saver.finish("error", error=message):
            self._save_failed(saver)

    def _stream(self, messages: list[Message], tool_choice: str) -> AsyncGenerator[Event, None]:
        """The backend's reply (offering the chat's tools under `tool_choice`); one that must be
        JSON is checked before it counts as done."""
        params = self.params
        if params.think_budget_s <= 0 and self.think_time is not None:
            params = replace(params, think_budget_s=self.think_time(self.model, params))
        if self.toolbox is not None and self.toolbox.tools:
            params = replace(params, tools=tools.to_json(self.toolbox.tools),
                             tool_choice=tool_choice)
        events = self.backend.chat(messages, params)
        return structured.checked(events, params.json_schema) if params.json_schema \
            else events

    def _take_calls(self, reply_id: int, text: str) -> None:
        """A reply that is a call: its calls kept with it, for `_turns` to run."""
        found = tools.parse(text) or []
        offered = {t.name for t in self.toolbox.tools} if self.toolbox else set()
        self.calls = [c for c in found if c.name in offered]
        if self.calls:
            self.store.update_message(reply_id, tool_calls=json.dumps(
                [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.calls]))
