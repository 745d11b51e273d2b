"""`tramontane serve`: the warm local server editors and tools already speak."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.session.front import Tramontane
from app.session.serving import KEY_VARIABLE, UsageError


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="serve /infill (llama.vim, llama.vscode) and the OpenAI "
                                     "API (/v1) from warm models")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; any other needs "
                                  "--api-key)")
    p.add_argument("--port", type=int, help="port (default 8012, llama.vim's)")
    p.add_argument("--api-key", help=f"clients must send it as a Bearer token (or {KEY_VARIABLE})")
    p.add_argument("-m", "--model", help="chat model (default: [chat] model)")
    p.add_argument("--code-model", help="completion model (default: [code] model)")
    p.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"])
    p.set_defaults(func=run)
    return p  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.ui.serve.routes import Server

    door = Tramontane.open(args.backend)
    door.speculation(args.speculative, args.draft_model)
    try:
        settings = door.serving.settings(args.host, args.port, args.api_key)
    except UsageError as exc:
        print(f"tramontane: {exc}", file=sys.stderr)
        door.close()
        return 2
    host, port = settings.host, settings.port
    serve = door.serving.start(args.model, args.code_model)
    for warning in serve.fit_warnings():
        print(f"tramontane: warning: {warning}", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await serve.warm()
        print(f"Tramontane is serving on http://{shown}:{port} ({serve.backend_name}; code: "
              f"{serve.code.model.name}, chat: {serve.chat_model.name}). /infill for llama.vim "
              "and llama.vscode, /v1 for OpenAI clients. Ctrl+C stops it.", flush=True)
        yield
        await serve.close()

    secret = door.serving.write_token(port)
    app = Server(serve, settings, secret).app()
    app.router.lifespan_context = lifespan
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        door.serving.remove_token(port, secret)
        door.close()
    return 0
