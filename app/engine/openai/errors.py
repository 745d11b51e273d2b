"""What went wrong with an OpenAI-compatible server, in one line naming it."""

from __future__ import annotations

import json

import httpx
import openai


def _transport_errors() -> tuple[type[Exception], ...]:
    """What a broken connection raises: httpx's, and that of the httpx fork newer `openai`
    releases stream through (its errors can escape mid-stream, unwrapped)."""
    try:
        import httpx2
    except ImportError:
        return (httpx.HTTPError,)
    return (httpx.HTTPError, httpx2.HTTPError)


TRANSPORT = _transport_errors()


def explain(exc: BaseException, host: str, model: str = "") -> str:
    """One line for what went wrong talking to the server at `host`."""
    if isinstance(exc, openai.AuthenticationError):
        return (f"The server at {host} refused the API key (401). Set [openai] api_key "
                "or TRAMONTANE_OPENAI_API_KEY to a key it accepts.")
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The server at {host} does not allow this key to do that (403)."
    if isinstance(exc, openai.NotFoundError):
        return (f"The server at {host} has no model '{model}' (404). "
                "`tramontane models list --backend openai` lists what it serves.")
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException) or \
            type(exc).__name__.endswith("Timeout"):
        return (f"The server at {host} stopped sending. It may be loading a large "
                "model; raise [openai] first_token_timeout or read_timeout, or check it.")
    if isinstance(exc, openai.APIConnectionError | httpx.ConnectError):
        return (f"No OpenAI-compatible server is answering at {host}. Start it (e.g. "
                "`vllm serve`, `llama-server`), or set [openai] base_url.")
    if isinstance(exc, openai.APIStatusError):
        return f"The server at {host} answered {exc.status_code}: {detail(exc)}"
    if isinstance(exc, json.JSONDecodeError | ValueError):
        return f"The server at {host} sent an event that is not valid JSON; the reply " \
               "was cut there."
    if isinstance(exc, (*TRANSPORT, openai.APIError)):
        return f"The connection to {host} broke mid-reply ({type(exc).__name__})."
    return f"The server at {host} failed: {exc}"


def detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or inner)[:200]
        return str(inner)[:200]
    return str(exc.message)[:200]
