"""The edit prompt (rewrite a range of a file by instruction) and reading its answer.

A small model edits best by rewriting one bounded range whole, in one code block, with a few
lines around it to see where it is (as llama.vim's instruction edit and aider's whole-range
format). The tool, not the model, turns the answer into a diff. The range goes into the prompt
exactly as it is in the file: the answer copies most of it, which is what prompt lookup drafts
(engine/llama/lookup.py).

Layout of the user message:

    File: PATH                      (when known)
    Other files (for reference):    (repository-context chunks, when any)
    The code just before it:  ```LANG ... ```
    The code to change:       ```LANG ... ```
    The code just after it:   ```LANG ... ```
    Instruction: ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from app.engine.backend import ContextChunk, Message

SYSTEM = (
    "You are an expert programmer who edits code. You are given a piece of code from a file "
    "and an instruction. Rewrite the whole piece of code, applying the instruction and "
    "changing nothing else. Reply with the complete rewritten piece in a single fenced code "
    "block and nothing else: no explanation. If the instruction cannot be applied, say why "
    "in one sentence, without a code block."
)
ASK_SYSTEM = (
    "You are an expert programmer. Answer questions about the code you are shown, briefly and "
    "precisely, in Markdown. When you change code, give the whole changed piece in one fenced "
    "code block."
)
AROUND = 6  # lines of context shown before and after the range

_LANG = {".py": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "tsx",
         ".jsx": "jsx", ".rs": "rust", ".go": "go", ".c": "c", ".h": "c", ".cpp": "cpp",
         ".hpp": "cpp", ".java": "java", ".rb": "ruby", ".sh": "bash", ".md": "markdown",
         ".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".html": "html",
         ".css": "css", ".sql": "sql", ".lua": "lua", ".php": "php", ".kt": "kotlin",
         ".swift": "swift", ".cs": "csharp"}


def language(path: str) -> str:
    return _LANG.get(PurePath(path).suffix.lower(), "")


def _fence(text: str, lang: str) -> str:
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"```{lang}\n{body}```"


def edit_messages(instruction: str, before: str, code: str, after: str, path: str = "",
                  extra: Sequence[ContextChunk] = (), system: str = SYSTEM) -> list[Message]:
    """The chat messages that ask the model to rewrite `code` by `instruction`; `before` and
    `after` are the whole text around it (only the nearest AROUND lines are shown)."""
    lang = language(path)
    parts = [f"File: {path}"] if path else []
    for chunk in extra:
        parts.append(f"From {chunk.path} (for reference):\n{_fence(chunk.text, language(chunk.path))}")
    head = "".join(before.splitlines(keepends=True)[-AROUND:])
    tail = "".join(after.splitlines(keepends=True)[:AROUND])
    if head.strip():
        parts.append("The code just before it:\n" + _fence(head, lang))
    parts.append("The code to change:\n" + _fence(code, lang))
    if tail.strip():
        parts.append("The code just after it:\n" + _fence(tail, lang))
    parts.append(f"Instruction: {instruction.strip()}\n\nReply with the whole rewritten code "
                 "to change, in one code block.")
    return [Message("system", system), Message("user", "\n\n".join(parts))]


def ask_messages(question: str, before: str, code: str, after: str,
                 path: str = "") -> list[Message]:
    """A question about `code` (the selection or the range at the cursor)."""
    lang = language(path)
    where = f" from {path}" if path else ""
    head = "".join(before.splitlines(keepends=True)[-AROUND:])
    text = (f"Here is some code{where}:\n" + _fence(code, lang) +
            (f"\n\nIt comes just after:\n{_fence(head, lang)}" if head.strip() else "") +
            f"\n\n{question.strip()}")
    return [Message("system", ASK_SYSTEM), Message("user", text)]


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n`]*$", re.M)


@dataclass(frozen=True)
class Answer:
    """What the model said: the new code, or `None` when the answer is not code (a refusal,
    an explanation, a cut-off block), with the text to show instead."""

    code: str | None
    text: str


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text that are closed."""
    blocks: list[str] = []
    marks = list(_FENCE.finditer(text))
    i = 0
    while i + 1 < len(marks):
        opening, closing = marks[i], marks[i + 1]
        blocks.append(text[opening.end() + 1:closing.start()])
        i += 2
    return blocks


def extract(answer: str, original: str, before: str = "", after: str = "") -> Answer:
    """The rewritten range from the model's answer: the first closed code block, fences
    stripped, without the context lines around the range that a small model copies in,
    re-indented when the model dropped the range's common indentation, with the original's
    trailing newline. Anything else is not code and is never applied."""
    blocks = code_blocks(answer)
    if not blocks or not blocks[0].strip():
        return Answer(None, answer.strip())
    code = _one_block(_without_context(blocks[0], original, before, after), original)
    if not code.strip():
        return Answer(None, answer.strip())
    code = _reindent(code, original)
    if original.endswith("\n") and not code.endswith("\n"):
        code += "\n"
    elif not original.endswith("\n") and code.endswith("\n"):
        code = code[:-1]
    return Answer(code, answer.strip())


def _solid(lines: list[str]) -> list[tuple[int, str]]:
    return [(i, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]


def _head_echo(lines: list[str], context: list[str]) -> int:
    """How many of `lines`' first lines repeat the end of `context` (blank lines aside): the
    index of the first line after the echo, or 0."""
    mine, theirs = _solid(lines), [t for _, t in _solid(context)]
    for k in range(min(len(mine), len(theirs)), 0, -1):
        if [t for _, t in mine[:k]] == theirs[-k:]:
            return mine[k - 1][0] + 1
    return 0


def _tail_echo(lines: list[str], context: list[str]) -> int:
    """Where the repeat of `context`'s first lines at the end of `lines` starts, or len."""
    mine, theirs = _solid(lines), [t for _, t in _solid(context)]
    for k in range(min(len(mine), len(theirs)), 0, -1):
        if [t for _, t in mine[-k:]] == theirs[:k]:
            return mine[-k][0]
    return len(lines)


def _without_context(code: str, original: str, before: str, after: str) -> str:
    """`code` without the lines before or after the range that the model repeated (the
    prompt shows AROUND lines each side), unless the range itself starts or ends that way."""
    lines = code.splitlines(keepends=True)
    orig = original.splitlines(keepends=True)
    head = before.splitlines(keepends=True)[-AROUND:]
    tail = after.splitlines(keepends=True)[:AROUND]
    cut = _head_echo(lines, head)
    if cut and _head_echo(orig, head) == 0:
        lines = lines[cut:]
        while lines and not lines[0].strip() and (not orig or orig[0].strip()):
            lines = lines[1:]
    cut = _tail_echo(lines, tail)
    if cut < len(lines) and _tail_echo(orig, tail) == len(orig):
        lines = lines[:cut]
        while lines and not lines[-1].strip() and (not orig or orig[-1].strip()):
            lines = lines[:-1]
    return "".join(lines)


_OPENER = re.compile(r"^\s*(?:async\s+def|def|class)\s+(\w+)")


def _one_block(code: str, original: str) -> str:
    """When the range is one Python definition (decorators, `def`/`class`, its body), so is
    the answer: lines the model wrote before the definition's first line or after its body
    (more of the file, copied from the context) are dropped."""
    orig = original.splitlines(keepends=True)
    head = next((i for i, ln in enumerate(orig) if _OPENER.match(ln)), None)
    if head is None or any(ln.strip() and not ln.lstrip().startswith("@")
                           for ln in orig[:head]):
        return code
    opener = _OPENER.match(orig[head])
    assert opener is not None
    base = len(orig[head]) - len(orig[head].lstrip())
    if any(ln.strip() and len(ln) - len(ln.lstrip()) <= base and
           not ln.lstrip().startswith((")", "]", "}"))
           for ln in orig[head + 1:]):
        return code  # more than one statement at the definition's level
    lines = code.splitlines(keepends=True)
    first = next((i for i, ln in enumerate(lines)
                  if (m := _OPENER.match(ln)) and m.group(1) == opener.group(1)), None)
    if first is None:
        return code
    indent = len(lines[first]) - len(lines[first].lstrip())
    end = first + 1
    while end < len(lines) and (not lines[end].strip() or
                                len(lines[end]) - len(lines[end].lstrip()) > indent or
                                lines[end].lstrip().startswith((")", "]", "}"))):
        end += 1
    begin = first
    while begin > 0 and lines[begin - 1].lstrip().startswith("@"):
        begin -= 1
    kept = lines[begin:end]
    while kept and not kept[-1].strip():
        kept.pop()
    if original.endswith("\n") and kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    return "".join(kept)


def _indent_of(text: str) -> int:
    widths = [len(ln) - len(ln.lstrip(" \t")) for ln in text.splitlines() if ln.strip()]
    return min(widths) if widths else 0


def _reindent(code: str, original: str) -> str:
    want, have = _indent_of(original), _indent_of(code)
    if want <= have:
        return code
    first = next((ln for ln in original.splitlines() if ln.strip()), "")
    pad = first[: len(first) - len(first.lstrip(" \t"))][: want - have] or " " * (want - have)
    return "".join(pad + ln if ln.strip() else ln for ln in code.splitlines(keepends=True))
