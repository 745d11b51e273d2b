"""`tramontane history list|show|export|delete`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from app.atomic import atomic_write
from app.errors import TramontaneError
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
                out = Path(args.output).expanduser()
                if out.exists() and out.resolve() in _own_files(ctx):
                    raise TramontaneError(f"{out} is Tramontane's own data; export to another "
                                          "file.")
                if not out.parent.is_dir():
                    raise TramontaneError(f"There is no folder {out.parent} to export into.")
                try:
                    atomic_write(out, text, mode=0o600)
                except OSError as exc:
                    raise TramontaneError(f"Could not write {out}: {exc.strerror or exc}.") from exc
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


def _own_files(ctx: AppContext) -> set[Path]:
    """Files an export must never replace: the history and its WAL, config.toml."""
    db = ctx.paths.history_db
    return {f.resolve() for f in (db, db.with_name(db.name + "-wal"),
                                  db.with_name(db.name + "-shm"), ctx.paths.config_file)}
