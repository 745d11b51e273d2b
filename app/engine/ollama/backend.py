"""`Backend` over `ollama.AsyncClient`. Every failure a user can meet (server down, model not
pulled, an error or a cut mid-stream, a server that never answers, a malformed line) ends the
stream with one `Error` that says what to do; the text streamed so far stays with the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx

from app.config import is_remote, shown_host
from app.engine import thinking
from app.engine.backend import (
    BackendInfo,
    ContextChunk,
    Done,
    Error,
    Event,
    Message,
    ModelRef,
    Params,
    Progress,
    Stats,
    Thought,
    Token,
)
from app.engine.prompts import fim
from app.errors import BackendError


def _import_ollama() -> Any:
    """The `ollama` package builds a client from OLLAMA_HOST when it is imported, and a value
    meant for another tool would raise there: the host is validated by `config.ollama_host`
    and passed explicitly, so the variable is hidden from that import."""
    saved = os.environ.pop("OLLAMA_HOST", None)
    try:
        import ollama
    finally:
        if saved is not None:
            os.environ["OLLAMA_HOST"] = saved
    return ollama


ollama = _import_ollama()
# what the client raises for a server that is down, refuses, or breaks the connection, or
# that answers with something that is not Ollama's JSON (pydantic's errors are ValueErrors)
_FAILURES = (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError, TypeError)
UNLOAD_WAIT_S = 2.0  # at exit, a server that does not answer the unload is left to itself


def options(params: Params) -> dict[str, Any]:
    """Our parameters under Ollama's option names."""
    out: dict[str, Any] = {
        "num_ctx": params.context_length, "temperature": params.temperature,
        "top_p": params.top_p, "top_k": params.top_k, "repeat_penalty": params.repeat_penalty,
        "num_predict": params.max_tokens,
    }
    if params.seed >= 0:
        out["seed"] = params.seed
    if params.threads:
        out["num_thread"] = params.threads
    if params.stop:
        out["stop"] = list(params.stop)
    return out


class OllamaBackend:
    name = "ollama"

    def __init__(self, host: str, connect_timeout: float = 5.0, first_token_timeout: float = 120.0,
                 read_timeout: float = 60.0, keep_alive: str | float = "5m") -> None:
        self.host = shown_host(host)  # what messages name: never a password
        self.first_token_timeout = first_token_timeout
        self.keep_alive = keep_alive
        self.client = ollama.AsyncClient(
            host, timeout=httpx.Timeout(read_timeout, connect=connect_timeout))
        self.model: ModelRef | None = None
        self._template: str | None = None

    # -- errors ----------------------------------------------------------------------------

    def explain(self, exc: BaseException, model: str = "") -> str:
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 and "not found" in exc.error:
                return (f"Ollama at {self.host} has no model '{model}'. Pull it with "
                        f"`tramontane models pull --backend ollama {model}`.")
            return f"Ollama answered with an error: {exc.error}"
        if isinstance(exc, ConnectionError | httpx.ConnectError):
            return (f"Ollama is not answering at {self.host}. Start it with `ollama serve` (or "
                    "open the Ollama app), or point OLLAMA_HOST / [ollama] host at your server.")
        if isinstance(exc, httpx.ConnectTimeout):
            return (f"Ollama at {self.host} did not accept the connection in time; raise "
                    "[ollama] connect_timeout, or check the server.")
        if isinstance(exc, httpx.TimeoutException):
            return (f"Ollama at {self.host} stopped sending mid-reply; raise [ollama] "
                    "read_timeout, or check the server.")
        if isinstance(exc, TimeoutError):
            return (f"Ollama at {self.host} accepted the request but sent nothing in time. It may "
                    "be loading a large model; raise [ollama] first_token_timeout, or check the "
                    "server.")
        if isinstance(exc, json.JSONDecodeError):
            return f"Ollama sent a line that is not JSON ({exc.msg}); the reply was cut there."
        if isinstance(exc, ValueError | TypeError):
            return (f"Ollama at {self.host} sent a reply in a shape Tramontane cannot read "
                    f"({str(exc).splitlines()[0][:120]}); is it Ollama, and a recent one?")
        if isinstance(exc, httpx.HTTPError):
            return f"The connection to Ollama at {self.host} broke mid-reply ({type(exc).__name__})."
        return f"Ollama failed: {exc}"

    # -- streaming ---------------------------------------------------------------------------

    async def _stream(self, start: Any, text_of: Any, model: str,
                      thought_of: Any = None) -> AsyncGenerator[Event, None]:
        t0 = time.perf_counter()
        t_first = 0.0
        stream: AsyncIterator[Any] | None = None
        try:
            async with asyncio.timeout(self.first_token_timeout):
                stream = await start()
                first = await anext(stream, None)
            chunks = [first] if first is not None else []
            opened = stream

            async def rest() -> AsyncIterator[Any]:
                for c in chunks:
                    yield c
                async for c in opened:
                    yield c

            async for part in rest():
                thought = thought_of(part) if thought_of is not None else ""
                if thought:
                    t_first = t_first or time.perf_counter()
                    yield Thought(thought)
                text = text_of(part)
                if text:
                    t_first = t_first or time.perf_counter()
                    yield Token(text)
                if part.done:
                    yield Done(_stats(part, t0, t_first))
                    return
            yield Error(f"The stream from Ollama at {self.host} ended without its final line.")
        except (*_FAILURES, TimeoutError) as exc:
            yield Error(self.explain(exc, model))
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()  # close the HTTP response after the final line

    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        model = self._name()
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if params.grammar:
            yield Error("Ollama takes no GBNF grammar; ask for JSON with a schema instead.")
            return
        extra: dict[str, Any] = {}
        if params.json_schema:
            extra["format"] = json.loads(params.json_schema)  # Ollama enforces the schema

        async def start() -> Any:
            return await self.client.chat(model=model, messages=msgs, stream=True,
                                          options=options(params), keep_alive=self.keep_alive,
                                          **extra)

        events = self._stream(start, lambda p: p.message.content or "", model,
                              lambda p: getattr(p.message, "thinking", None) or "")
        async for event in thinking.split(events):
            yield event

    async def complete(self, prefix: str, suffix: str, params: Params,
                       extra: Sequence[ContextChunk] = (), path: str = "") -> AsyncGenerator[Event, None]:
        """`suffix` when the model's template has one (extra chunks then go at the start of
        the prefix); else our FIM prompt, raw."""
        model = self._name()
        try:
            native = await self._template_has_suffix(model)
        except _FAILURES as exc:
            yield Error(self.explain(exc, model))
            return
        sent = self._sent("suffix" if native else "prompt", prefix, suffix, params, extra, path)
        opts = options(params)
        if sent.stops:
            opts["stop"] = sent.stops

        async def start() -> Any:
            if sent.suffix is not None:
                return await self.client.generate(model=model, prompt=sent.prompt,
                                                  suffix=sent.suffix, stream=True, options=opts,
                                                  keep_alive=self.keep_alive)
            return await self.client.generate(model=model, prompt=sent.prompt, raw=True,
                                              stream=True, options=opts,
                                              keep_alive=self.keep_alive)
        async for event in self._stream(start, lambda p: p.response or "", model):
            yield event

    def _sent(self, mode: str, prefix: str, suffix: str, params: Params,
              extra: Sequence[ContextChunk], path: str) -> fim.Sent:
        return fim.for_mode(mode, self.model.fim_format if self.model else "", prefix, suffix,
                            params.context_length, params, extra, path)

    async def fim_prompt(self, prefix: str, suffix: str, params: Params,
                         extra: Sequence[ContextChunk] = (), path: str = "") -> fim.Sent:
        """Exactly what `complete` sends for these arguments."""
        return self._sent(await self.fim_mode(), prefix, suffix, params, extra, path)

    async def fim_mode(self) -> str:
        """"suffix" when the model's template takes one, else "prompt" (see `complete`)."""
        try:
            return "suffix" if await self._template_has_suffix(self._name()) else "prompt"
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, self._name())) from exc

    async def _template_has_suffix(self, model: str) -> bool:
        if self._template is None:
            shown = await self.client.show(model)
            self._template = shown.template or ""
        return ".Suffix" in self._template

    def _name(self) -> str:
        if self.model is None:
            raise BackendError("No Ollama model chosen. Give one with -m (e.g. -m mistral:7b).")
        return self.model.name

    # -- models ------------------------------------------------------------------------------

    async def load(self, model: ModelRef, params: Params | None = None) -> None:
        if self.model is not None and self.model.name == model.name:
            return
        try:
            await self.client.show(model.name)
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, model.name)) from exc
        self.model, self._template = model, None

    async def unload(self) -> None:
        if self.model is None:
            return
        with contextlib.suppress(*_FAILURES, TimeoutError):
            # nothing to free on a server that is gone, and no exit waits on a hung one
            async with asyncio.timeout(UNLOAD_WAIT_S):
                await self.client.generate(model=self.model.name, prompt="", keep_alive=0)
        self.model = None

    async def models(self) -> list[ModelRef]:
        try:
            listed = await self.client.list()
        except _FAILURES as exc:
            raise BackendError(self.explain(exc)) from exc
        return [ModelRef(name=str(m.model), source=f"ollama at {self.host}") for m in listed.models]

    async def details(self, name: str) -> dict[str, Any]:
        """/api/show: its model_info feeds the memory estimate."""
        try:
            shown = await self.client.show(name)
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, name)) from exc
        return {"details": shown.details.model_dump() if shown.details else {},
                "model_info": dict(shown.modelinfo or {}), "template": shown.template or "",
                "parameters": shown.parameters or ""}

    async def loaded(self) -> list[dict[str, Any]]:
        """/api/ps: what the server has in memory, and how much of it is on the GPU."""
        try:
            ps = await self.client.ps()
        except _FAILURES as exc:
            raise BackendError(self.explain(exc)) from exc
        out = []
        for m in ps.models:
            size, vram = int(m.size or 0), int(m.size_vram or 0)
            split = "100% GPU" if size and vram >= size else (
                "100% CPU" if not vram else f"{100 * vram // max(size, 1)}% GPU")
            out.append({"name": m.model, "size": size, "size_vram": vram, "split": split})
        return out

    async def pull(self, ref: str) -> AsyncGenerator[Progress, None]:
        try:
            async for part in await self.client.pull(ref, stream=True):
                yield Progress(str(part.status), int(part.completed or 0), int(part.total or 0))
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, ref)) from exc

    async def delete(self, ref: str) -> None:
        try:
            await self.client.delete(ref)
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, ref)) from exc

    async def info(self) -> BackendInfo:
        details: dict[str, Any] = {"host": self.host, "remote": is_remote(self.host)}
        try:
            details["loaded"] = await self.loaded()
        except BackendError as exc:
            details["error"] = str(exc)
        return BackendInfo(self.name, self.model.name if self.model else None, details)


def _stats(part: Any, t0: float, t_first: float) -> Stats:
    evals = int(part.eval_count or 0)
    eval_ns = int(part.eval_duration or 0)
    return Stats(
        prompt_tokens=int(part.prompt_eval_count or 0), cached_tokens=0, generated_tokens=evals,
        ttft_ms=(t_first - t0) * 1000 if t_first else 0.0,
        decode_tps=evals / (eval_ns / 1e9) if eval_ns else 0.0,
        total_ms=(time.perf_counter() - t0) * 1000,
        stop_reason="length" if part.done_reason == "length" else "stop",
    )
