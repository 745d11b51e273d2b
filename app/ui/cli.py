"""The `tramontane` command. Thin: each command is a few lines over a session call.

Exit codes: 0 ok, 1 a user-facing error (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app import __version__
from app.errors import TramontaneError
from app.plugins.manager import get_host
from app.session.front import config_warnings
from app.ui import (
    cli_chat,
    cli_complete,
    cli_edit,
    cli_history,
    cli_misc,
    cli_models,
    cli_serve,
    cli_tui,
)


def add_speculation(p: argparse.ArgumentParser) -> None:
    """`--speculative` and `--draft-model`, for chat, edit and serve."""
    p.add_argument("--speculative", choices=["auto", "off", "lookup", "draft"],
                   help="speculative decoding (default: [params] speculative)")
    p.add_argument("--draft-model", metavar="NAME|PATH",
                   help="the draft model: a name from `models list` or a .gguf of the same vocabulary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tramontane", description="Offline chat and code completion with local models."
    )
    parser.add_argument("--version", action="version", version=f"tramontane {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="chat with a model (one reply, or a REPL without PROMPT)")
    chat.add_argument("-m", "--model", help="catalog id, model name, or path to a .gguf")
    chat.add_argument("--system", help="system prompt for a new chat")
    chat.add_argument("--chat", type=int, metavar="ID", help="continue chat ID")
    chat.add_argument("--stats", action="store_true", help="print token counts and speed to stderr")
    chat.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"],
                      help="run on llama.cpp here, or on an Ollama server (default: config.toml)")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--top-p", type=float)
    chat.add_argument("--top-k", type=int)
    chat.add_argument("--repeat-penalty", type=float)
    chat.add_argument("--seed", type=int)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--ctx", type=int, dest="context_length", help="context length in tokens")
    chat.add_argument("--threads", type=int)
    chat.add_argument("--gpu-layers", type=int, metavar="N",
                      help="layers to offload to the GPU (default: as the fit verdict plans)")
    chat.add_argument("--force", action="store_true",
                      help="load the model even when it does not fit this machine's memory")
    shape = chat.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true",
                       help="the reply is one JSON object (enforced, then validated)")
    shape.add_argument("--schema", metavar="FILE|JSON",
                       help="the reply is JSON valid against this JSON Schema (a file or inline)")
    chat.add_argument("--tools", action="store_true",
                      help="let the model call tools: read-only tools over this folder and "
                           "[mcp.servers] (each call asks first)")
    chat.add_argument("--hide-thinking", action="store_true",
                      help="leave out a thinking model's reasoning (it is still saved)")
    add_speculation(chat)
    chat.add_argument("prompt", nargs="?", help="the question; - reads standard input")
    chat.set_defaults(func=cli_chat.run)

    ui = sub.add_parser("ui", help="open the app (the same as no command)")
    ui.add_argument("--chat", type=int, metavar="ID", help="open chat ID")
    ui.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"],
                    help="chat through this backend (default: [chat] backend)")
    ui.set_defaults(func=cli_tui.run)

    code = sub.add_parser("code", help="open a file in the code pane, with completion")
    code.add_argument("file")
    code.set_defaults(func=cli_tui.run)

    hist = sub.add_parser("history", help="list, show, export or delete saved chats")
    hsub = hist.add_subparsers(dest="action", metavar="ACTION", required=True)
    hlist = hsub.add_parser("list", help="saved chats, newest first")
    hlist.add_argument("--json", action="store_true")
    hlist.add_argument("--limit", type=int, default=200, help="the newest N chats (default 200)")
    hlist.add_argument("--all", action="store_true", help="every saved chat")
    show = hsub.add_parser("show", help="print one chat")
    show.add_argument("id", type=int)
    export = hsub.add_parser("export", help="export one chat")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["md", "json"], default="md")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--force", action="store_true", help="replace the -o file if it exists")
    delete = hsub.add_parser("delete", help="delete one chat")
    delete.add_argument("id", type=int)
    hist.set_defaults(func=cli_history.run)

    doctor = sub.add_parser("doctor", help="check this machine, the models and llama.cpp")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--quick", action="store_true",
                        help="skip re-measuring this machine's speed with the starters")
    doctor.add_argument("--recalibrate", action="store_true",
                        help="save the speed figures even when they predict slower than "
                        "those saved")
    doctor.set_defaults(func=cli_misc.doctor)
    tools = sub.add_parser("tools", help="the tools a chat may call here (folder and MCP)")
    tools.add_argument("--json", action="store_true")
    tools.set_defaults(func=cli_misc.tools)

    cli_models.add_parser(sub)
    cli_complete.add_parser(sub)
    add_speculation(cli_edit.add_parser(sub))
    add_speculation(cli_serve.add_parser(sub))
    get_host().call("register_commands", subparsers=sub, plugins=get_host())
    parser.set_defaults(commands=frozenset(sub.choices))
    return parser


def file_shortcut(argv: Sequence[str], commands: set[str]) -> list[str]:
    """`tramontane FILE` (as a file manager or the desktop entry calls it) means
    `tramontane code FILE`."""
    argv = list(argv)
    if len(argv) == 1 and argv[0] not in commands and not argv[0].startswith("-") \
            and Path(argv[0]).is_file():
        return ["code", argv[0]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    commands = set(parser.get_default("commands"))
    args = parser.parse_args(file_shortcut(sys.argv[1:] if argv is None else argv, commands))
    if args.command is None:
        args = parser.parse_args(["ui"])
    if args.command not in ("ui", "code"):  # the app shows these itself
        _report_plugins_on_stderr()
    if args.command not in ("ui", "code", "chat"):  # these show the config's warnings too
        for warning in config_warnings():
            print(f"tramontane: warning: {warning}", file=sys.stderr)
    try:
        return int(args.func(args))
    except TramontaneError as exc:
        print(f"tramontane: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except Exception as exc:
        owner = get_host().owner_of(args.func)
        if owner is None:
            raise
        get_host().fail(owner, f"its `{args.command}` command", exc)  # says so on stderr
        return 1


def _report_plugins_on_stderr() -> None:
    host = get_host()
    for message in host.reports:
        print(f"tramontane: {message}", file=sys.stderr)
    host.on_report = lambda message: print(f"tramontane: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
