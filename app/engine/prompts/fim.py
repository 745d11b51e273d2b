"""Fill-in-the-middle prompt formats. Data plus pure functions (where a completion ends is
`fim_end`).

A FIM prompt is a list of pieces: special tokens by their text, and text pieces. The worker
turns each piece into tokens itself (llama-cpp-python's own `suffix=` path hard-codes the FIM
token ids to 0, and llama.cpp's /infill does not know Codestral's tokens).

Codestral / Mistral v3 puts the suffix first: `<s>[SUFFIX]{suffix}[PREFIX]{prefix}`, with no
middle token; the prefix is encoded with SentencePiece's leading space and the suffix without
it, as mistral-common does. Suffix-first is what makes the KV cache pay: while the user types at
the cursor the suffix and the start of the prefix do not change, so the worker's prompt shares
everything up to the cursor with the previous one and evaluates only the typed tokens. With
prefix-first layouts (Qwen, StarCoder2, ...) the suffix comes after the typed text and is
evaluated again on each request.

Moving the suffix's KV cells instead (keep the evaluated tail, shift its positions after the
typed text) was tried and measured not to work: the model then answered as if the last edit
had not happened (pass@1 0.45 against 0.825 while typing). Prefix-first layouts cannot reuse
the tail; suffix-first layouts get exact reuse, which is why Qwen's format here puts the suffix
first (StarCoder's SPM order).

Chunks of other files (from plugins) come first, so they stay a stable start of the prompt:
with the format's file separator where it has one (Qwen, StarCoder2's repository-level
layout), else as comment lines at the start of the prefix. They get what the prefix and suffix
leave of the budget, and at least a quarter of it; whole chunks only, taken most useful first
and written most useful last, nearest the code being completed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from app.engine.backend import ContextChunk


@dataclass(frozen=True)
class Piece:
    kind: str  # "special" or "text"
    value: str
    space_prefix: bool = False  # SentencePiece's leading space, as a standalone encode adds


@dataclass(frozen=True)
class FimFormat:
    name: str
    build: Callable[[str, str], list[Piece]]
    stops: list[str] = field(default_factory=list)
    markers: tuple[str, ...] = ()  # special tokens a vocabulary must have for this format
    file_sep: str = ""  # the repository-level layout's file separator, if the format has one


def _sp(text: str) -> Piece:
    return Piece("special", text)


def _codestral(prefix: str, suffix: str) -> list[Piece]:
    pieces = [_sp("<s>"), _sp("[SUFFIX]")]
    if suffix:
        pieces.append(Piece("text", suffix))
    return pieces + [_sp("[PREFIX]"), Piece("text", prefix, space_prefix=True)]


def _psm(pre: str, suf: str, mid: str, bos: str = "") -> Callable[[str, str], list[Piece]]:
    def build(prefix: str, suffix: str) -> list[Piece]:
        head = [_sp(bos)] if bos else []
        return head + [_sp(pre), Piece("text", prefix), _sp(suf), Piece("text", suffix), _sp(mid)]
    return build


def _spm(pre: str, suf: str, mid: str) -> Callable[[str, str], list[Piece]]:
    """Suffix first, as StarCoder's SPM mode writes it (an empty prefix marker, the suffix,
    the middle marker, then the prefix): typing at the cursor changes only the end of the
    prompt, so llama.cpp's prefix cache keeps everything before the typed text, exactly (as
    Codestral's own layout does). Qwen2.5-Coder answers it as well as its PSM layout."""
    def build(prefix: str, suffix: str) -> list[Piece]:
        return [_sp(pre), _sp(suf), Piece("text", suffix), _sp(mid), Piece("text", prefix)]
    return build


def _codellama(prefix: str, suffix: str) -> list[Piece]:
    return [_sp("<s>"), _sp("<PRE>"), Piece("text", " " + prefix), _sp("<SUF>"),
            Piece("text", " " + suffix), _sp("<MID>")]


def _continue(prefix: str, suffix: str) -> list[Piece]:
    return [Piece("text", prefix)]


FORMATS: dict[str, FimFormat] = {
    "codestral": FimFormat("codestral", _codestral, ["</s>", "[PREFIX]", "[SUFFIX]"],
                           ("[SUFFIX]", "[PREFIX]")),
    # Qwen2.5-Coder: suffix first (see _spm; bench/fim_quality.py --formats compares the two)
    "qwen": FimFormat("qwen", _spm("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                      ["<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
                       "<|fim_prefix|>", "<|im_end|>"],
                      ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"),
                      file_sep="<|file_sep|>"),
    "qwen-psm": FimFormat("qwen-psm", _psm("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                          ["<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
                           "<|fim_prefix|>", "<|im_end|>"],
                          ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"),
                          file_sep="<|file_sep|>"),
    "codegemma": FimFormat("codegemma", _psm("<|fim_prefix|>", "<|fim_suffix|>",
                                             "<|fim_middle|>"),
                           ["<|file_separator|>", "<|fim_prefix|>", "<eos>"],
                           ("<|fim_prefix|>", "<|fim_middle|>", "<|file_separator|>")),
    "starcoder2": FimFormat("starcoder2", _psm("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
                            ["<|endoftext|>", "<file_sep>", "<fim_prefix>"],
                            ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), file_sep="<file_sep>"),
    "deepseek": FimFormat("deepseek", _psm("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
                          ["<|EOT|>", "<｜end▁of▁sentence｜>"],
                          ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>")),
    "codellama": FimFormat("codellama", _codellama, ["<EOT>", "</s>"], ("<PRE>", "<SUF>", "<MID>")),
    "continue": FimFormat("continue", _continue, []),
}
MARKERS = sorted({m for f in FORMATS.values() for m in f.markers})


def detect(catalog_format: str, specials: set[str], architecture: str = "") -> FimFormat:
    """The catalog's format if it names one, else the one whose tokens the vocabulary has."""
    if catalog_format in FORMATS:
        return FORMATS[catalog_format]
    for name in ("codestral", "starcoder2", "deepseek", "codellama", "qwen", "codegemma"):
        fmt = FORMATS[name]
        if set(fmt.markers) <= specials:
            if name == "qwen" and architecture.startswith("gemma"):
                return FORMATS["codegemma"]
            return fmt
    return FORMATS["continue"]


def render(pieces: list[Piece]) -> str:
    """The prompt as text, special tokens written out (for --show-prompt)."""
    return "".join((" " + p.value) if p.space_prefix else p.value for p in pieces)


def trim_to_budget(prefix: str, suffix: str, budget: int, count: Callable[[str], int],
                   prefix_share: float = 0.75) -> tuple[str, str]:
    """Cut the prefix's first lines and the suffix's last lines until both fit `budget`
    tokens; the prefix gets most of it, and what the suffix leaves unused. Each line is
    counted once (linear in the file: a 5 MB file is cut in well under a second)."""
    suffix_budget = int(budget * (1 - prefix_share))
    if count(suffix) > suffix_budget:
        suffix = "".join(_fitting(suffix.splitlines(keepends=True), suffix_budget, count))
    prefix_budget = budget - count(suffix)
    if count(prefix) > prefix_budget:
        # drop whole lines from the start: a stable start keeps the KV cache useful
        lines = prefix.splitlines(keepends=True)
        kept = _fitting(lines[::-1], prefix_budget, count)[::-1] or lines[-1:]
        prefix = "".join(kept)
        if count(prefix) > prefix_budget:  # one huge line: keep its end
            prefix = prefix[-max(1, prefix_budget * 3):]
    return prefix, suffix


def _fitting(lines: list[str], budget: int, count: Callable[[str], int]) -> list[str]:
    """The leading `lines` whose counts add up to at most `budget`."""
    used = 0
    for i, line in enumerate(lines):
        used += count(line)
        if used > budget:
            return lines[:i]
    return lines


_LINE_COMMENT = {".c": "//", ".h": "//", ".cc": "//", ".cpp": "//", ".hpp": "//", ".java": "//",
                 ".js": "//", ".jsx": "//", ".ts": "//", ".tsx": "//", ".go": "//", ".rs": "//",
                 ".swift": "//", ".kt": "//", ".cs": "//", ".scala": "//", ".dart": "//",
                 ".php": "//", ".lua": "--", ".sql": "--", ".hs": "--", ".vim": '"', ".el": ";;",
                 ".lisp": ";;", ".clj": ";;", ".tex": "%", ".erl": "%", ".m": "%"}


def as_comments(chunks: Sequence[ContextChunk], path: str) -> str:
    """Chunks as comment lines in the language of `path` (# when it is not known), for
    formats without a file separator."""
    mark = _LINE_COMMENT.get(PurePath(path).suffix.lower(), "#")
    out = []
    for chunk in chunks:
        lines = [f"{mark} {chunk.path}"] + [f"{mark} {ln}".rstrip() for ln in
                                            chunk.text.rstrip("\n").split("\n")]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def chunk_tokens(text: str) -> int:
    """A generous over-count for optional context: identifiers and numbers can run under 2.5
    bytes a token, and a chunk that does not fit would cost the whole request."""
    return len(text.encode("utf-8")) // 2 + 1


def fit_chunks(chunks: Sequence[ContextChunk], budget: int,
               cost_of: Callable[[ContextChunk], int]) -> list[ContextChunk]:
    """The chunks that fit `budget` tokens, in their order; one that does not fit is skipped."""
    kept: list[ContextChunk] = []
    for chunk in chunks:
        cost = cost_of(chunk)
        if cost <= budget:
            kept.append(chunk)
            budget -= cost
    return kept


def room_for_chunks(prefix: str, suffix: str, budget: int, path: str) -> int:
    """Tokens of `budget` that the prefix, the suffix and the file's name leave over."""
    return budget - approx_tokens(prefix) - approx_tokens(suffix) - approx_tokens(path) - 4


def comment_head(prefix: str, suffix: str, params: Any, extra: Sequence[ContextChunk],
                 path: str) -> str:
    """The other files as comments to put before the prefix, for a server that builds the FIM
    prompt itself (Ollama's template with a suffix, an OpenAI server's `suffix`): as many
    chunks as the context leaves room for."""
    room = room_for_chunks(prefix, suffix, fim_budget(params.context_length, params), path)
    return as_comments(choose_chunks(FORMATS["continue"], extra, path, room), path)


def choose_chunks(fmt: FimFormat, extra: Sequence[ContextChunk], path: str,
                  room: int) -> list[ContextChunk]:
    """The chunks that fit `room`, counted as `fmt` writes them, in writing order: the most
    useful last, nearest the code."""
    if fmt.file_sep:
        def cost(c: ContextChunk) -> int:
            return chunk_tokens(f"{c.path}\n{c.text}\n") + 2
    else:
        def cost(c: ContextChunk) -> int:
            return chunk_tokens(as_comments([c], path))
    return fit_chunks(extra, room, cost)[::-1]


def fim_budget(n_ctx: int, params: Any) -> int:
    """Prompt tokens a completion may use: the context less the reply and a margin."""
    return max(64, n_ctx - int(getattr(params, "max_tokens", 128)) - 32)


@dataclass(frozen=True)
class FimRequest:
    format: FimFormat
    pieces: list[Piece]
    stops: list[str]
    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        return render(self.pieces)


def approx_tokens(text: str) -> int:
    """A safe over-count for budgeting: code runs 3-4 bytes a token, but Qwen's and Llama's
    vocabularies give each digit a token of its own (a data file of numbers would overflow)."""
    digits = sum(ch.isdigit() for ch in text)
    return digits + (len(text.encode("utf-8", "surrogatepass")) - digits) // 3 + 1


def request(format_name: str, prefix: str, suffix: str, n_ctx: int, params: Any,
            extra: Sequence[ContextChunk] = (), path: str = "") -> FimRequest:
    """The prompt for one completion: format, context budget, extra chunks, stop strings."""
    fmt = FORMATS.get(format_name) or FORMATS["continue"]
    budget = fim_budget(n_ctx, params)
    own = int(budget * 0.75) if extra else budget
    prefix, suffix = trim_to_budget(prefix, suffix if fmt.name != "continue" else "", own,
                                    approx_tokens)
    chunks = choose_chunks(fmt, extra, path, room_for_chunks(prefix, suffix, budget, path))
    stops = list(fmt.stops)
    cursor_rest = suffix.split("\n", 1)[0]
    if cursor_rest.strip() and not (prefix == "" or prefix.endswith("\n")):
        stops.append("\n")  # mid-line with text after the cursor: one line is all we keep
    if chunks and fmt.file_sep:
        head: list[Piece] = []
        for chunk in chunks:
            head += [_sp(fmt.file_sep), Piece("text", f"{chunk.path}\n{chunk.text.rstrip()}\n")]
        head += [_sp(fmt.file_sep), Piece("text", f"{path or 'current'}\n")]
        pieces = head + fmt.build(prefix, suffix)
    else:
        pieces = fmt.build(as_comments(chunks, path) + prefix, suffix)
    return FimRequest(fmt, pieces, stops, prefix, suffix)


@dataclass(frozen=True)
class Sent:
    """What a backend sends for one completion: the prompt, the suffix when the server fills in
    the middle itself (None when the prompt holds it), and the stop strings."""

    mode: str  # "prompt": our FIM format; "suffix": the server's template; "infill": /infill
    prompt: str
    suffix: str | None
    stops: list[str]


def for_mode(mode: str, format_name: str, prefix: str, suffix: str, n_ctx: int, params: Any,
             extra: Sequence[ContextChunk] = (), path: str = "") -> Sent:
    """The one builder behind every backend: `mode` says who fills in the middle."""
    if mode in ("suffix", "infill"):  # the server's template (or /infill) takes the suffix
        head = comment_head(prefix, suffix, params, extra, path) if mode == "suffix" else ""
        return Sent(mode, head + prefix, suffix, list(params.stop))
    req = request(format_name, prefix, suffix, n_ctx, params, extra, path)
    return Sent("prompt", req.text, None, [s for s in [*req.stops, *params.stop] if s])
