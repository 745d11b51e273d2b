"""`Backend` over any OpenAI-compatible server (vLLM, llama.cpp's llama-server, LM Studio,
llama-cpp-python's server, a company endpoint), through the `openai` package's async client:
its streaming and its server-sent-events parser, its typed errors.

Every failure a user can meet (server down, 401/403, unknown model, a cut stream, a stall, a
malformed event) ends the stream with one `Error` that says what to do; the text streamed so
far stays with the caller. The API key goes to the client and nowhere else: messages name the
server by `shown_host`, never with a key or a password.

Fill-in-the-middle, decided once per server (`fim_mode`):
- "infill": llama.cpp's `/infill` (llama-server answers `/props`); the server builds the prompt
  from the model's own FIM tokens and takes the other files as `input_extra`;
- "prompt": `/v1/completions` with the prompt built by our own FIM formats (Codestral's
  included, each checked against its ground truth) whenever the model's format is known: a
  server's own `suffix` handling varies (llama-cpp-python 0.3's server accepts `suffix` but
  puts token 0 where the FIM tokens belong: `suffix_token_id = 0  # TODO: Fix` in its source,
  and Qwen then answers with nonsense), and vLLM refuses `suffix`;
- "suffix": `/v1/completions` with `suffix`, for a model whose format we do not know, when
  the server takes the field (LM Studio).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import openai

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
    Stats,
    Thought,
    Token,
)
from app.engine.openai.errors import TRANSPORT as _TRANSPORT
from app.engine.openai.errors import explain
from app.engine.prompts import fim
from app.errors import BackendError

FIM_MODES = ("infill", "suffix", "prompt")
LIMIT_S_PER_TOKEN = 1.0  # the longest a reply may stream: a second a token (120 s at least)


_FAILURES: tuple[type[Exception], ...] = (openai.APIError, *_TRANSPORT)
_STREAM_FAILURES: tuple[type[Exception], ...] = (*_FAILURES, TimeoutError, ValueError)


def sampling(params: Params) -> dict[str, Any]:
    """Our parameters under the OpenAI API's names; top_k and repeat_penalty go in the body
    as llama.cpp's servers and vLLM read them (others ignore fields they do not know)."""
    out: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p,
                           "max_tokens": params.max_tokens,
                           "extra_body": {"top_k": params.top_k,
                                          "repeat_penalty": params.repeat_penalty}}
    if params.seed >= 0:
        out["seed"] = params.seed
    if params.stop:
        out["stop"] = list(params.stop)[:4]  # the API takes up to 4
    return out


class OpenAIBackend:
    name = "openai"

    def __init__(self, base_url: str, api_key: str = "", connect_timeout: float = 5.0,
                 first_token_timeout: float = 120.0, read_timeout: float = 60.0,
                 fim: str = "auto") -> None:
        self.base_url = base_url.rstrip("/")
        self.host = shown_host(self.base_url)  # what messages name: never a password
        self.root = self.base_url.removesuffix("/v1")
        self.first_token_timeout = first_token_timeout
        self.fim = fim if fim in FIM_MODES else "auto"
        # the client wants a key; a server without auth ignores whatever is sent
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key or "none", max_retries=0,
            timeout=openai.Timeout(read_timeout, connect=connect_timeout))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
                                      headers=headers)
        self.model: ModelRef | None = None
        self._fim_mode: str | None = None
        self._key = api_key

    def redact(self, text: str) -> str:
        """`text` (from the server) without the API key, which a server may echo."""
        return text.replace(self._key, "[api key]") if len(self._key) >= 4 else text

    # -- errors ------------------------------------------------------------------------------

    def explain(self, exc: BaseException, model: str = "") -> str:
        return self.redact(explain(exc, self.host, model))

    # -- streaming ---------------------------------------------------------------------------

    async def _stream(self, start: Callable[[], Awaitable[Any]],
                      text_of: Callable[[Any], str], model: str,
                      thought_of: Callable[[Any], str] | None = None,
                      limit: int = 0) -> AsyncGenerator[Event, None]:
        """The server's stream as events. `limit`: the reply's max_tokens, held on our side too
        (a server that ignores it is cut there, and after LIMIT_S_PER_TOKEN a token)."""
        t0 = time.perf_counter()
        t_first = 0.0
        deadline = t0 + max(120.0, limit * LIMIT_S_PER_TOKEN) if limit else 0.0
        stream: Any = None
        counted, usage, finish = 0, None, None
        try:
            async with asyncio.timeout(self.first_token_timeout):
                stream = await start()
                iterator: AsyncIterator[Any] = stream.__aiter__()
                first = await anext(iterator, None)
            chunk = first
            while chunk is not None:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in getattr(chunk, "choices", None) or []:
                    thought = thought_of(choice) if thought_of is not None else ""
                    if thought:  # vLLM's and llama-server's reasoning_content
                        t_first = t_first or time.perf_counter()
                        yield Thought(thought)
                    text = text_of(choice)
                    if not isinstance(text, str):
                        raise TypeError(f"a text of {type(text).__name__}")
                    if text:
                        t_first = t_first or time.perf_counter()
                        counted += 1
                        yield Token(text)
                    finish = choice.finish_reason or finish
                if limit and (counted > limit + 8 or time.perf_counter() > deadline):
                    finish = "length"  # the server went past the limit asked for: we stop
                    break
                chunk = await anext(iterator, None)
            if finish is None:
                yield Error(f"The stream from {self.host} ended before the reply was finished.")
                return
            yield Done(_stats(usage, counted, t0, t_first, finish))
        except (AttributeError, TypeError) as exc:  # a reply in no OpenAI shape
            yield Error(f"The server at {self.host} answered in a shape that is not OpenAI's "
                        f"({exc}); what came is kept.")
        except _STREAM_FAILURES as exc:
            if counted and isinstance(exc, (openai.APIConnectionError, *_TRANSPORT)) and \
                    not isinstance(exc, openai.APITimeoutError):
                yield Error(f"The connection to {self.host} broke mid-reply; what came is kept.")
            else:
                yield Error(self.explain(exc, model))
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.close()  # free the connection (and the server's slot)

    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        model = self._name()
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        body = sampling(params)
        if params.grammar:
            yield Error(f"The server at {self.host} takes no GBNF grammar through the OpenAI "
                        "API; ask for JSON with a schema instead.")
            return
        if params.json_schema:  # OpenAI's structured outputs (vLLM and llama-server take it)
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": json.loads(params.json_schema), "strict": True}}

        def start() -> Awaitable[Any]:
            return self.client.chat.completions.create(  # type: ignore[call-overload, no-any-return]
                model=model, messages=msgs, stream=True,
                stream_options={"include_usage": True}, **body)

        events = self._stream(start, lambda c: c.delta.content or "", model,
                              lambda c: getattr(c.delta, "reasoning_content", None) or "",
                              limit=params.max_tokens)
        async for event in thinking.split(events):
            yield event

    async def complete(self, prefix: str, suffix: str, params: Params,
                       extra: Sequence[ContextChunk] = (), path: str = "",
                       ) -> AsyncGenerator[Event, None]:
        model = self._name()
        try:
            mode = await self.fim_mode()
        except _FAILURES as exc:
            yield Error(self.explain(exc, model))
            return
        if mode == "infill":
            async for event in self._infill(prefix, suffix, params, extra, path):
                yield event
            return
        try:
            sent = self._sent(mode, prefix, suffix, params, extra, path)
        except BackendError as exc:
            yield Error(str(exc))
            return
        body = sampling(params)
        if sent.suffix is not None:
            body["suffix"] = sent.suffix
        if sent.stops:
            body["stop"] = sent.stops[:4]  # the API takes 4

        def start() -> Awaitable[Any]:
            return self.client.completions.create(
                model=model, prompt=sent.prompt, stream=True, **body)

        async for event in self._stream(start, lambda c: c.text or "", model,
                                        limit=params.max_tokens):
            yield event

    def _sent(self, mode: str, prefix: str, suffix: str, params: Params,
              extra: Sequence[ContextChunk], path: str) -> fim.Sent:
        fmt = self.model.fim_format if self.model else ""
        if mode == "prompt" and not fmt:
            raise BackendError(f"The server at {self.host} takes no `suffix`, and no FIM format "
                               f"is known for '{self._name()}': set [openai] fim_format (e.g. "
                               "codestral, qwen).")
        return fim.for_mode(mode, fmt, prefix, suffix, params.context_length, params, extra,
                            path)

    async def fim_prompt(self, prefix: str, suffix: str, params: Params,
                         extra: Sequence[ContextChunk] = (), path: str = "") -> fim.Sent:
        """Exactly what `complete` sends for these arguments."""
        try:
            mode = await self.fim_mode()
        except _FAILURES as exc:
            raise BackendError(self.explain(exc, self._name())) from exc
        return self._sent(mode, prefix, suffix, params, extra, path)

    async def _infill(self, prefix: str, suffix: str, params: Params,
                      extra: Sequence[ContextChunk], path: str) -> AsyncGenerator[Event, None]:
        """llama-server's /infill, one JSON answer (a suggestion is a few dozen tokens)."""
        t0 = time.perf_counter()
        body = {"input_prefix": prefix, "input_suffix": suffix, "n_predict": params.max_tokens,
                "input_extra": [{"filename": c.path, "text": c.text} for c in extra],
                "temperature": params.temperature, "top_k": params.top_k,
                "top_p": params.top_p, "cache_prompt": True, "stream": False}
        if params.max_time_ms:
            body["t_max_predict_ms"] = params.max_time_ms
        try:
            async with asyncio.timeout(self.first_token_timeout):
                r = await self.http.post(f"{self.root}/infill", json=body)
            if r.status_code >= 400:
                yield Error(self.redact(f"The server at {self.host} answered {r.status_code} "
                                        f"to /infill: {r.text[:200]}"))
                return
            data = r.json()
            content = str(data.get("content", ""))
        except (httpx.HTTPError, TimeoutError, ValueError, AttributeError) as exc:
            yield Error(self.explain(exc))
            return
        if content:
            yield Token(content)
        t = data.get("timings") or {}
        yield Done(Stats(prompt_tokens=int(t.get("prompt_n", 0)),
                         cached_tokens=int(data.get("tokens_cached", 0)),
                         generated_tokens=int(t.get("predicted_n", 0)),
                         ttft_ms=float(t.get("prompt_ms", 0.0)),
                         decode_tps=float(t.get("predicted_per_second", 0.0)),
                         total_ms=(time.perf_counter() - t0) * 1000,
                         stop_reason="length" if data.get("stop_type") == "limit" else "stop"))

    async def fim_mode(self) -> str:
        """How this server fills in the middle (see the module docstring), asked once."""
        if self.fim != "auto":
            return self.fim
        if self._fim_mode is None:
            self._fim_mode = await self._detect_fim()
        if self._fim_mode == "infill":
            return "infill"
        # per model: ours where its format is known, else the server's `suffix`
        if self.model is not None and self.model.fim_format:
            return "prompt"
        return self._fim_mode

    async def _detect_fim(self) -> str:
        """"infill" for llama-server, else whether the server takes `suffix` at all."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = await self.http.get(f"{self.root}/props")
            if r.status_code == 200 and "default_generation_settings" in r.json():
                return "infill"
        if self.model is not None and self.model.fim_format:
            return "prompt"  # no need to ask: our format is used either way
        try:
            await self.client.completions.create(model=self._name(), prompt="a", suffix="b",
                                                 max_tokens=1, temperature=0.0)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            return "prompt"
        return "suffix"

    def _name(self) -> str:
        if self.model is None:
            raise BackendError("No model chosen for the OpenAI-compatible server. Give one with "
                               "-m; `tramontane models list --backend openai` lists them.")
        return self.model.name

    # -- models ------------------------------------------------------------------------------

    async def load(self, model: ModelRef, params: Params | None = None) -> None:
        """Check the server serves `model` (one clear line when it does not, or is down)."""
        if self.model is not None and self.model.name == model.name:
            return
        served = [m.name for m in await self.models()]
        if model.name not in served:
            listed = ", ".join(served[:10]) or "none"
            raise BackendError(f"The server at {self.host} has no model '{model.name}'; it "
                               f"serves: {listed}.")
        self.model = model

    async def unload(self) -> None:
        self.model = None  # the server keeps its models; we only forget ours

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()

    async def models(self) -> list[ModelRef]:
        try:
            page = await self.client.models.list()
            return [ModelRef(name=str(m.id), source=f"openai at {self.host}")
                    for m in page.data]
        except _FAILURES as exc:
            raise BackendError(self.explain(exc)) from exc
        except (AttributeError, TypeError, ValueError) as exc:  # ValueError: not JSON at all
            raise BackendError(f"The server at {self.host} lists its models in a shape that is "
                               f"not OpenAI's ({str(exc).splitlines()[0]}).") from None

    async def info(self) -> BackendInfo:
        details: dict[str, Any] = {"base_url": self.host, "remote": is_remote(self.base_url)}
        try:
            details["models"] = [m.name for m in await self.models()]
            if self.model is not None:
                details["fim"] = await self.fim_mode()
        except BackendError as exc:
            details["error"] = str(exc)
        except _FAILURES as exc:
            details["error"] = self.explain(exc)
        return BackendInfo(self.name, self.model.name if self.model else None, details)


def _stats(usage: Any, counted: int, t0: float, t_first: float, finish: str) -> Stats:
    end = time.perf_counter()
    generated = int(getattr(usage, "completion_tokens", 0) or 0) or counted
    decode_s = end - t_first if t_first else 0.0
    return Stats(
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        generated_tokens=generated,
        ttft_ms=(t_first - t0) * 1000 if t_first else 0.0,
        decode_tps=(generated - 1) / decode_s if decode_s > 0 and generated > 1 else 0.0,
        total_ms=(end - t0) * 1000,
        stop_reason="length" if finish == "length" else "stop",
    )
