"""The routes of `tramontane serve`, on Starlette (the ASGI toolkit FastAPI is built on, served
by uvicorn): llama.cpp's `/infill` as llama.vim and llama.vscode call it, the OpenAI API's
`/v1/models`, `/v1/chat/completions` and `/v1/completions` (streamed as server-sent events or
not), and `/health`.

Every request is checked before it costs anything: who is asking (guard.py), the key (when
the server has one), the body size, the JSON and each field. A client that goes away
(llama.vim kills its curl on every keystroke) cancels its generation at once: the work runs
beside a watch on the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app import __version__
from app.engine.backend import Done, Error, Params, Stats, Token
from app.errors import TramontaneError
from app.session.complete import Completion
from app.session.serving import ServeSession, ServeSettings, proof
from app.ui.serve import bodies
from app.ui.serve.bodies import BadRequest
from app.ui.serve.guard import refusal

log = logging.getLogger("tramontane.serve")
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, the logs do


async def read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bodies.MAX_BODY:
        raise BadRequest(f"The body is over {bodies.MAX_BODY // 2**20} MiB.", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bodies.MAX_BODY:
            raise BadRequest(f"The body is over {bodies.MAX_BODY // 2**20} MiB.", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None as soon as the client disconnects (the work is cancelled,
    which stops the generation in the worker)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def detached(events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """`events`, generated in a task of their own. A streaming response that loses its client
    is cancelled by Starlette's task group, which cancels every await after it too, so the
    backend could not even tell its worker to stop (it would kill it, and the next request
    would reload the model); here the generation is cancelled once, and stops cleanly."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=64)

    async def run() -> None:
        try:
            async with aclosing(events) as stream:  # type: ignore[type-var]
                async for event in stream:
                    await queue.put((False, event))
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((True, None))

    task = asyncio.ensure_future(run())
    try:
        while True:
            done, event = await queue.get()
            if done:
                break
            yield event
    finally:
        task.cancel()  # not awaited: the backend's lock holds the next request until it stops


def timings(stats: Stats, elapsed_ms: float) -> dict[str, Any]:
    """llama-server's `timings` from our stats."""
    prompt_n = max(0, stats.prompt_tokens - stats.cached_tokens)
    prompt_ms = stats.ttft_ms
    predicted_ms = max(0.0, (stats.total_ms or elapsed_ms) - stats.ttft_ms)
    n = stats.generated_tokens
    return {"prompt_n": prompt_n, "prompt_ms": round(prompt_ms, 3),
            "prompt_per_token_ms": round(prompt_ms / prompt_n, 3) if prompt_n else 0.0,
            "prompt_per_second": round(prompt_n / prompt_ms * 1000, 3) if prompt_ms else 0.0,
            "predicted_n": n, "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": round(predicted_ms / n, 3) if n else 0.0,
            "predicted_per_second": round(stats.decode_tps, 3),
            **({"draft_n": stats.drafted_tokens, "draft_n_accepted": stats.accepted_tokens}
               if stats.drafted_tokens else {})}


class Server:
    """The routes around one ServeSession."""

    def __init__(self, serve: ServeSession, settings: ServeSettings, secret: str = "") -> None:
        self.serve = serve
        self.settings = settings
        self.api_key = settings.key
        self.secret = secret  # proves to `complete` that this server is the user's own

    def app(self) -> Starlette:
        guard = self.guard
        return Starlette(routes=[
            Route("/health", guard(self.health, auth=False), methods=["GET"]),
            Route("/infill", guard(self.infill), methods=["POST"]),
            Route("/v1/models", guard(self.models), methods=["GET"]),
            Route("/models", guard(self.models), methods=["GET"]),
            Route("/v1/chat/completions", guard(self.chat), methods=["POST"]),
            Route("/v1/completions", guard(self.completions), methods=["POST"]),
        ])

    def guard(self, handler: Handler, auth: bool = True) -> Handler:
        """The key check, and every refusal or failure as a JSON error."""

        async def guarded(request: Request) -> Response:
            try:
                refused = refusal(request, self.settings)
                if refused is not None:
                    raise refused
                if auth and self.api_key:
                    given = request.headers.get("authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                        raise BadRequest("A valid API key is needed: send "
                                         "`Authorization: Bearer KEY`.", status=401)
                return await handler(request)
            except BadRequest as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            except TramontaneError as exc:
                return JSONResponse({"error": {"message": str(exc), "type": "server_error",
                                               "code": 503}}, status_code=503)
            except Exception as exc:  # nothing a client sends may take the server down
                log.exception("request failed")
                return JSONResponse({"error": {"message": f"Internal error: {exc}",
                                               "type": "server_error", "code": 500}},
                                    status_code=500)

        return guarded

    async def health(self, request: Request) -> Response:
        answer: dict[str, Any] = {"status": "ok", "server": "tramontane",
                                  "version": __version__, "backend": self.serve.backend_name,
                                  "models": self.serve.model_names()}
        nonce = request.query_params.get("nonce", "")
        if nonce and self.secret and len(nonce) <= 128:
            answer["proof"] = proof(self.secret, nonce)
        return JSONResponse(answer)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "tramontane"}
            for name in self.serve.model_names()]})

    # -- /infill --------------------------------------------------------------------------

    async def infill(self, request: Request) -> Response:
        req = bodies.infill(bodies.parse_json(await read_body(request)),
                            self.serve.code.params.max_tokens, self.serve.code.params)
        s = req.sampling
        params = self.serve.code_params(max_tokens=s.max_tokens, temperature=s.temperature,
                                        top_p=s.top_p, top_k=s.top_k,
                                        max_time_ms=req.max_time_ms or
                                        self.serve.code.params.max_time_ms)
        t0 = time.perf_counter()
        if s.max_tokens == 0:  # llama.vim's warm-up of its ring chunks: nothing to say
            result: Completion | None = Completion("", "", Stats(), "none", 0.0)
        else:
            result = await until_disconnect(request, self.serve.infill(
                req.prefix, req.suffix, params, req.extra, req.path))
        if result is None:
            return Response(status_code=CLIENT_GONE)
        elapsed = (time.perf_counter() - t0) * 1000
        st = result.stats
        answer = {"content": result.text, "model": self.serve.code.model.name,
                  "tokens_cached": st.cached_tokens, "tokens_evaluated": st.prompt_tokens,
                  "tokens_predicted": st.generated_tokens, "truncated": False, "stop": True,
                  "stop_type": "limit" if st.stop_reason == "length" else "eos",
                  "source": result.source, "timings": timings(st, elapsed)}
        if req.response_fields:
            answer = bodies.picked(answer, req.response_fields)
        if req.stream:
            return StreamingResponse(_events([answer]), media_type="text/event-stream")
        return JSONResponse(answer)

    # -- OpenAI ---------------------------------------------------------------------------

    def _params(self, s: bodies.Sampling, base: Params,
                body: dict[str, Any] | None = None) -> Params:
        schema, grammar = bodies.output_format(body or {})
        if grammar and self.serve.backend_name != "llama.cpp":
            raise BadRequest(f"`grammar` needs the llama.cpp backend (this server uses "
                             f"{self.serve.backend_name}); ask for a JSON schema instead.",
                             "grammar")
        return replace(base, max_tokens=s.max_tokens, temperature=s.temperature,
                       top_p=s.top_p, top_k=s.top_k, seed=s.seed, stop=tuple(s.stop),
                       json_schema=schema, grammar=grammar)

    async def chat(self, request: Request) -> Response:
        body = bodies.parse_json(await read_body(request))
        messages = bodies.messages(body)
        base = self.serve.default_params()
        # llama-server's own name for the limit (llama.vim's instruction edit sends it)
        limit = "max_tokens" if body.get("max_tokens") is not None or \
            body.get("n_predict") is None else "n_predict"
        params = self._params(bodies.sampling(body, limit, base.max_tokens,
                                              base.temperature, base), base, body)
        stream = bool(bodies.get(body, "stream", bool, False))
        options = bodies.get(body, "stream_options", dict, {})
        usage_wanted = bool(options.get("include_usage", False))
        asked = bodies.get(body, "model", str, "")
        code = bool(asked) and asked == self.serve.code.model.name != self.serve.chat_model.name
        name = asked if code else self.serve.chat_model.name
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        events = self.serve.chat(messages, params, code_model=code)
        if stream:
            head = {"id": cid, "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": name}

            def chunk(text: str, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if finish is None else {}
                return head | {"choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}

            opening = head | {"choices": [{"index": 0, "finish_reason": None,
                                           "delta": {"role": "assistant", "content": ""}}]}
            return StreamingResponse(
                _event_stream(events, chunk, [opening], head if usage_wanted else None),
                media_type="text/event-stream")
        collected = await _collected(request, events)
        if isinstance(collected, Response):
            return collected
        text, stats = collected
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": _finish(stats)}],
            "usage": _usage(stats), "timings": timings(stats, stats.total_ms)})

    async def completions(self, request: Request) -> Response:
        """OpenAI's legacy completions; `suffix` makes it fill in the middle."""
        body = bodies.parse_json(await read_body(request))
        prompt = bodies.get(body, "prompt", str, None)
        if prompt is None:
            raise BadRequest("`prompt` must be a string.", "prompt")
        suffix = bodies.get(body, "suffix", str, "")
        params = self._params(bodies.sampling(body, "max_tokens", 16, 1.0,
                                              self.serve.code.params), self.serve.code.params,
                              body)
        stream = bool(bodies.get(body, "stream", bool, False))
        name, cid = self.serve.code.model.name, f"cmpl-{uuid.uuid4().hex[:24]}"
        events = self.serve.raw_fill(prompt, suffix, params)
        head = {"id": cid, "object": "text_completion", "created": int(time.time()),
                "model": name}
        if stream:
            def piece(text: str, finish: str | None) -> dict[str, Any]:
                return head | {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}

            return StreamingResponse(_event_stream(events, piece),
                                     media_type="text/event-stream")
        collected = await _collected(request, events)
        if isinstance(collected, Response):
            return collected
        text, stats = collected
        return JSONResponse(head | {
            "choices": [{"index": 0, "text": text, "finish_reason": _finish(stats),
                         "logprobs": None}], "usage": _usage(stats)})


async def _event_stream(events: AsyncIterator[Any],
                        chunk: Callable[[str, str | None], dict[str, Any]],
                        opening: Sequence[dict[str, Any]] = (),
                        usage_head: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """A streamed reply as server-sent events: the `opening` chunks, a chunk per piece of
    text, the finishing chunk (then the usage, given `usage_head`), an error event if the
    reply failed, and [DONE]. The generation runs `detached`, so a client that goes stops it
    cleanly."""
    for first in opening:
        yield _sse(first)
    async with aclosing(detached(events)) as stream:
        async for event in stream:
            if isinstance(event, Token):
                yield _sse(chunk(event.text, None))
            elif isinstance(event, Done):
                yield _sse(chunk("", _finish(event.stats)))
                if usage_head is not None:
                    yield _sse(usage_head | {"choices": [], "usage": _usage(event.stats)})
            elif isinstance(event, Error):
                yield _sse({"error": {"message": event.message, "type": "server_error"}})
    yield "data: [DONE]\n\n"


async def _collected(request: Request, events: AsyncIterator[Any],
                     ) -> tuple[str, Stats] | Response:
    """The whole reply and its stats, or the response to give instead: nothing for a client
    that left, a 503 with the backend's message for a reply that failed."""
    collected = await until_disconnect(request, _collect(events))
    if collected is None:
        return Response(status_code=CLIENT_GONE)
    text, stats, error = collected
    if error:
        return JSONResponse({"error": {"message": error, "type": "server_error", "code": 503}},
                            status_code=503)
    return text, stats


async def _collect(events: AsyncIterator[Any]) -> tuple[str, Stats, str]:
    text, stats, error = "", Stats(), ""
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, Token):
                text += event.text
            elif isinstance(event, Done):
                stats = event.stats
            elif isinstance(event, Error):
                error = event.message
    return text, stats, error


async def _events(items: list[dict[str, Any]]) -> AsyncIterator[str]:
    for item in items:
        yield _sse(item)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _finish(stats: Stats) -> str:
    return "length" if stats.stop_reason == "length" else "stop"


def _usage(stats: Stats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}
