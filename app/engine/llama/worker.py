"""The worker process that owns llama.cpp. Only this module imports `llama_cpp`.

It reads commands from a pipe and answers them (messages.py names both). Between tokens, and
between chunks of the prompt, it polls the pipe, so a `Cancel` stops the request within one
token or chunk; a closed pipe (the app died) ends the worker.
"""

from __future__ import annotations

import codecs
import functools
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from app.engine.backend import Stats, StopReason
from app.engine.llama.draft import PRIOR, Drafter, load_draft, make_drafter, model_of
from app.engine.llama.draft import words as _drafter_words
from app.engine.llama.messages import (
    AskMemory,
    Cancel,
    Exit,
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
from app.engine.llama.speculative import Meter, Payoff
from app.engine.llama.speculative import decode as _decode
from app.engine.llama.stops import StopScanner
from app.engine.llama.thinking_budget import ThinkBudget
from app.engine.llama.threads import ThreadTuner
from app.engine.llama.tokens import PROMPT_CHUNK, common_prefix, tokenize_chat, tokenize_pieces

# Text is sent at the first token, then in batches at most this far apart: one wake-up of the
# app per batch instead of per token leaves the CPU to llama.cpp's threads.
SEND_EVERY_S = 0.05


def _redirect_stderr(log_path: str | None) -> None:
    """llama.cpp writes to fd 2; send that to the worker log so the terminal stays clean."""
    if not log_path:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


@functools.lru_cache(maxsize=8)
def _grammar(gbnf: str, json_schema: str) -> Any:
    """The compiled grammar for a GBNF text or a JSON Schema (llama.cpp's own converter);
    None for neither. Kept: a client asks with the same schema again and again."""
    if not (gbnf or json_schema):
        return None
    from llama_cpp.llama_grammar import LlamaGrammar

    from app.engine import json_grammar

    return LlamaGrammar.from_string(gbnf or json_grammar.gbnf(json_schema), verbose=False)


@functools.lru_cache(maxsize=8)
def _tool_grammar(tools_json: str, choice: str, style: str) -> str:
    """The grammar that holds a call to the offered tools ('' when none are offered)."""
    if not tools_json:
        return ""
    from app.engine import tools

    return tools.grammar(tools.from_json(tools_json), choice, style)


def _parses(llm: Any, grammar: Any) -> bool:
    """Whether llama.cpp parses the grammar: a grammar it cannot parse gives a null sampler,
    which would crash the worker once chained."""
    import llama_cpp

    made = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar._grammar.encode(),
                                                grammar._root.encode())
    if not made:
        return False
    llama_cpp.llama_sampler_free(made)
    return True


class Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.llm: Any = None
        self.draft_llm: Any = None  # a draft model for speculative decoding (draft.py)
        self.draft_step_s = 0.0  # a draft model's step, measured
        self.draft_acceptance: dict[str, list[float]] = {}  # per kind of work
        self.path = ""
        self.pays = Payoff()
        self.tuner = ThreadTuner(None, 1, False)

    def serve(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            try:
                match msg:
                    case Exit():
                        return
                    case Load(path, opts):
                        self.load(path, opts)
                    case Generate(req, text, opts):
                        self.generate(req, text, opts)
                    case AskMemory():
                        self.conn.send(_memory())
                    case Cancel():
                        pass  # for a request that already ended: nothing to answer
            except Exception as exc:  # a bug here must reach the user as a message
                traceback.print_exc()
                failure = f"The model worker failed: {exc!r}"
                self.conn.send(Failed(msg.req, failure) if isinstance(msg, Generate)
                               else LoadFailed(failure))

    def load(self, path: str, opts: LoadOptions) -> None:
        import llama_cpp

        self.llm = self.draft_llm = None
        self.pays, self.draft_step_s, self.draft_acceptance = Payoff(), 0.0, {}
        try:
            self.llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=opts.context_length,
                n_threads=opts.threads,
                n_gpu_layers=opts.gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            self.conn.send(LoadFailed(f"llama.cpp could not load {path}: {exc}"))
            return
        self.path = path
        llm = self.llm
        if opts.draft_path:
            try:
                self.draft_llm = load_draft(opts.draft_path, llm, opts.threads, opts.gpu_layers)
            except ValueError as exc:
                self.llm = None
                self.conn.send(LoadFailed(str(exc)))
                return
        self.tuner = ThreadTuner(llm, opts.threads, opts.adapt_threads)
        meta = dict(llm.metadata)
        vocab = llm._model.vocab
        bos, eos = llm.token_bos(), llm.token_eos()
        info = {
            "metadata": meta,
            "n_ctx": _usable_ctx(llm),
            "n_ctx_train": llm._model.n_ctx_train(),
            "bos_token_text": _piece(llm, bos),
            "eos_token_text": _piece(llm, eos),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "system_info": _system_info(),
            "draft": opts.draft_path if self.draft_llm is not None else "",
        }
        self.conn.send(Loaded(info))

    def generate(self, req: int, text: str | list[Piece], opts: GenerateOptions) -> None:
        import llama_cpp

        llm = self.llm
        if llm is None:
            self.conn.send(Failed(req, "No model is loaded."))
            return
        try:
            grammar = _grammar(opts.grammar or _tool_grammar(opts.tools, opts.tool_choice,
                                                             opts.tool_format),
                               opts.json_schema)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            self.conn.send(Failed(req, f"The reply's grammar cannot be used: {exc}"))
            return
        if grammar is not None and not _parses(llm, grammar):
            self.conn.send(Failed(req, "The grammar is not valid GBNF (llama.cpp could not "
                                  "parse it; the worker log has where)."))
            return
        t0 = time.perf_counter()
        tokens = tokenize_pieces(llm, text) if isinstance(text, list) else \
            tokenize_chat(llm, text, opts.data)
        bos = llm.token_bos()
        if (opts.add_bos or not tokens) and bos >= 0 and \
                (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)  # an empty prompt (a completion at the top of an empty file)
        if not tokens:
            self.conn.send(Finished(req, Stats()))
            return
        n_ctx = _usable_ctx(llm)
        if len(tokens) >= n_ctx:
            self.conn.send(Failed(req, f"The prompt is {len(tokens)} tokens, more than the "
                                  f"context length of {n_ctx}. Start a new chat or raise the "
                                  "context length."))
            return
        cached = min(common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens),
                     len(tokens) - 1)
        if not self._evaluate(req, llm, tokens, cached):
            self.conn.send(Finished(req, Stats(
                prompt_tokens=len(tokens), cached_tokens=cached, stop_reason="cancelled",
                total_ms=(time.perf_counter() - t0) * 1000)))
            return
        if opts.max_tokens <= 0:  # a warm-up (llama.vim's n_predict 0):
            self.conn.send(Finished(req, Stats(  # the prompt is cached, nothing is generated
                prompt_tokens=len(tokens), cached_tokens=cached, stop_reason="length",
                total_ms=(time.perf_counter() - t0) * 1000)))
            return
        seed = opts.seed
        llm.set_seed(seed if seed >= 0 else int.from_bytes(os.urandom(4), "little"))
        max_tokens = opts.max_tokens
        scanner = StopScanner(list(opts.stop))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        ignore_eos = opts.ignore_eos
        budget_s = opts.max_time_ms / 1000
        kind = opts.kind
        lookup = self._drafter(opts.speculative, kind)
        if lookup is not None:
            lookup.start(tokens)
        meter = Meter()
        generated = 0
        reason: StopReason = "stop"
        outbox, sent_at = "", 0.0
        t_first = t_last = 0.0
        think = ThinkBudget(opts.think_open, opts.think_budget_s, max_tokens) \
            if grammar is None and opts.kind == "chat" else None
        self.tuner.begin()
        try:
            for token in _decode(llm, tokens[-1], opts, lookup, n_ctx, meter,
                                 self.pays.costs, grammar,
                                 think.inject(llm) if think is not None else None,
                                 plain=0 if self.pays.single_tps or lookup is None else 4):
                if not ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                generated += 1
                t_last = time.perf_counter()
                self.tuner.saw(generated, t_last)
                if generated == 1:
                    t_first = t_last
                if think is not None:
                    outbox += scanner.feed(think.forced())  # a block closed for the answer
                piece = decoder.decode(llm.detokenize([token]))
                if think is not None:
                    think.saw(piece, generated, t_last - t_first)
                outbox += scanner.feed(piece)
                if outbox and (generated == 1 or t_last - sent_at >= SEND_EVERY_S):
                    self.conn.send(Text(req, outbox))
                    outbox, sent_at = "", t_last
                if scanner.stopped:
                    break
                if generated >= max_tokens:
                    reason = "length"
                    break
                if len(tokens) + generated >= n_ctx:
                    reason = "context"
                    break
                if budget_s and t_last - t_first > budget_s:  # as t_max_predict_ms: decoding
                    reason = "time"
                    break
                if self.conn.poll() and self._cancelled(req):
                    reason = "cancelled"
                    break
        except RuntimeError as exc:
            llm.n_tokens = 0  # the cache's state is unknown: the next prompt is evaluated anew
            self.conn.send(Failed(req, f"llama.cpp failed while generating: {exc}"))
            return
        finally:
            self.tuner.end()
        closed = think.forced() if think is not None else ""
        rest = outbox + scanner.feed(closed) + scanner.flush() + decoder.decode(b"", final=True)
        if rest:
            self.conn.send(Text(req, rest))
        decode_s = t_last - t_first
        tps = (generated - 1) / decode_s if generated > 1 and decode_s > 0 else 0.0
        self.pays.record(kind, meter)
        model = model_of(lookup)
        if model is not None and model.step_s:
            self.draft_step_s = model.step_s
        self.conn.send(Finished(req, Stats(
            prompt_tokens=len(tokens), cached_tokens=cached, generated_tokens=generated,
            ttft_ms=(t_first - t0) * 1000 if generated else 0.0, decode_tps=tps,
            total_ms=(time.perf_counter() - t0) * 1000, stop_reason=reason,
            drafted_tokens=lookup.drafted if lookup else 0,
            accepted_tokens=lookup.accepted if lookup else 0,
            drafter=_drafter_words(lookup), speedup=self.pays.speedup(tps))))

    def _drafter(self, mode: str, kind: str) -> Drafter | None:
        """Prompt lookup, the draft model, both, or none, as `Payoff` finds they pay."""
        use_lookup, use_model = self.pays.drafters(mode, kind, self.draft_llm is not None)
        single = self.pays.costs.seconds.get(1, 0.0)
        step = self.draft_step_s / single if single and self.draft_step_s else 0.5
        return make_drafter(self.pays.costs.relative, self.draft_llm if use_model else None,
                            use_lookup, step, self.draft_acceptance.setdefault(kind, list(PRIOR)),
                            force=mode == "draft")

    def _evaluate(self, req: int, llm: Any, tokens: list[int], cached: int) -> bool:
        """Evaluate the prompt after the `cached` tokens (all but its last token, which
        `generate` evaluates for the first logits) in chunks, polling for a cancel between
        them. False when cancelled."""
        llm.n_tokens = cached
        pending = tokens[cached:-1]
        for i in range(0, len(pending), PROMPT_CHUNK):
            if i and self.conn.poll() and self._cancelled(req):
                return False
            llm.eval(pending[i:i + PROMPT_CHUNK])
        return True

    def _cancelled(self, req: int) -> bool:
        msg = self.conn.recv()
        if isinstance(msg, Exit):
            raise SystemExit(0)
        return isinstance(msg, Cancel) and msg.req == req


def _usable_ctx(llm: Any) -> int:
    """llama.cpp pads the context it allocates; llama-cpp-python's token buffer is not padded."""
    return int(min(llm.n_ctx(), len(llm.input_ids)))


def _piece(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llm.detokenize([token], special=True)).decode("utf-8", errors="replace")


def _memory() -> MemoryUse:
    """This process's resident memory now and at its peak, in bytes (Linux /proc)."""
    out = {"rss": 0, "peak_rss": 0}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key = "rss" if line.startswith("VmRSS") else "peak_rss"
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return MemoryUse(**out)


def _system_info() -> dict[str, str | bool]:
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": str(getattr(llama_cpp, "__version__", "?")),
        "system_info": raw.decode() if isinstance(raw, bytes) else str(raw),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


def _die_with_parent(parent: int) -> None:
    """The kernel kills this worker the moment the app dies (Linux), whatever llama.cpp is
    doing: a prompt evaluation never polls the pipe, and a 7B model would otherwise hold the
    CPU and gigabytes for minutes after a SIGKILL of the app."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the closed pipe ends the worker at its next poll
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(0)


def worker_main(conn: Connection, log_path: str | None, parent: int = 0) -> None:
    """Entry point of the spawned process."""
    if parent:
        _die_with_parent(parent)
    _redirect_stderr(log_path)
    try:
        Worker(conn).serve()
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        conn.close()
