"""What a plugin can hook into. A plugin module (or object) marks its functions with `hookimpl`
and names them after the specs below; it only needs the arguments it uses.

Hooks that run while the app is open (everything but `register_commands`) run in a thread with
a time limit, so a slow plugin cannot freeze the screen; one that raises is reported once and
disabled for the rest of the session.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pluggy

from app.atomic import atomic_write
from app.engine.backend import ContextChunk
from app.files import FileRefused, NotTextError, outside, read_text, safe_git
from app.sizes import file_size

# What plugin authors import: the hook markers and types, and the app's one safe text-file
# reader and one atomic writer, so a plugin reads and saves files as the app does.
__all__ = ["Attachment", "ContextChunk", "FileRefused", "NotTextError", "SlashCommand",
           "SlashContext", "atomic_write", "file_size", "hookimpl", "hookspec", "outside",
           "read_text", "safe_git"]

PROJECT = "tramontane"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Attachment:
    """Text that goes with a chat message: a file, a folder listing, a note."""

    label: str  # what the model and the user see as its name, e.g. a path
    text: str
    language: str = ""  # for the code fence


class SlashContext(Protocol):
    """What a slash command can do to the chat it was typed in."""

    chat_id: int
    cwd: str

    def attach(self, attachment: Attachment) -> None:
        """Send this text along with the next message."""

    def notice(self, text: str) -> None:
        """Tell the user something (shown, never sent to the model)."""

    def set_system_prompt(self, text: str) -> None: ...

    def commands(self) -> list[SlashCommand]: ...


@dataclass(frozen=True)
class SlashCommand:
    """`/name ARGS` typed at the start of the prompt. `run(args, chat)` returns the text still to
    send as the message (empty: nothing to send now)."""

    name: str
    help: str
    run: Callable[[str, SlashContext], str]
    usage: str = ""
    plugin: str = field(default="", compare=False)


class Specs:
    @hookspec
    def register_commands(self, subparsers: argparse._SubParsersAction[Any], plugins: Any) -> None:
        """Called once when the `tramontane` command builds its parser. Add a sub-command with
        `subparsers.add_parser(...)` and `set_defaults(func=run)`; `run(args)` returns the exit
        code. `plugins` is the PluginHost, for commands about plugins."""

    @hookspec
    def register_slash_commands(self, register: Callable[[SlashCommand], None]) -> None:
        """Called once when a chat prompt opens (the app or `tramontane chat`). Call
        `register(SlashCommand(...))` for each command."""

    @hookspec
    def chat_context(self, text: str, chat_id: int, cwd: str) -> list[Attachment] | None:
        """Called before each chat message is sent, with what the user typed. Return text to
        send along with it (saved in the chat as part of the message)."""

    @hookspec
    def fim_context(self, path: str, prefix: str, suffix: str,
                    cursor: tuple[int, int]) -> list[ContextChunk] | None:
        """Called before each completion the model is asked for (not for cached ones), with the
        file, the text around the cursor and the cursor as (line, column), 0-based. Return
        chunks of other files, most useful first; what fits the context is used."""

    @hookspec
    def file_touched(self, path: str, event: str, text: str) -> None:
        """Called when the user opens ("opened"), saves ("saved") or completes in ("edited") a
        file, with its text."""

    @hookspec
    def reply_finished(self, chat_id: int, question: str, reply: str,
                       stats: dict[str, Any]) -> None:
        """Called after a reply has finished streaming (not when it was stopped or failed)."""
