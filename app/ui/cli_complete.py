"""`tramontane complete FILE --line L --col C`: fill in the middle at a cursor, for editors."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.engine.backend import printable
from app.errors import TramontaneError
from app.session.complete import CompletionSession, decode_text, read_text_file, split_at
from app.session.front import Tramontane
from app.session.placement import DoesNotFitError
from app.session.serving import KEY_VARIABLE


def add_parser(sub: Any) -> None:
    p = sub.add_parser("complete", help="complete code at a cursor (fill in the middle)")
    p.add_argument("file", help="the file (with --stdin it names the buffer and need not exist)")
    p.add_argument("--line", type=int, required=True, help="1-based line, as Vim's line('.')")
    p.add_argument("--col", type=int, required=True,
                   help="1-based byte column, as Vim's col('.'): the cursor is before it")
    p.add_argument("-m", "--model", help="code model (default: [code] model, else chat model)")
    p.add_argument("--stdin", action="store_true", help="read the unsaved buffer from stdin")
    p.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"],
                   help="default: [chat] backend in config.toml")
    p.add_argument("--json", action="store_true", help="text, timings and cached tokens as JSON")
    p.add_argument("--max-tokens", type=int, help="default: [code] max_tokens (64)")
    p.add_argument("--force", action="store_true",
                   help="load the model even when it does not fit this machine's memory")
    p.add_argument("--show-prompt", action="store_true",
                   help="print the exact prompt to stderr, then complete")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact prompt to stdout (nothing else) and load nothing")
    p.add_argument("--no-server", action="store_true",
                   help="load the model here even when `tramontane serve` is running")
    p.set_defaults(func=run)


def _through_server(url: str, prefix: str, suffix: str, args: argparse.Namespace) -> int:
    """The suggestion from a running `tramontane serve` (its model is warm): /infill, as an
    editor would ask, with the file's path for its format and plugins."""
    import httpx

    body = {"input_prefix": prefix, "input_suffix": suffix, "filename": os.path.abspath(args.file)}
    if args.max_tokens is not None:
        body["n_predict"] = args.max_tokens  # else the server's own [code] max_tokens
    key = os.environ.get(KEY_VARIABLE, "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        answer = httpx.post(f"{url}/infill", json=body, headers=headers, timeout=120).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise TramontaneError(f"The server at {url} failed: {exc}. Add --no-server to "
                              "complete in this process.") from exc
    if not isinstance(answer, dict):
        raise TramontaneError(f"The server at {url} answered something that is not a "
                              "completion. Add --no-server to complete in this process.")
    if "error" in answer:
        error = answer["error"]
        said = error.get("message") if isinstance(error, dict) else error
        raise TramontaneError(f"The server at {url}: {printable(str(said))}")
    answer["content"] = printable(str(answer.get("content", "")))
    t = answer.get("timings")
    answer["timings"] = t if isinstance(t, dict) else {}
    if args.json:
        t = answer["timings"]
        _print_json(text=answer.get("content", ""), raw=None, model=answer.get("model", ""),
                    format=None, backend="server", fim="server", server=url, context_files=[],
                    prompt_tokens=answer.get("tokens_evaluated"),
                    cached_tokens=answer.get("tokens_cached"),
                    generated_tokens=answer.get("tokens_predicted"),
                    first_token_ms=t.get("prompt_ms"), total_ms=None,
                    tokens_per_s=t.get("predicted_per_second"))
    else:
        sys.stdout.write(str(answer.get("content", "")))
    return 0


def _print_json(**fields: Any) -> None:
    """`complete --json`: one shape, in-process or through a server (None: not known there)."""
    timings = {k: fields.pop(k) for k in ("first_token_ms", "total_ms", "tokens_per_s")}
    print(json.dumps({**fields, "timings": timings}))


def _buffer(args: argparse.Namespace) -> str:
    if not args.stdin:
        return read_text_file(Path(args.file))
    return decode_text(sys.stdin.buffer.read(), f"The buffer for {args.file}")


def run(args: argparse.Namespace) -> int:
    text = _buffer(args)
    prefix, suffix = split_at(text, args.line, args.col)
    door = Tramontane.open(args.backend)
    try:
        if not (args.no_server or args.show_prompt or args.dry_run or args.force) and \
                not door.uses_server:
            url = door.serving.running()
            if url:
                return _through_server(url, prefix, suffix, args)
        session = door.code(args.model, args.max_tokens)
        if session.model.fit_warning and not args.force:  # only llama.cpp's places models
            raise DoesNotFitError(f"{session.model.fit_warning} Add --force to load it anyway.")
        return asyncio.run(_complete(session, prefix, suffix, args))
    finally:
        door.close()


async def _complete(session: CompletionSession, prefix: str, suffix: str,
                    args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    session.touched(path, "edited", prefix + suffix)
    if session.plugins is not None:  # each call is a new process: let plugins see it first
        await session.plugins.drain()
    try:
        sent = None
        if args.show_prompt or args.dry_run or args.json:
            sent = await session.preview(prefix, suffix, path)  # exactly what will be sent
        if sent is not None and (args.show_prompt or args.dry_run):
            shown = sent.prompt if sent.suffix is None else \
                f"{sent.prompt}\n--- suffix ({sent.mode}) ---\n{sent.suffix}"
            if args.dry_run:
                sys.stdout.write(shown)
                return 0
            sys.stderr.write(shown + "\n---\n")
        result = await session.complete(prefix, suffix, path, again=sent is not None)
    finally:
        await session.backend.unload()
    if args.json:
        s = result.stats
        _print_json(text=result.text, raw=result.raw, model=session.model.name,
                    format=session.model.fim_format, backend=session.backend.name,
                    fim=sent.mode if sent else "prompt", server=None,
                    context_files=[c.path for c in session.last_extra],
                    prompt_tokens=s.prompt_tokens, cached_tokens=s.cached_tokens,
                    generated_tokens=s.generated_tokens, first_token_ms=round(s.ttft_ms, 1),
                    total_ms=round(result.elapsed_ms, 1), tokens_per_s=round(s.decode_tps, 1))
    else:
        sys.stdout.write(result.text)
    return 0
