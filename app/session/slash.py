"""What the user types at a chat prompt, made into a message: `/name args` runs a slash command
(from a plugin or built in), and the attachments it left plus what `chat_context` plugins add
go with the question."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from app.plugins.hookspecs import Attachment, SlashCommand
from app.plugins.manager import PluginHost
from app.session.chat import ChatSession, token_estimate

SLASH_TIMEOUT_S = 10.0
CONTEXT_TIMEOUT_S = 5.0
_COMMAND = re.compile(r"/([A-Za-z][\w-]*)(?=\s|$)")


@dataclass
class Prepared:
    """The message to send (None: nothing to send now) and what to tell the user."""

    content: str | None
    question: str = ""
    notices: list[str] = field(default_factory=list)
    refused: bool = False  # a command that did nothing: the typed text stays for fixing


@dataclass
class _Context:
    """A SlashContext: what one slash command did, applied on the app's thread afterwards."""

    chat_id: int
    cwd: str
    known: list[SlashCommand]
    attached: list[Attachment] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    system_prompt: str | None = None

    def attach(self, attachment: Attachment) -> None:
        self.attached.append(attachment)

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def set_system_prompt(self, text: str) -> None:
        self.system_prompt = text

    def commands(self) -> list[SlashCommand]:
        return list(self.known)


def split_command(text: str) -> tuple[str, str] | None:
    """("name", "args") when the text starts with a slash command, else None. A path such as
    /usr/bin is a question, not a command."""
    found = _COMMAND.match(text)
    return (found.group(1), text[found.end():].strip()) if found else None


def fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return ticks


def with_attachments(question: str, attachments: list[Attachment]) -> str:
    """The message the model sees: each attachment in a fenced block, then the question."""
    parts = []
    for a in attachments:
        f = fence(a.text)
        parts.append(f"{a.label}:\n{f}{a.language}\n{a.text.rstrip()}\n{f}")
    return "\n\n".join(parts + [question])


class ChatPrompt:
    def __init__(self, plugins: PluginHost, cwd: str | None = None) -> None:
        self.plugins = plugins
        self.cwd = cwd or os.getcwd()
        self.commands = plugins.slash_commands()

    async def prepare(self, text: str, session: ChatSession) -> Prepared:
        out = Prepared(None)
        split = split_command(text)
        if split is not None:
            name, args = split
            cmd = self.commands.get(name)
            if cmd is None:
                out.notices.append(f"/{name} is not a command here; /help lists them.")
                return out
            ctx = _Context(session.chat_id, self.cwd, list(self.commands.values()))
            rest = await self.plugins.guarded(cmd.plugin, f"/{name}",
                                              lambda: cmd.run(args, ctx), SLASH_TIMEOUT_S)
            if rest is None and self.plugins.is_stuck(cmd.plugin):
                # still running in its thread: whatever it attaches from now on is dropped
                out.notices.append(f"/{name} took too long; nothing it found was attached.")
                return out
            out.notices += ctx.notices
            if ctx.system_prompt is not None:
                session.set_system_prompt(ctx.system_prompt)
            fitting = _within_context(ctx.attached, session, out.notices)
            if len(fitting) < len(ctx.attached) and not fitting:
                out.refused = True  # the typed line goes back to the box
                return out
            session.attachments += fitting
            text = rest if isinstance(rest, str) else ""
            if not text.strip():
                if session.attachments:
                    names = ", ".join(a.label for a in session.attachments)
                    out.notices.append(f"Attached {names}; it goes with your next message.")
                else:
                    out.refused = not ctx.attached and ctx.system_prompt is None and \
                        any("Nothing was sent" in n for n in ctx.notices)
                return out
        extra = await self.plugins.acall("chat_context", CONTEXT_TIMEOUT_S, text=text,
                                         chat_id=session.chat_id, cwd=self.cwd)
        attachments = session.attachments + [a for found in extra for a in found
                                             if isinstance(a, Attachment)]
        session.attachments = []
        out.content = with_attachments(text, attachments)
        out.question = text
        return out


def _within_context(attached: list[Attachment], session: ChatSession,
                    notices: list[str]) -> list[Attachment]:
    """The attachments this chat's context can take with what is already attached; each
    other one is left out with a line saying how big it is against what the chat holds."""
    room = session.room() - sum(token_estimate(a.text) for a in session.attachments)
    kept = []
    for a in attached:
        need = token_estimate(a.text)
        if need > room:
            notices.append(
                f"{a.label} is about {need:,} tokens, more than this chat has room for "
                f"({max(room, 0):,} of its {session.params.context_length:,}-token context, "
                "with room for the reply), so it was not attached. Attach a part of it, or "
                "raise the context length (F3, or --ctx).")
            continue
        kept.append(a)
        room -= need
    return kept
