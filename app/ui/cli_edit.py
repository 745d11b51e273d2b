"""`tramontane edit FILE [--lines A-B | --line L] "INSTRUCTION"`: rewrite a range of a file by
instruction, as a unified diff (or written with --apply), for editors and scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.errors import TramontaneError
from app.session import edit
from app.session.complete import decode_text, read_text_file
from app.session.front import Tramontane
from app.session.placement import DoesNotFitError
from app.session.serving import KEY_VARIABLE


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("edit", help="change code by instruction (prints a diff; --apply writes)")
    p.add_argument("file", help="the file (with --stdin it names the buffer)")
    p.add_argument("instruction", help='what to change, e.g. "fix the off-by-one"')
    where = p.add_mutually_exclusive_group()
    where.add_argument("--lines", help="the range to change, A-B (1-based, inclusive)")
    where.add_argument("--line", type=int,
                       help="a line in the function, method or class to change (default: 1)")
    p.add_argument("-m", "--model", help="code model (default: [code] model)")
    p.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"])
    p.add_argument("--stdin", action="store_true", help="read the unsaved buffer from stdin")
    p.add_argument("--apply", action="store_true",
                   help="write the change to FILE (atomically; refused if FILE changed meanwhile)")
    p.add_argument("--json", action="store_true", help="the new text, the diff and the timings")
    p.add_argument("--stats", action="store_true", help="speed and drafted tokens on stderr")
    p.add_argument("--force", action="store_true",
                   help="load the model even when it does not fit this machine's memory")
    p.add_argument("--no-server", action="store_true",
                   help="load the model here even when `tramontane serve` is running")
    p.set_defaults(func=run)
    return p  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    text = decode_text(sys.stdin.buffer.read(), f"The buffer for {args.file}") if args.stdin \
        else read_text_file(path)
    if args.stdin and args.apply:
        raise TramontaneError("--apply writes FILE, but --stdin gave another text: use one.")
    if args.lines:
        start, end = edit.parse_lines(args.lines)
    else:
        start, end = edit.range_at(text, args.line or 1, str(path))
    where = edit.span(text, start, end)
    door = Tramontane.open(args.backend)
    door.speculation(args.speculative, args.draft_model)
    try:
        if not (args.no_server or args.force or args.model or args.backend):
            url = door.serving.running()  # its model is warm, and it proved it is ours
            if url:
                result = edit.through_server(url, os.environ.get(KEY_VARIABLE, ""),
                                             args.instruction, where, edit.shown(str(path)))
                return _report(args, path, text, result, server=url)
        session = door.code(args.model)
        if session.model.fit_warning and not args.force:
            raise DoesNotFitError(f"{session.model.fit_warning} Add --force to load it anyway.")
        try:
            result = asyncio.run(edit.run(session, args.instruction, where, edit.shown(str(path))))
        finally:
            asyncio.run(session.backend.unload())
    finally:
        door.close()
    return _report(args, path, text, result)


def _report(args: argparse.Namespace, path: Path, text: str, result: edit.EditResult,
            server: str = "") -> int:
    s = result.stats
    if args.stats:
        rate = f" · {s.drafting()}" if s.drafted_tokens else ""
        print(f"lines {result.span.start}-{result.span.end} · first token "
              f"{result.first_token_ms:.0f} ms · {s.generated_tokens} tok at "
              f"{s.decode_tps:.1f} tok/s{rate} · {result.elapsed_ms / 1000:.1f} s",
              file=sys.stderr)
    diff = edit.unified(text, result.new_text, edit.shown(str(path))) \
        if result.new_text is not None else ""
    if args.json:
        print(json.dumps({
            "file": str(path), "lines": [result.span.start, result.span.end],
            "applied": False if result.new_text is None else bool(args.apply),
            "code": result.answer.code, "answer": result.answer.text, "diff": diff,
            "new_text": result.new_text, "server": server or None,
            "stats": s.to_dict() | {"first_token_ms": round(result.first_token_ms, 1),
                                    "total_ms": round(result.elapsed_ms, 1)}}))
    if result.new_text is None:
        if not args.json:
            print(result.answer.text)
        print("tramontane: the answer is not code; nothing was changed.", file=sys.stderr)
        return 1
    if args.apply and diff:
        edit.apply(path, result.new_text, text)
        if not args.json:
            print(diff, end="")
            print(f"tramontane: wrote {path}", file=sys.stderr)
    elif not args.json:
        print(diff, end="")
        if not diff:
            print("tramontane: the model changed nothing.", file=sys.stderr)
    return 0
