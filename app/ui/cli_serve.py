"""`tramontane serve`: the warm local server editors and tools already speak."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.config import LOOPBACK
from app.errors import TramontaneError
from app.session.context import AppContext
from app.session.serving import ServeSession

KEY_VARIABLE = "TRAMONTANE_SERVE_API_KEY"


def add_parser(sub: Any) -> None:
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


def settings(ctx: AppContext, host: str | None = None, port: int | None = None,
             key: str | None = None) -> tuple[str, int, str]:
    """Host, port and key from the flags, then [serve], then the environment. Any address
    but this machine's own needs a key: the models and the history are the user's."""
    host = host or str(ctx.cfg.get("serve", "host") or "127.0.0.1")
    port = port or int(ctx.cfg.get("serve", "port") or 8012)
    key = key or str(ctx.cfg.get("serve", "api_key") or "") or os.environ.get(KEY_VARIABLE, "")
    if host not in LOOPBACK - {"0.0.0.0"} and not key:
        raise UsageError(f"Serving on {host} lets other machines use your models: give "
                         f"--api-key KEY (or {KEY_VARIABLE}), or serve on 127.0.0.1.")
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a port number.")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TramontaneError(f"Cannot listen on {host}:{port} ({exc.strerror}); is a "
                                  "server already running there? Pick another with --port.") \
                from exc
    return host, port, key


class UsageError(Exception):
    """A flag that cannot work: exit code 2, as argparse's own."""


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.ui.serve.routes import Server

    ctx = AppContext()
    ctx.backend_choice = args.backend
    try:
        host, port, key = settings(ctx, args.host, args.port, args.api_key)
    except UsageError as exc:
        print(f"tramontane: {exc}", file=sys.stderr)
        return 2
    serve = ServeSession.start(ctx, args.model, args.code_model)
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

    app = Server(serve, key).app()
    app.router.lifespan_context = lifespan
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        ctx.close()
    return 0


def running_server(ctx: AppContext) -> str:
    """The URL of a Tramontane server that answers now ("" when none): TRAMONTANE_SERVER or
    [serve] url (either "off" for never), else the default port on this machine."""
    import httpx

    url = os.environ.get("TRAMONTANE_SERVER") or str(ctx.cfg.get("serve", "url") or "")
    if url == "off":
        return ""
    url = (url or f"http://127.0.0.1:{ctx.cfg.get('serve', 'port') or 8012}").rstrip("/")
    try:
        answer = httpx.get(f"{url}/health", timeout=0.3).json()
    except (httpx.HTTPError, ValueError):
        return ""
    return url if isinstance(answer, dict) and answer.get("server") == "tramontane" else ""
