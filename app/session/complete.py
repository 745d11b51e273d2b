"""Completing code at a cursor: the code model, its FIM format, the suggestion cache, and
reading files safely (binary and non-UTF-8 files are refused)."""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path

from app.engine.backend import Backend, ContextChunk, Done, Error, ModelRef, Params, Stats, Token
from app.engine.prompts import cursor, fim, fim_end
from app.errors import TramontaneError
from app.files import NotTextError, decode_text, read_text

__all__ = ["CompletionSession", "NotTextError", "decode_text", "read_text_file", "split_at"]
from app.models.gguf_file import read_header
from app.models.local import LocalModel
from app.plugins.manager import PluginHost
from app.session.context import AppContext

SOURCE_LIMIT = 8_000_000  # bytes of a file the code pane or `complete` opens
WINDOW_STEP = 8  # the local window's edges move in steps of this many lines
CONTEXT_CHARS = 2000  # around the cursor, for the cache key
CACHE_SIZE = 256
CUT = ("length", "time", "context", "cancelled")  # stop reasons where the model did not end it
FIM_CONTEXT_TIMEOUT_S = 0.5  # a completion waits this long at most for plugins' context
FILE_EVENT_TIMEOUT_S = 5.0


def read_text_file(path: Path) -> str:
    """A source file for the code pane or `complete`: a regular UTF-8 file, bounded."""
    return read_text(path, SOURCE_LIMIT, str(path))


def split_at(text: str, line: int, col: int) -> tuple[str, str]:
    """Prefix and suffix at a 1-based line and column, as Vim's line('.') and col('.'): the
    column counts bytes, the cursor stands before that byte, and length + 1 is the end."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise TramontaneError(f"Line {line} is outside the file (it has {len(lines)} lines).")
    raw = lines[line - 1].encode("utf-8")
    if not 1 <= col <= len(raw) + 1:
        raise TramontaneError(f"Column {col} is outside line {line} ({len(raw)} bytes long).")
    try:
        before = raw[: col - 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TramontaneError(f"Column {col} falls inside a character on line {line}.") from exc
    after = raw[col - 1:].decode("utf-8")
    prefix = "\n".join(lines[: line - 1] + [before])
    suffix = "\n".join([after] + lines[line:])
    return prefix, suffix


@dataclass
class Completion:
    text: str
    raw: str
    stats: Stats
    source: str  # "model", "cache", "typed-ahead"
    elapsed_ms: float


def fim_format_of(model: LocalModel) -> str:
    """The catalog's FIM format, else the one the GGUF vocabulary's special tokens give."""
    if model.catalog and model.catalog.fim_format:
        return model.catalog.fim_format
    head = read_header(model.path, set(fim.MARKERS))
    return fim.detect("", head.found_tokens, head.architecture).name


def local_window(prefix: str, suffix: str, before: int, after: int,
                 step: int = WINDOW_STEP) -> tuple[str, str]:
    """The lines around the cursor a completion sees, as llama.vim's n_prefix / n_suffix:
    at least `before` lines before the cursor's line and `after` after it (0: the whole side).
    Both edges sit on multiples of `step` lines of the file, so while the user types on a line
    the window, and so the prompt's head and tail, stay the same and their KV is reused."""
    cursor_line = prefix.count("\n")
    if before > 0:
        start = max(0, cursor_line - before)
        start -= start % step
        prefix = "\n".join(prefix.split("\n")[start:])
    if after > 0:
        last = -(-(cursor_line + after) // step) * step  # the window's last line, rounded up
        suffix = "\n".join(suffix.split("\n")[: last - cursor_line + 1])
    return prefix, suffix


def code_window(ctx: AppContext) -> tuple[int, int]:
    """[code] prefix_lines and suffix_lines from config.toml."""
    code = ctx.cfg.section("code")
    return int(code.get("prefix_lines") or 0), int(code.get("suffix_lines") or 0)


def cursor_of(prefix: str) -> tuple[int, int]:
    """The 0-based (line, column) where `prefix` ends."""
    return prefix.count("\n"), len(prefix) - prefix.rfind("\n") - 1


def shown_path(path: str) -> str:
    """A file's name as a prompt shows it: relative to the working folder when inside it."""
    if not path:
        return ""
    rel = os.path.relpath(path)
    shown = Path(path).name if rel.startswith("..") else rel
    # a name that is not UTF-8 (bytes Python keeps as surrogates) shows with U+FFFD
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def code_params(ctx: AppContext, max_tokens: int | None = None) -> Params:
    """Completion's parameters: [params] for the model's context and threads, [code] for its
    sampling (the one place completion defaults live)."""
    code = ctx.cfg.section("code")
    return replace(ctx.default_params(), max_tokens=max_tokens or int(code["max_tokens"]),
                   temperature=float(code["temperature"]), seed=int(code["seed"]),
                   max_time_ms=int(code["max_time_ms"]))


class CompletionSession:
    def __init__(self, backend: Backend, model: ModelRef, params: Params,
                 plugins: PluginHost | None = None, window: tuple[int, int] = (0, 0)) -> None:
        self.backend = backend
        self.model = model
        self.params = params
        self.plugins = plugins
        self.window = window  # lines before and after the cursor a request sees; 0: all
        self.last_extra: list[ContextChunk] = []  # what plugins added to the last request
        self._cache: OrderedDict[str, str] = OrderedDict()
        # prefix, suffix, suggestion, and what else the request asked (see `variant`)
        self._last: tuple[str, str, str, str] | None = None

    @classmethod
    def for_context(cls, ctx: AppContext, backend: Backend, model: str | None = None,
                    max_tokens: int | None = None) -> CompletionSession:
        local = ctx.resolve_model(model or ctx.default_model_name("code"))
        params = code_params(ctx, max_tokens)
        ref = replace(ctx.placed(local, params), fim_format=fim_format_of(local))
        return cls(backend, ref, params, ctx.plugins, code_window(ctx))

    @classmethod
    def for_code(cls, ctx: AppContext, model: str | None = None,
                 max_tokens: int | None = None) -> CompletionSession:
        """Completion on the backend `ctx` is set to: the code worker for llama.cpp, else the
        Ollama or OpenAI-compatible server."""
        if ctx.uses_server:
            return cls.for_server(ctx, model, max_tokens)
        return cls.for_context(ctx, ctx.code_backend, model, max_tokens)

    @classmethod
    def for_server(cls, ctx: AppContext, model: str | None,
                   max_tokens: int | None = None) -> CompletionSession:
        """Completion on the Ollama or OpenAI-compatible server `ctx` is set to (each picks
        how to fill in the middle: the server's own FIM, else our format for the model)."""
        ref = ctx.server_model(model, "code")
        params = code_params(ctx, max_tokens)
        return cls(ctx.backend, ref, params, ctx.plugins, code_window(ctx))

    def visible(self, prefix: str, suffix: str) -> tuple[str, str]:
        """What the model sees of the file: the local window around the cursor."""
        return local_window(prefix, suffix, *self.window)

    def prompt(self, prefix: str, suffix: str, n_ctx: int | None = None,
               extra: list[ContextChunk] | None = None, path: str = "") -> fim.FimRequest:
        prefix, suffix = self.visible(prefix, suffix)
        return fim.request(self.model.fim_format, prefix, suffix,
                           n_ctx or self.params.context_length, self.params, extra or [],
                           shown_path(path))

    def touched(self, path: str, event: str, text: str) -> None:
        """Tell plugins the user opened, saved or edited a file (in the background)."""
        if self.plugins is not None:
            self.plugins.notify("file_touched", FILE_EVENT_TIMEOUT_S, path=path, event=event,
                                text=text)

    async def gather_context(self, path: str, prefix: str, suffix: str) -> list[ContextChunk]:
        """Chunks of other files from `fim_context` plugins, within their time limit."""
        if self.plugins is None or not path:
            return []
        found = await self.plugins.acall("fim_context", FIM_CONTEXT_TIMEOUT_S, path=path,
                                         prefix=prefix, suffix=suffix, cursor=cursor_of(prefix))
        return [c for chunks in found for c in chunks if isinstance(c, ContextChunk)]

    @staticmethod
    def _key(prefix: str, suffix: str, variant: str = "") -> str:
        around = prefix[-CONTEXT_CHARS:] + "\0" + suffix[:CONTEXT_CHARS // 2] + "\0" + variant
        return hashlib.sha256(around.encode()).hexdigest()

    @staticmethod
    def variant(params: Params | None, extra: Sequence[ContextChunk], path: str) -> str:
        """What besides the place a suggestion depends on: a client's n_predict and sampling,
        its other files' chunks, the file's name. One client's answer is never another's."""
        if params is None and not extra and not path:
            return ""
        p = params or Params()
        chunks = hashlib.sha256("\0".join(f"{c.path}\0{c.text}" for c in extra).encode())
        return f"{p.max_tokens}|{p.temperature}|{p.top_k}|{p.top_p}|{p.seed}|{path}|" \
               f"{chunks.hexdigest()[:16]}"

    def cached(self, prefix: str, suffix: str, variant: str = "") -> str | None:
        """A suggestion without asking the model: the same place, or the user typed the start
        of the last suggestion (for a request that asked the same otherwise)."""
        hit = self._cache.get(self._key(prefix, suffix, variant))
        if hit is not None:
            return hit
        if self._last is not None:
            old_prefix, old_suffix, suggestion, old_variant = self._last
            if suffix == old_suffix and prefix.startswith(old_prefix) and \
                    variant == old_variant:
                typed = prefix[len(old_prefix):]
                if typed and suggestion.startswith(typed) and len(suggestion) > len(typed):
                    return suggestion[len(typed):]
        return None

    async def _ask(self, prefix: str, suffix: str, path: str,
                   params: Params | None = None,
                   first_line: Callable[[str], None] | None = None) -> tuple[str, Stats]:
        raw, stats = "", Stats()
        asked, typed = cursor.heal(prefix)  # the blanks at the cursor: the model writes them
        stream_of = self.backend.complete(asked, suffix, params or self.params, self.last_extra,
                                          shown_path(path))
        async with aclosing(stream_of) as stream:
            async for event in stream:
                match event:
                    case Token(piece):
                        had_line = "\n" in raw
                        if typed:  # the blanks already typed are not written again
                            piece, typed = cursor.realign_piece(piece, typed)
                        raw += piece
                        if first_line is not None and not had_line and "\n" in raw.lstrip("\n"):
                            # the first line is whole: show it while the rest comes
                            line = fim_end.postprocess(raw, prefix, suffix, True, path).split("\n", 1)[0]
                            if line.strip():
                                first_line(line)
                    case Done(s):
                        stats = s
                    case Error(message):
                        raise TramontaneError(message)
        return raw, stats

    async def speculate(self, prefix: str, suffix: str, suggestion: str,
                        path: str = "") -> None:
        """The suggestion that will follow accepting `suggestion`, computed now and kept in
        the cache (as llama.vim does): Tab, then the next suggestion is at once. The last
        suggestion stays the one typing-ahead matches against."""
        if not suggestion or self.cached(prefix + suggestion, suffix) is not None:
            return
        last = self._last
        try:
            await self.complete(prefix + suggestion, suffix, path)
        finally:
            self._last = last

    async def preview(self, prefix: str, suffix: str, path: str = "") -> fim.Sent:
        """Exactly what the backend will send for a completion here (`complete --show-prompt`);
        the plugins' chunks gathered now are the ones the next `complete(..., again=True)`
        sends."""
        seen_prefix, seen_suffix = await self._prepare(prefix, suffix, path)
        sent: fim.Sent = await self.backend.fim_prompt(cursor.heal(seen_prefix)[0], seen_suffix,
                                                       self.params, self.last_extra,
                                                       shown_path(path))
        return sent

    async def _prepare(self, prefix: str, suffix: str, path: str,
                       extra: Sequence[ContextChunk] = (), again: bool = False,
                       ) -> tuple[str, str]:
        """Before asking the model: the other files' chunks (the client's, then the
        plugins'; `again`: those of the last preview), the model loaded, and the window of the
        file it sees."""
        if not again:
            self.last_extra = [*extra, *await self.gather_context(path, prefix, suffix)]
        await self.backend.load(self.model, self.params)
        return self.visible(prefix, suffix)

    async def warm(self, prefix: str, suffix: str, path: str = "") -> None:
        """Evaluate this place's prompt (the file's window and the plugins' chunks) while the
        user reads, so the first suggestion in a file finds it cached: one token is asked
        for, and nothing is kept as a suggestion."""
        seen_prefix, seen_suffix = await self._prepare(prefix, suffix, path)
        await self._ask(seen_prefix, seen_suffix, path, replace(self.params, max_tokens=1))

    async def complete(self, prefix: str, suffix: str, path: str = "",
                       params: Params | None = None,
                       extra: Sequence[ContextChunk] = (),
                       first_line: Callable[[str], None] | None = None,
                       again: bool = False) -> Completion:
        """A suggestion at the cursor. `params` overrides the session's for this request (a
        server client's n_predict, time cap, sampling); `extra` chunks come from the client
        (llama.vim's input_extra) and go first, before the plugins' chunks. `again`: with the
        chunks the last `preview` gathered (the plugins are not asked twice)."""
        t0 = time.perf_counter()
        variant = self.variant(params, extra, path) if params is not None or extra else ""
        hit = self.cached(prefix, suffix, variant)
        if hit is not None:
            return Completion(hit, hit, Stats(), "cache", (time.perf_counter() - t0) * 1000)
        seen_prefix, seen_suffix = await self._prepare(prefix, suffix, path, extra, again)
        try:
            raw, stats = await self._ask(seen_prefix, seen_suffix, path, params, first_line)
        except TramontaneError:
            if not self.last_extra:
                raise
            self.last_extra = []  # plugins' context must never cost the completion: once more
            raw, stats = await self._ask(seen_prefix, seen_suffix, path, params)
        text = fim_end.postprocess(raw, prefix, suffix, stats.stop_reason in CUT, path)
        key = self._key(prefix, suffix, variant)
        self._cache[key] = text
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        self._last = (prefix, suffix, text, variant)
        return Completion(text, raw, stats, "model", (time.perf_counter() - t0) * 1000)
