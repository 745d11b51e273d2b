"""Tramontane's own behaviour that fits a hook, registered through the same hooks as any plugin:
the `plugins` command, and the `/help` and `/system` slash commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from app.plugins.hookspecs import SlashCommand, SlashContext, hookimpl


@hookimpl
def register_commands(subparsers: argparse._SubParsersAction[Any], plugins: Any) -> None:
    p = subparsers.add_parser("plugins", help="list the plugins, their versions and hooks")
    psub = p.add_subparsers(dest="action", metavar="ACTION")
    psub.add_parser("list", help="every plugin found, loaded or not").add_argument(
        "--json", action="store_true")
    p.set_defaults(func=lambda args: _plugins_command(args, plugins), action="list", json=False)


def _plugins_command(args: argparse.Namespace, host: Any) -> int:
    infos = sorted(host.infos.values(), key=lambda i: (not i.builtin, i.name))
    if args.json:
        print(json.dumps([{"name": i.name, "version": i.version, "builtin": i.builtin,
                           "status": i.status, "hooks": i.hooks} for i in infos], indent=2))
        return 0
    for info in infos:
        kind = " (built in)" if info.builtin else ""
        print(f"{info.name} {info.version}{kind}: {info.status}")
        if info.hooks:
            print(f"    hooks: {', '.join(info.hooks)}")
    commands = host.slash_commands()
    if commands:
        print("slash commands: " + ", ".join(f"/{c.name} ({c.plugin})" for c in commands.values()))
    return 0


def _help(args: str, chat: SlashContext) -> str:
    lines = [f"/{c.name} {c.usage}".rstrip() + f" — {c.help}" for c in chat.commands()]
    chat.notice("\n".join(lines))
    return ""


def _system(args: str, chat: SlashContext) -> str:
    chat.set_system_prompt(args.strip())
    chat.notice("System prompt set." if args.strip() else "System prompt cleared.")
    return ""


@hookimpl
def register_slash_commands(register: Callable[[SlashCommand], None]) -> None:
    register(SlashCommand("help", "list the slash commands", _help))
    register(SlashCommand("system", "set this chat's system prompt (empty clears it)", _system,
                          usage="[TEXT]"))
