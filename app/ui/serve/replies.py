"""How `serve` answers: reading a body within its limit, work that stops when the client goes,
and replies as server-sent events or whole, in OpenAI's and llama.cpp's shapes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.engine.backend import Done, Error, Stats, Thought, Token
from app.engine.tools import ToolCall
from app.ui.serve import bodies
from app.ui.serve.bodies import BadRequest
from app.ui.serve.calls import Called

T = TypeVar("T")
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



async def event_stream(events: AsyncIterator[Any],
                        chunk: Callable[[str, str | None], dict[str, Any]],
                        opening: Sequence[dict[str, Any]] = (),
                        usage_head: dict[str, Any] | None = None,
                        thought: Callable[[str], dict[str, Any]] | None = None,
                        called: Callable[[Called], dict[str, Any]] | None = None,
                        ) -> AsyncIterator[str]:
    """A streamed reply as server-sent events: the `opening` chunks, a chunk per piece of
    text, the finishing chunk (then the usage, given `usage_head`), an error event if the
    reply failed, and [DONE]. The generation runs `detached`, so a client that goes stops it
    cleanly."""
    for first in opening:
        yield _sse(first)
    calls = False
    async with aclosing(detached(events)) as stream:
        async for event in stream:
            if isinstance(event, Token):
                yield _sse(chunk(event.text, None))
            elif isinstance(event, Thought):
                if thought is not None:
                    yield _sse(thought(event.text))
            elif isinstance(event, Called):
                calls = called is not None
                if called is not None:
                    yield _sse(called(event))
            elif isinstance(event, Done):
                yield _sse(chunk("", "tool_calls" if calls else finish_reason(event.stats)))
                if usage_head is not None:
                    yield _sse(usage_head | {"choices": [], "usage": usage(event.stats)})
            elif isinstance(event, Error):
                yield _sse({"error": {"message": event.message, "type": "server_error"}})
    yield "data: [DONE]\n\n"


@dataclass
class Reply:
    """A whole reply: its text, stats, a thinking model's reasoning, and any tool calls."""

    text: str = ""
    stats: Stats = field(default_factory=Stats)
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    error: str = ""

    @property
    def finish(self) -> str:
        return "tool_calls" if self.calls else finish_reason(self.stats)


async def collected_reply(request: Request, events: AsyncIterator[Any]) -> Reply | Response:
    """The whole reply, or the response to give instead: nothing for a client that left, a
    503 with the backend's message for a reply that failed."""
    collected = await until_disconnect(request, _collect(events))
    if collected is None:
        return Response(status_code=CLIENT_GONE)
    if collected.error:
        return JSONResponse({"error": {"message": collected.error, "type": "server_error",
                                       "code": 503}}, status_code=503)
    return collected


async def _collect(events: AsyncIterator[Any]) -> Reply:
    reply = Reply()
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, Token):
                reply.text += event.text
            elif isinstance(event, Thought):
                reply.thinking += event.text
            elif isinstance(event, Called):
                reply.calls = event.calls
            elif isinstance(event, Done):
                reply.stats = event.stats
            elif isinstance(event, Error):
                reply.error = event.message
    return reply


async def sse_items(items: list[dict[str, Any]]) -> AsyncIterator[str]:
    for item in items:
        yield _sse(item)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def finish_reason(stats: Stats) -> str:
    return "length" if stats.stop_reason == "length" else "stop"


def usage(stats: Stats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}
