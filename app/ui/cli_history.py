"""`tramontane history list|show|export|delete`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from app.session.context import AppContext


def run(args: argparse.Namespace) -> int:
    ctx = AppContext()
    try:
        store = ctx.store
        if args.action == "list":
            chats = store.chats()
            if args.json:
                print(json.dumps([asdict(c) for c in chats], indent=2))
                return 0
            for chat in chats:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.updated_at))
                print(f"{chat.id:>5}  {when}  {chat.model[:28]:<28}  {chat.title or '(untitled)'}")
            if not chats:
                print("No saved chats yet. Start one with `tramontane chat`.", file=sys.stderr)
            return 0
        if args.action == "show":
            sys.stdout.write(store.export_markdown(args.id))
            return 0
        if args.action == "export":
            text = store.export_json(args.id) if args.format == "json" else store.export_markdown(args.id)
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(f"Wrote chat {args.id} to {args.output}", file=sys.stderr)
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            return 0
        if args.action == "delete":
            store.delete_chat(args.id)
            print(f"Deleted chat {args.id}.", file=sys.stderr)
            return 0
    finally:
        ctx.close()
    return 2
