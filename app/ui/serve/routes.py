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

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app import __version__
from app.engine.backend import Params, Stats
from app.errors import TramontaneError
from app.session.complete import Completion
from app.session.serving import ServeSession, ServeSettings, proof
from app.ui.serve import bodies, calls
from app.ui.serve.bodies import BadRequest
from app.ui.serve.guard import refusal
from app.ui.serve.replies import (
    CLIENT_GONE,
    collected_reply,
    event_stream,
    finish_reason,
    read_body,
    sse_items,
    timings,
    until_disconnect,
    usage,
)

log = logging.getLogger("tramontane.serve")
Handler = Callable[[Request], Awaitable[Response]]


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
                  "stop_type": "limit" if st.stop_reason in ("length", "time") else "eos",
                  "source": result.source, "timings": timings(st, elapsed)}
        if req.response_fields:
            answer = bodies.picked(answer, req.response_fields)
        if req.stream:
            return StreamingResponse(sse_items([answer]), media_type="text/event-stream")
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
        offered, choice = calls.offered(body)
        if offered and self.serve.backend_name != "llama.cpp":
            raise BadRequest(f"`tools` need the llama.cpp backend (this server uses "
                             f"{self.serve.backend_name}).", "tools")
        if offered and params.json_schema:
            raise BadRequest("Give `tools` or a JSON `response_format`, not both.", "tools")
        params = replace(params, tools=offered, tool_choice=choice)
        stream = bool(bodies.get(body, "stream", bool, False))
        options = bodies.get(body, "stream_options", dict, {})
        usage_wanted = bool(options.get("include_usage", False))
        asked = bodies.get(body, "model", str, "")
        code = bool(asked) and asked == self.serve.code.model.name != self.serve.chat_model.name
        name = asked if code else self.serve.chat_model.name
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        def make(p: Params) -> Any:
            return self.serve.chat(messages, p, code_model=code)

        # with tools: a call is held, and sent as `tool_calls`
        events = calls.reply(make, messages, params) if offered and choice != "none" \
            else make(params)
        if stream:
            head = {"id": cid, "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": name}

            def chunk(text: str, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if finish is None else {}
                return head | {"choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}

            def thought(text: str) -> dict[str, Any]:  # as llama-server and vLLM send it
                return head | {"choices": [{"index": 0, "delta": {"reasoning_content": text},
                                            "finish_reason": None}]}

            opening = head | {"choices": [{"index": 0, "finish_reason": None,
                                           "delta": {"role": "assistant", "content": ""}}]}
            return StreamingResponse(
                event_stream(events, chunk, [opening], head if usage_wanted else None, thought,
                             lambda c: calls.called_chunk(head, c)),
                media_type="text/event-stream")
        reply = await collected_reply(request, events)
        if isinstance(reply, Response):
            return reply
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            message["tool_calls"] = [c.openai() for c in reply.calls]
        if reply.thinking:
            message["reasoning_content"] = reply.thinking
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
            "usage": usage(reply.stats), "timings": timings(reply.stats, reply.stats.total_ms)})

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

            return StreamingResponse(event_stream(events, piece),
                                     media_type="text/event-stream")
        reply = await collected_reply(request, events)
        if isinstance(reply, Response):
            return reply
        text, stats = reply.text, reply.stats
        return JSONResponse(head | {
            "choices": [{"index": 0, "text": text, "finish_reason": finish_reason(stats),
                         "logprobs": None}], "usage": usage(stats)})
