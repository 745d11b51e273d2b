"""Where a completion ends: the model decides first, the code around the cursor second.

When the model stopped by itself (its FIM end token, end of text, a stop string), everything it
wrote is kept, apart from an overlap with the suffix: text that repeats the suffix's first lines
is cut there. A hole may end a block and go on at an outer level, end a function or the file,
or open a block the suffix is inside; the model knows which, and indentation rules would guess.

Only when it was cut (the token or time limit) do the rules apply: the unfinished last line
goes, so does a line that is one of the suffix's first lines (whitespace aside), a line below
both the cursor's block and the suffix's first line (the top level, when nothing follows), or
a new definition outside the cursor's block, is past the hole; of what is left the longest run
of lines that parses best (tree-sitter, for the languages with a parser here) is kept, with the
brackets it opened closed when nothing after the cursor can.

Mid-line, with text after the cursor on its line, a completion is one line that must not retype
that text. Control characters never survive: model text is data.
"""

from __future__ import annotations

import re

from app.engine import syntax
from app.engine.backend import printable

_OPEN, _CLOSE = "([{", ")]}"
_PAIR = dict(zip(_CLOSE, _OPEN, strict=True))
OVERLAP_LINES = 3  # the suffix's first lines an overlap must repeat (fewer where output ends)
# a line that opens a definition (Python, JavaScript, Go, Rust, shell functions, decorators)
_DEFINITION = re.compile(r"\s*(async\s+def|def|class|function|fn|func|pub\s+fn)\b|\s*@\w"
                         r"|\s*[A-Za-z_][\w-]*\s*\(\)\s*\{?\s*$")
_CLOSER = re.compile(r"\s*([)\]}]+[;,]?|fi|done|esac|end)\s*$")  # closes a block, nothing else
PARSE_PREFIX_LINES, PARSE_SUFFIX_LINES = 400, 200  # what a cut completion is parsed within


def postprocess(text: str, prefix: str, suffix: str, cut: bool = False, path: str = "") -> str:
    """Make a raw completion fit the place it is inserted. `cut`: the model was stopped by
    the token or time limit rather than stopping itself; `path` names the language."""
    text = printable(text)
    if not text.strip():
        return ""
    at_line_start = prefix == "" or prefix.endswith("\n")
    suffix_line = suffix.split("\n", 1)[0]
    if not at_line_start and suffix_line.strip():
        return _one_line(text, suffix_line)
    written = text.count("\n") + 1
    lines = _before_fence(text.split("\n"), path)
    if cut and len(lines) > 1 and lines[-1].strip():
        lines = lines[:-1]  # the limit fell inside this line
    lines = _before_overlap(lines, suffix, at_line_start)
    if cut:
        lines = _whole_lines(_loose_overlap(lines, suffix, at_line_start), prefix, suffix,
                             at_line_start, path)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return ""
    out = "\n".join(lines)
    if not suffix.strip():
        out = _balance(out, "", close_open=True)  # end of file: close what it opened
    if at_line_start and (suffix.strip() or written > len(lines)):
        out += "\n"  # whole lines (before the suffix's line, or ended as the model ended them)
    elif not at_line_start:
        out = out.rstrip(" \t")
    return out if out.strip() else ""


def _one_line(text: str, suffix_line: str) -> str:
    """Mid-line, with text after the cursor: the first line, not retyping that text."""
    text = text.split("\n", 1)[0]
    if suffix_line and text.endswith(suffix_line):
        text = text[: -len(suffix_line)]
    text = text.rstrip()
    for n in range(len(suffix_line), 1, -1):  # the completion retyping the text after it
        if text.endswith(suffix_line[:n]):
            text = text[:-n]
            break
    text = _balance(text, suffix_line, close_open=False)
    return text if text.strip() else ""


def _before_overlap(lines: list[str], suffix: str, at_line_start: bool) -> list[str]:
    """`lines` up to where they start repeating the suffix's first non-blank lines (all of
    the first OVERLAP_LINES, or as many as the output still has where it ends)."""
    want = [ln.rstrip() for ln in suffix.split("\n") if ln.strip()][:OVERLAP_LINES]
    if not want:
        return lines
    for i in range(0 if at_line_start else 1, len(lines)):
        if lines[i].rstrip() != want[0]:
            continue
        rest = [ln.rstrip() for ln in lines[i:] if ln.strip()]
        n = min(len(rest), len(want))
        if rest[:n] == want[:n]:
            return lines[:i]
    return lines


def _before_fence(lines: list[str], path: str) -> list[str]:
    """`lines` up to a Markdown code fence, which a chat-tuned model writes after its code
    (in a Markdown file, a fence is text like any other)."""
    if path.lower().endswith((".md", ".markdown")):
        return lines
    for i, line in enumerate(lines):
        if i > 0 and line.lstrip().startswith("```"):
            return lines[:i]
    return lines


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _whole_lines(lines: list[str], prefix: str, suffix: str, at_line_start: bool,
                 path: str) -> list[str]:
    """A cut-off completion trimmed to what can stand: up to a line past the hole (below both
    the cursor's block and the suffix's first line, at the top level when nothing follows,
    or a new definition outside the cursor's block), then, where the language has a parser,
    the longest run of lines that parses best in place."""
    cursor_line = prefix.rsplit("\n", 1)[-1]
    if at_line_start:
        block = next((_indent(ln) for ln in lines if ln.strip()), 0)
    else:
        block = _indent(cursor_line) + cursor_line.rstrip().endswith((":", "{", "(", "["))
    first_suffix = next((ln for ln in suffix.split("\n") if ln.strip()), "")
    floor = min(block, _indent(first_suffix)) if first_suffix else min(block, 1)
    kept: list[str] = []
    for i, line in enumerate(lines):
        if i > 0 and line.strip() and not _CLOSER.match(line) and (
                _indent(line) < floor or (_indent(line) < block and _DEFINITION.match(line))):
            break  # left the block the hole is in (a line that only closes one is in it)
        kept.append(line)
    if syntax.parser_for(path) is None:
        return kept
    return _parses_best(kept, prefix, suffix, at_line_start, path)


def _loose_overlap(lines: list[str], suffix: str, at_line_start: bool) -> list[str]:
    """For a cut-off completion: `lines` up to one that is, whitespace aside, one of the
    suffix's first lines (a model that ran on past the hole rewrites what follows it)."""
    first = [ln.strip() for ln in suffix.split("\n") if ln.strip()][:OVERLAP_LINES]
    want = {ln for ln in first if len(ln) > 3}  # not a lone brace or `fi`
    for i in range(0 if at_line_start else 1, len(lines)):
        if lines[i].strip() in want:
            return lines[:i]
    return lines


def _parses_best(lines: list[str], prefix: str, suffix: str, at_line_start: bool,
                 path: str) -> list[str]:
    """The longest leading run of `lines` with the fewest parse errors in place, for a
    language with a parser (`lines` as they are for the others)."""
    if len(lines) < 2:
        return lines
    head = "".join(prefix.splitlines(keepends=True)[-PARSE_PREFIX_LINES:])
    tail = "".join(suffix.splitlines(keepends=True)[:PARSE_SUFFIX_LINES])
    joint = "\n" if at_line_start else ""  # mid-line, the suffix starts with its newline
    best, best_errors = lines, None
    for n in range(len(lines), 0, -1):
        if not lines[n - 1].strip():
            continue
        errors = syntax.errors(head + "\n".join(lines[:n]) + joint + tail, path)
        if errors is not None and (best_errors is None or errors < best_errors):
            best, best_errors = lines[:n], errors
    return best


def _balance(text: str, suffix_line: str, close_open: bool) -> str:
    """Cut at a closer the completion did not open when the suffix already has it; close what
    the completion opened and left open when nothing after the cursor can (`close_open`)."""
    stack: list[str] = []
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in _OPEN:
            stack.append(ch)
        elif ch in _CLOSE:
            if stack and stack[-1] == _PAIR[ch]:
                stack.pop()
            elif not stack and suffix_line.lstrip().startswith(ch):
                return text[:i].rstrip(" \t")
    if stack and not quote and close_open:
        closers = "".join(_CLOSE[_OPEN.index(c)] for c in reversed(stack))
        if not suffix_line.lstrip().startswith(closers[0]):
            text += closers
    return text
