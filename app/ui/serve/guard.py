"""Who may use the local server, decided before any work (as Ollama decides it): on loopback,
only a `Host` that is this machine's own name (so DNS rebinding fails); a browser `Origin` only
from loopback pages, local files and editor webviews, or `[serve] allowed_origins`; and a JSON
content type on every body, so a web page cannot send a "simple" cross-site POST."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from app.session.serving import ServeSettings
from app.ui.serve.bodies import BadRequest

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
# origins a browser gives pages that are no web site's: local files and editor webviews
LOCAL_SCHEMES = ("file:", "vscode-webview:", "app:", "tauri:")


def _host_name(netloc: str) -> str:
    """'localhost:8012' -> 'localhost', '[::1]:8012' -> '::1'."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def refusal(request: Request, settings: ServeSettings) -> BadRequest | None:
    """Why a request from a web page (or to a name that is not this machine) is refused, as
    Ollama refuses them: before any work is done."""
    if settings.host in LOOPBACK_NAMES:
        host = _host_name(request.headers.get("host", ""))
        if host not in LOOPBACK_NAMES and host not in settings.allowed_hosts and \
                not host.endswith(".localhost"):
            return BadRequest(f"Host {host!r} is not this machine: add it to [serve] "
                              "allowed_hosts to serve it.", status=403)
    origin = request.headers.get("origin", "").strip().lower().rstrip("/")
    if origin and origin != "null":
        try:
            origin_host = urlsplit(origin).hostname or ""
        except ValueError:
            origin_host = ""
        local = origin_host in LOOPBACK_NAMES or origin.startswith(LOCAL_SCHEMES)
        if not local and origin not in settings.allowed_origins and \
                "*" not in settings.allowed_origins:
            return BadRequest(f"Origin {origin!r} may not use this server: add it to [serve] "
                              "allowed_origins to allow it.", status=403)
    elif origin == "null":
        return BadRequest("Pages with no origin (sandboxed frames) may not use this server.",
                          status=403)
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return BadRequest("Send the body as JSON, with `Content-Type: application/json`.",
                              status=415)
    return None
