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
from app.session.front import Tramontane


def run(args: argparse.Namespace) -> int:
    door = Tramontane.open()
    try:
        library = door.chats
        if args.action == "list":
            limit = 0 if args.all else max(1, args.limit)
            chats = library.chats(limit=limit)
            total = library.count() if limit and len(chats) == limit else len(chats)
            if total > len(chats):
                print(f"Showing the newest {len(chats)} of {total} chats; --all lists every one.",
                      file=sys.stderr)
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
            sys.stdout.write(library.markdown(args.id))
            return 0
        if args.action == "export":
            text = library.json(args.id) if args.format == "json" else library.markdown(args.id)
            if args.output:
                out = Path(args.output).expanduser()
                if out.exists() and out.resolve() in library.own_files():
                    raise TramontaneError(f"{out} is Tramontane's own data; export to another "
                                          "file.")
                if (out.exists() or out.is_symlink()) and not args.force:
                    raise TramontaneError(f"{out} already exists; add --force to replace it.")
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
            library.delete(args.id)
            print(f"Deleted chat {args.id}.", file=sys.stderr)
            return 0
    finally:
        door.close()
    return 2
