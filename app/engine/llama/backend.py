"""The llama.cpp backend. The model lives in a worker process; this side renders prompts,
streams events, cancels (a message, then a kill after one second) and restarts a dead worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.engine import thinking, tools
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
    Token,
)
from app.engine.llama import call_check
from app.engine.llama.messages import (
    AskMemory,
    Cancel,
    Failed,
    Finished,
    Generate,
    GenerateOptions,
    Load,
    Loaded,
    LoadFailed,
    LoadOptions,
    MemoryUse,
    Piece,
    Text,
)
from app.engine.llama.process import (
    WorkerDied,
    WorkerProcess,
    load_failure_reason,
    log_size,
)
from app.engine.prompts import chat as chat_prompts
from app.engine.prompts import fim
from app.errors import BackendError

# How long a cancelled request may take to stop before its worker is killed (and the next
# request reloads the model): the worker looks for a cancel between tokens and between prompt
# chunks (tokens.PROMPT_CHUNK), and a chunk takes up to about 1.5 s for a 1.5B model here.
CANCEL_GRACE_S = 3.0


class LlamaBackend:
    """`Backend` over llama-cpp-python in a spawned worker.

    Two of them (chat's and code's) are each other's `peer`: when one asks for exactly what
    the other's worker has loaded (the same file, context, threads, GPU layers and draft
    model), it uses that worker, its lock and its request ids, instead of loading the model a
    second time (two KV caches and two repacked copies). When the other moves to another
    model, the next request loads a worker of its own."""

    name = "llama.cpp"

    def __init__(self, log_path: Path | None = None, measuring: bool = False):
        self.log_path = str(log_path) if log_path else None
        self.measuring = measuring  # speed measurements: every reply runs to max_tokens
        self.model: ModelRef | None = None
        self.worker: WorkerProcess | None = None
        self.loaded: dict[str, Any] = {}
        self._load_key: tuple[Any, ...] | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.peer: LlamaBackend | None = None  # chat's worker for code, and code's for chat
        self.host: LlamaBackend | None = None  # the peer whose worker this one uses now

    @property
    def loaded_context(self) -> int:
        """The context its own worker was loaded with (0: no worker of its own)."""
        return int(self._load_key[1]) if self._load_key and self.host is None \
            and self._alive() else 0

    def _owner(self) -> LlamaBackend:
        return self.host if self.host is not None else self

    def serves(self, key: tuple[Any, ...]) -> bool:
        """Whether this backend's own worker is alive with exactly `key` loaded."""
        return self.host is None and key == self._load_key and self._alive()

    # -- model lifecycle -------------------------------------------------------------------

    async def load(self, model: ModelRef, params: Params | None = None) -> None:
        if model.path is None:
            raise BackendError(f"{model.name} has no file on disk for llama.cpp to load.")
        params = params or Params()
        gpu_layers = params.gpu_layers if params.gpu_layers >= 0 else model.gpu_layers
        key = (str(model.path), params.context_length, params.thread_count, gpu_layers,
               str(model.draft or ""))
        peer = self.peer
        if peer is not None and peer.serves(key):  # the same load: share its worker
            if self.host is not peer:
                await self._stop_worker()
                self.host = peer
            self.model, self.loaded, self._load_key, self.worker = model, peer.loaded, key, \
                peer.worker
            return
        if key == self._load_key and self._alive() and self.host is None:
            self.model = model  # the same load (a ref may differ in its formats only)
            return
        await self._stop_worker()
        self.model = model
        worker = WorkerProcess(self.log_path)
        self.worker = worker
        log_start = log_size(self.log_path)
        opts = LoadOptions(params.context_length, params.thread_count, gpu_layers,
                           adapt_threads=params.threads <= 0 and gpu_layers == 0,
                           draft_path=str(model.draft or ""))
        try:
            worker.send(Load(str(model.path), opts))
            reply = await worker.recv()
        except WorkerDied as exc:
            self.worker = None
            reason = load_failure_reason(self.log_path, log_start)
            raise BackendError(
                f"The model worker {exc} while loading {model.path.name}"
                + (f" (llama.cpp: {reason})" if reason else "")
                + ". The file may be corrupt, or too large for this machine's memory."
            ) from exc
        if not isinstance(reply, Loaded):
            await self._stop_worker()
            reason = load_failure_reason(self.log_path, log_start)
            said = reply.message if isinstance(reply, LoadFailed) else f"The worker said {reply}"
            raise BackendError(said + (f" (llama.cpp: {reason})" if reason else ""))
        self.loaded = reply.info
        self._load_key = key

    async def unload(self) -> None:
        await self._stop_worker()
        self.model = None

    def _alive(self) -> bool:
        return self.worker is not None and not self.worker.dead and self.worker.proc.is_alive()

    async def _stop_worker(self) -> None:
        if self.host is not None:  # the peer's worker: let go of it, never stop it
            self.host = None
        elif self.worker is not None:
            await self.worker.stop()
        self.worker = None
        self.loaded = {}
        self._load_key = None

    async def _ready(self, params: Params) -> WorkerProcess:
        if self.model is None:
            raise BackendError("No model is loaded. Choose one with -m or `models use`.")
        await self.load(self.model, params)
        assert self.worker is not None
        self.worker.attach()
        return self.worker

    # -- generation --------------------------------------------------------------------------

    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        try:
            worker = await self._ready(params)
            offered = tools.from_json(params.tools) if params.tool_choice != "none" else []
            prompt = chat_prompts.build(self._chat_format(), messages, self._template_vars(),
                                        offered)
        except BackendError as exc:
            yield Error(str(exc))
            return
        opened = prompt.text.rstrip().endswith(thinking.OPEN)  # the template opened the block
        events = self._generate(worker, prompt.text, prompt.stop, params, kind=params.work,
                                data=chat_prompts.data_spans(prompt.text, messages))
        if offered and params.tool_choice == "auto":
            def again() -> AsyncGenerator[Event, None]:  # a no: the reply without the tools
                bare = chat_prompts.build(self._chat_format(), messages, self._template_vars())
                return self._generate(worker, bare.text, bare.stop,
                                      replace(params, tool_choice="none"), kind=params.work,
                                      data=chat_prompts.data_spans(bare.text, messages))

            events = call_check.confirmed(events, messages, again)
        async for event in thinking.split(events, inside=opened):
            yield event

    async def complete(self, prefix: str, suffix: str, params: Params,
                       extra: Sequence[ContextChunk] = (), path: str = "") -> AsyncGenerator[Event, None]:
        """Fill in the middle with the model's FIM format (see prompts/fim.py); a model
        without FIM tokens continues the prefix."""
        try:
            worker = await self._ready(params)
        except BackendError as exc:
            yield Error(str(exc))
            return
        request = self._fim_request(prefix, suffix, params, extra, path)
        pieces = [(p.kind, p.value, p.space_prefix) for p in request.pieces]
        async for event in self._generate(worker, pieces, request.stops, params, add_bos=False,
                                          kind="completion"):
            yield event

    def _fim_request(self, prefix: str, suffix: str, params: Params,
                     extra: Sequence[ContextChunk], path: str) -> fim.FimRequest:
        return fim.request(self.model.fim_format if self.model else "", prefix, suffix,
                           int(self.loaded.get("n_ctx", params.context_length)), params,
                           extra, path)

    async def fim_prompt(self, prefix: str, suffix: str, params: Params,
                         extra: Sequence[ContextChunk] = (), path: str = "") -> fim.Sent:
        """Exactly what `complete` sends for these arguments (with the loaded context)."""
        request = self._fim_request(prefix, suffix, params, extra, path)
        return fim.Sent("prompt", request.text, None, request.stops)

    def _chat_format(self) -> str:
        return self.model.chat_format if self.model else "auto"

    def _template_vars(self) -> dict[str, Any]:
        meta = dict(self.loaded.get("metadata", {}))
        meta["bos_token_text"] = self.loaded.get("bos_token_text", "")
        meta["eos_token_text"] = self.loaded.get("eos_token_text", "")
        return meta

    async def _generate(
        self, worker: WorkerProcess, text: str | list[Piece], stop: list[str],
        params: Params, add_bos: bool = True, kind: str = "chat",
        data: tuple[tuple[int, int], ...] = (),
    ) -> AsyncGenerator[Event, None]:
        owner = self._owner()
        async with owner._lock:
            req = next(owner._ids)
            opts = GenerateOptions(
                params.max_tokens, params.temperature, params.top_p, params.top_k,
                params.repeat_penalty, params.seed, (*stop, *params.stop),
                add_bos and bool(self.loaded.get("add_bos", True)), kind, params.speculative,
                params.max_time_ms, self.measuring, params.json_schema, params.grammar,
                params.tools if params.tool_choice != "none" else "", params.tool_choice,
                "mistral" if self._chat_format() in chat_prompts.MISTRAL_TOOL_FORMATS
                else "hermes", kind == "chat" and isinstance(text, str)
                and text.rstrip().endswith(thinking.OPEN), params.think_budget_s, data)
            finished = False
            t0 = time.perf_counter()
            t_first = t_last = 0.0
            try:
                worker.send(Generate(req, text, opts))
                while True:
                    match await worker.recv():
                        case Text(r, piece) if r == req:
                            t_last = time.perf_counter()
                            t_first = t_first or t_last
                            yield Token(piece)
                        case Finished(r, stats) if r == req:
                            finished = True
                            yield Done(_stats(stats, t0, t_first, t_last))
                            return
                        case Failed(r, message) if r == req:
                            finished = True
                            yield Error(message)
                            return
                        # else: the tail of an earlier, cancelled request
            except WorkerDied as exc:
                finished = True
                await self._stop_worker()
                yield Error(
                    f"The model worker {exc}. The partial reply is kept; the next request "
                    "starts a fresh worker.")
            finally:
                if not finished:
                    await self._cancel(worker, req)

    async def _cancel(self, worker: WorkerProcess, req: int) -> None:
        """Ask the worker to stop; kill it if it has not stopped within a second."""
        try:
            worker.send(Cancel(req))
            async with asyncio.timeout(CANCEL_GRACE_S):
                while True:
                    msg = await worker.recv()
                    if isinstance(msg, Finished | Failed) and msg.req == req:
                        return
        except (WorkerDied, TimeoutError, asyncio.CancelledError):
            worker.kill()
            for backend in (self, self._owner()):
                if backend.worker is worker:
                    backend.worker = None
                    backend._load_key = None

    async def memory(self) -> dict[str, int]:
        """The worker's resident and peak resident memory, in bytes."""
        if not self._alive():
            return {"rss": 0, "peak_rss": 0}
        assert self.worker is not None
        async with self._owner()._lock:
            self.worker.attach()
            self.worker.send(AskMemory())
            while True:
                msg = await self.worker.recv()
                if isinstance(msg, MemoryUse):
                    return {"rss": msg.rss, "peak_rss": msg.peak_rss}

    async def info(self) -> BackendInfo:
        details: dict[str, Any] = {}
        if self.loaded:
            details = {
                "n_ctx": self.loaded.get("n_ctx"),
                "n_ctx_train": self.loaded.get("n_ctx_train"),
                "pid": self.worker.pid if self.worker else None,
                **self.loaded.get("system_info", {}),
            }
        return BackendInfo(self.name, self.model.name if self.model else None, details)


def _stats(worker: Stats, t0: float, t_first: float, t_last: float) -> Stats:
    """The worker's own counts, decode speed and stop reason (the model's speed, unaffected by
    how busy the caller was when batches arrived); the first token and the total as the caller
    saw them."""
    span, generated = t_last - t_first, worker.generated_tokens
    seen_tps = (generated - 1) / span if generated > 1 and span > 0 else 0.0
    return replace(worker, ttft_ms=(t_first - t0) * 1000 if t_first else 0.0,
                   decode_tps=worker.decode_tps or seen_tps,
                   total_ms=(time.perf_counter() - t0) * 1000)
