"""`tramontane chat`: one streamed reply, or a line REPL."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from app.engine import structured
from app.engine.backend import Done, Error, Thought, Token
from app.engine.tools import ToolCall
from app.errors import TramontaneError
from app.session.chat import ChatSession
from app.session.chat_tools import ToolAsked, ToolDone
from app.session.front import Tramontane, remote_server
from app.session.placement import DoesNotFitError
from app.session.slash import ChatPrompt

_PARAM_FLAGS = ("temperature", "top_p", "top_k", "repeat_penalty", "seed", "max_tokens",
                "context_length", "threads", "gpu_layers")


def warn(door: Tramontane) -> None:
    for line in door.warnings:
        print(f"tramontane: warning: {line}", file=sys.stderr)


def open_session(door: Tramontane, args: argparse.Namespace) -> ChatSession:
    """The chat to talk in: a saved one (on the backend it was saved on), or a new one."""
    overrides: dict[str, object] = {k: getattr(args, k) for k in _PARAM_FLAGS
                                    if getattr(args, k) is not None}
    if args.schema is not None:
        overrides["json_schema"] = structured.load_schema(args.schema)
    elif args.json:
        overrides["json_schema"] = structured.ANY_OBJECT
    if args.chat is not None:
        session = door.chats.open(args.chat, args.model, overrides)
    else:
        session = door.chats.new(args.model, args.system, overrides)
    ref = session.model
    if ref.fit_warning and not args.force:
        session.drop_if_empty()
        raise DoesNotFitError(f"{ref.fit_warning} Add --force to load it anyway.")
    if ref.fit_warning:
        print(f"tramontane: warning: {ref.fit_warning}", file=sys.stderr)
    remote = remote_server(session.backend)
    if remote:
        print(f"tramontane: note: using {remote}, not this machine; your messages go there.",
              file=sys.stderr)
    if not ref.chat_tuned:
        print(f"tramontane: note: {ref.name} is a base model, not tuned for chat; "
              "replies may wander.", file=sys.stderr)
    return session


async def stream_reply(session: ChatSession, prompt: ChatPrompt, text: str,
                       show_stats: bool, hide_thinking: bool = False,
                       one_shot: bool = False) -> int:
    """Run a slash command or print one reply as it streams. 0 when it finished (or there was
    nothing to send), 1 on an error."""
    prepared = await prompt.prepare(text, session)
    for notice in prepared.notices:
        print(notice, file=sys.stderr)
    if prepared.content is None:
        return 0
    code = 0
    thinking = False
    async for event in session.send(prepared.content, title=prepared.question):
        match event:
            case Thought(piece):  # a thinking model's reasoning: on stderr, dimmed, apart
                if not hide_thinking:
                    if not thinking:
                        sys.stderr.write(_dim("[thinking] "))
                    thinking = True
                    sys.stderr.write(_dim(piece))
                    sys.stderr.flush()
                continue
            case ToolAsked(call):
                print(f"[tool] {call.shown()}", file=sys.stderr)
                continue
            case ToolDone(call, result, ran):
                said = f"{len(result.splitlines())} lines back" if ran else "not run"
                print(f"[tool] {call.name}: {said}", file=sys.stderr)
                continue
            case Token(piece):
                if thinking:
                    sys.stderr.write(_dim("\n[/thinking]") + "\n")
                    thinking = False
                sys.stdout.write(piece)
                sys.stdout.flush()
            case Done(stats):
                sys.stdout.write("\n")
                if stats.stop_reason in ("length", "context"):
                    print(f"[reply cut at {stats.stop_reason} limit]", file=sys.stderr)
                if show_stats:
                    print(stats.summary(), file=sys.stderr)
            case Error(message):
                sys.stdout.write("\n")
                sys.stdout.flush()
                print(f"tramontane: {message}", file=sys.stderr)
                code = 1
    sys.stdout.flush()
    note = session.unsaved_note(leaving=one_shot)
    if note:
        print(f"tramontane: {note}", file=sys.stderr)
        code = 1
    if session.left_out:
        print(f"tramontane: note: the {session.left_out} oldest messages of this chat were not "
              "sent: with them, the context would be full.", file=sys.stderr)
    await prompt.plugins.drain()
    return code


async def ask_to_run(call: ToolCall) -> str:
    """Whether to run a call: asked on the terminal; without one, no (say --tools with
    [tools] auto_approve to run tools from a script)."""
    if not sys.stdin.isatty():
        print(f"tramontane: {call.name} was not run: no terminal to ask on (list it in "
              "[tools] auto_approve to run it without asking).", file=sys.stderr)
        return "deny"
    answer = await asyncio.to_thread(
        input, f"Run {call.shown()}? [y]es once, [a]lways in this chat, [N]o: ")
    return {"y": "once", "yes": "once", "a": "always", "always": "always"}.get(
        answer.strip().lower(), "deny")


def _dim(text: str) -> str:
    return f"\x1b[2m{text}\x1b[0m" if sys.stderr.isatty() else text


def prompt_text(arg: str) -> str:
    """The question from the argument, or stdin for "-"; bytes that are not UTF-8 are a
    TramontaneError saying where, not a traceback."""
    if arg == "-":
        data = sys.stdin.buffer.read()
        label = "The question on standard input"
    else:
        data = os.fsencode(arg)  # the argument's bytes as the shell passed them
        label = "The question"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TramontaneError(f"{label} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                              "send UTF-8.") from exc


def run(args: argparse.Namespace) -> int:
    door = Tramontane.open(args.backend)
    door.speculation(args.speculative, args.draft_model)
    warn(door)
    try:
        session = open_session(door, args)
    except BaseException:
        door.close()
        raise
    prompt = ChatPrompt(door.plugins)
    for number in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl+C: the reply shown is saved
        signal.signal(number, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    with asyncio.Runner() as runner:
        try:
            runner.run(session.load())
            if args.tools or door.chats.tools_on:
                for problem in runner.run(door.chats.with_tools(session)):
                    print(f"tramontane: warning: {problem}", file=sys.stderr)
                session.approve = ask_to_run
            if args.prompt is not None:
                text = prompt_text(args.prompt)
                if not text.strip():
                    print("tramontane: the prompt is empty.", file=sys.stderr)
                    return 2
                try:
                    return runner.run(stream_reply(session, prompt, text, args.stats,
                                                   args.hide_thinking, one_shot=True))
                except KeyboardInterrupt:
                    print("\n[stopped]", file=sys.stderr)
                    return 130
            return repl(runner, session, prompt, args.stats, args.hide_thinking)
        finally:
            with contextlib.suppress(TramontaneError):
                session.drop_if_empty()  # a chat where nothing was said leaves no "(untitled)"
            if session.toolbox is not None:
                runner.run(session.toolbox.close())
            runner.run(door.unload())
            door.close()


def leave(session: ChatSession) -> int:
    """0, or 1 after saying exactly what of a reply the history could not take."""
    note = session.unsaved_note(leaving=True)
    if note:
        print(f"tramontane: {note}", file=sys.stderr)
    return 1 if note else 0


def repl(runner: asyncio.Runner, session: ChatSession, prompt: ChatPrompt, show_stats: bool,
         hide_thinking: bool = False) -> int:
    print(f"Chat {session.chat_id} with {session.model.name}. Ctrl+C stops a reply, "
          "Ctrl+D or /quit leaves, /help lists commands.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return leave(session)
        if line.strip() in ("/quit", "/exit"):
            return leave(session)
        if not line.strip():
            continue
        try:
            runner.run(stream_reply(session, prompt, line, show_stats, hide_thinking))
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
