"""Edit by instruction, and questions about code: the range to change, the model's rewrite of
it as a diff, and applying that diff safely. Used by the code pane (Ctrl+K), `tramontane edit`
and the server's editors alike; the prompt is engine/prompts/edit.py's.

Lines outside the range never change: the new file is the text before the range, the model's
rewrite, and the text after it, byte for byte. An answer that is not code is never applied.
"""

from __future__ import annotations

import ast
import difflib
import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path

from app.atomic import atomic_write
from app.engine import syntax
from app.engine.backend import ContextChunk, Done, Error, Stats, Thought, Token, printable
from app.engine.prompts import edit as prompts
from app.engine.prompts.fim import approx_tokens
from app.errors import TramontaneError
from app.session.complete import CompletionSession

ANSWER_TOKENS = 2048  # the longest rewrite asked for (a range is also bounded by the context)


@dataclass(frozen=True)
class Span:
    """Lines `start`..`end` (1-based, inclusive) of `text`."""

    text: str
    start: int
    end: int

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    @property
    def before(self) -> str:
        return "".join(self.lines[: self.start - 1])

    @property
    def code(self) -> str:
        return "".join(self.lines[self.start - 1:self.end])

    @property
    def after(self) -> str:
        return "".join(self.lines[self.end:])

    def replaced(self, code: str) -> str:
        return self.before + code + self.after


def span(text: str, start: int, end: int) -> Span:
    count = len(text.splitlines()) or 1
    if not 1 <= start <= end or end > count:
        raise TramontaneError(f"Lines {start}-{end} are outside the file (it has {count} lines).")
    return Span(text, start, end)


def parse_lines(value: str) -> tuple[int, int]:
    """'A-B' or 'A' as two 1-based line numbers."""
    first, _, last = value.partition("-")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        raise TramontaneError(f"--lines {value!r} is not A-B (two line numbers).") from None
    if a < 1 or b < a:
        raise TramontaneError(f"--lines {value!r}: the first line must be 1 or more, and not "
                              "after the last.")
    return a, b


def range_at(text: str, line: int, path: str = "") -> tuple[int, int]:
    """The function, method or class around `line` (the innermost), else its indentation
    block: Python's own parser for .py files, tree-sitter's for the languages Textual's
    syntax extra installs, indentation for the rest."""
    lines = text.splitlines()
    if not 1 <= line <= max(1, len(lines)):
        raise TramontaneError(f"Line {line} is outside the file (it has {len(lines)} lines).")
    suffix = os.path.splitext(path)[1].lower()
    found = _python_range(text, line) if suffix in ("", ".py", ".pyi") else \
        _tree_sitter_range(text, line, path)
    return found or _indent_range(lines, line)


_DEFINITIONS = {"function_declaration", "function_definition", "method_definition",
                "method_declaration", "class_declaration", "function_item", "impl_item",
                "struct_item", "enum_item", "trait_item", "interface_declaration",
                "constructor_declaration", "generator_function_declaration", "type_declaration",
                "enum_declaration"}


def _tree_sitter_range(text: str, line: int, path: str) -> tuple[int, int] | None:
    tree = syntax.tree(text, path)
    if tree is None:
        return None
    best: tuple[int, int] | None = None
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        first, last = node.start_point[0] + 1, node.end_point[0] + 1
        if not first <= line <= last:
            continue
        if node.type in _DEFINITIONS and (best is None or last - first < best[1] - best[0]):
            best = (first, last)
        stack.extend(node.children)
    return best


def _python_range(text: str, line: int) -> tuple[int, int] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    best: tuple[int, int] | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            last = node.end_lineno or node.lineno
            if first <= line <= last and (best is None or last - first < best[1] - best[0]):
                best = (first, last)
    return best


def _indent_range(lines: list[str], line: int) -> tuple[int, int]:
    """The block `line` is in: from the line that opens it (less indented, above) down to the
    last line indented more than that opener."""
    def indent(s: str) -> int:
        return len(s) - len(s.lstrip())

    i = line - 1
    while i > 0 and not lines[i].strip():
        i -= 1
    here = indent(lines[i]) if lines else 0
    start = i
    while start > 0 and (not lines[start].strip() or indent(lines[start]) >= here):
        start -= 1
    if here == 0 or indent(lines[start]) >= here:
        start = i  # at the top level: the paragraph around the line
        while start > 0 and lines[start - 1].strip():
            start -= 1
    base = indent(lines[start])
    end = max(start, i)
    while end + 1 < len(lines) and (not lines[end + 1].strip() or indent(lines[end + 1]) > base):
        end += 1
    while end > start and not lines[end].strip():
        end -= 1
    if end + 1 < len(lines) and indent(lines[end + 1]) == base and \
            lines[end + 1].strip().startswith(("}", ")", "]", "end", "fi", "done")):
        end += 1  # the line that closes the block
    return start + 1, end + 1


def unified(old: str, new: str, path: str) -> str:
    """A unified diff `patch` applies (a last line without a newline is marked so)."""
    name = path or "buffer"
    out = []
    for line in difflib.unified_diff(old.splitlines(keepends=True),
                                     new.splitlines(keepends=True), f"a/{name}", f"b/{name}"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


@dataclass(frozen=True)
class EditResult:
    span: Span
    answer: prompts.Answer
    new_text: str | None  # the whole file after the edit; None when the answer is not code
    stats: Stats
    elapsed_ms: float
    first_token_ms: float



def answer_budget(code: str) -> int:
    """Tokens an answer may take: the range rewritten, with room to grow, bounded."""
    return min(ANSWER_TOKENS, 2 * approx_tokens(code) + 128)


async def stream(session: CompletionSession, instruction: str, where: Span, path: str = "",
                 extra: Sequence[ContextChunk] = (), history: Sequence[str] = ()
                 ) -> AsyncGenerator[Token | Done | Error, None]:
    """The model's answer to an edit, as it streams. `history` holds earlier instructions for
    the same range (a follow-up refines the same edit)."""
    if not instruction.strip():
        raise TramontaneError("Say what to change: the instruction is empty.")
    said = "\n".join([*(f"Earlier: {h}" for h in history), instruction]) if history \
        else instruction
    messages = prompts.edit_messages(said, where.before, where.code, where.after, path, extra)
    params = replace(session.params,
                     max_tokens=max(session.params.max_tokens, answer_budget(where.code)),
                     temperature=0.0, seed=1, work="edit", max_time_ms=0)
    await session.backend.load(session.model, params)
    async with aclosing(session.backend.chat(messages, params)) as events:
        async for event in events:
            if not isinstance(event, Thought):  # a thinking model's reasoning is no edit
                yield event


async def warm(session: CompletionSession, where: Span, path: str = "",
               extra: Sequence[ContextChunk] = ()) -> None:
    """While the user types the instruction: load the model and evaluate the prompt up to
    the instruction (it comes last), so the edit starts at once (as llama.vim's warm-up)."""
    messages = prompts.edit_messages("", where.before, where.code, where.after, path, extra)
    params = replace(session.params, max_tokens=0, work="edit", max_time_ms=0)
    await session.backend.load(session.model, params)
    async with aclosing(session.backend.chat(messages, params)) as events:
        async for _ in events:
            pass


async def run(session: CompletionSession, instruction: str, where: Span, path: str = "",
              extra: Sequence[ContextChunk] = (), history: Sequence[str] = (),
              on_text: Callable[[str], None] | None = None) -> EditResult:
    """The whole edit: the answer, and the new file when the answer is code."""
    t0 = time.perf_counter()
    first = 0.0
    text, stats = "", Stats()
    async with aclosing(stream(session, instruction, where, path, extra, history)) as events:
        async for event in events:
            if isinstance(event, Token):
                first = first or (time.perf_counter() - t0) * 1000
                text += event.text
                if on_text is not None:
                    on_text(text)
            elif isinstance(event, Done):
                stats = event.stats
            elif isinstance(event, Error):
                raise TramontaneError(event.message)
    # an answer cut off by the limit has no closed block: `extract` calls it not code
    answer = prompts.extract(text, where.code, where.before, where.after)
    new = where.replaced(answer.code) if answer.code is not None else None
    return EditResult(where, answer, new, stats, (time.perf_counter() - t0) * 1000, first)


def through_server(url: str, key: str, instruction: str, where: Span, path: str = ""
                   ) -> EditResult:
    """The edit from a running `tramontane serve` (its chat model is warm): the same prompt,
    sent to its /v1/chat/completions."""
    import httpx

    messages = prompts.edit_messages(instruction, where.before, where.code, where.after, path)
    body = {"messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": 0.0, "seed": 1, "max_tokens": answer_budget(where.code)}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    try:
        served = httpx.get(f"{url}/health", timeout=5).json().get("models") or []
        if served:
            body["model"] = served[-1]  # the code model (listed after the chat model)
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers,
                            timeout=600).json()
        text = str(answer["choices"][0]["message"]["content"] or "")
        usage = answer.get("usage", {})
        finish = answer["choices"][0].get("finish_reason")
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise TramontaneError(f"The server at {url} failed: {exc}. Add --no-server to edit in "
                              "this process.") from exc
    elapsed = (time.perf_counter() - t0) * 1000
    timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
    stats = Stats(prompt_tokens=int(usage.get("prompt_tokens", 0)),
                  generated_tokens=int(usage.get("completion_tokens", 0)),
                  decode_tps=float(timings.get("predicted_per_second", 0.0)),
                  total_ms=elapsed, stop_reason="length" if finish == "length" else "stop")
    found = prompts.extract(printable(text), where.code, where.before, where.after)
    new = where.replaced(found.code) if found.code is not None else None
    return EditResult(where, found, new, stats, elapsed, 0.0)


def apply(path: Path, new_text: str, read_text: str) -> Path:
    """Write the edited file atomically (through a symlink, keeping the mode), refusing when the
    file changed since it was read."""
    try:
        now = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TramontaneError(f"Cannot read {path} again before writing: {exc}.") from exc
    if now != read_text:
        raise TramontaneError(f"{path} changed after it was read; nothing was written. Run the "
                              "edit again.")
    try:
        return atomic_write(path, new_text)
    except OSError as exc:
        raise TramontaneError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


def shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
