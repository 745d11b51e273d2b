"""Held-out multi-line holes of every shape, cut from real code this project did not write:
Python's standard library, npm's own JavaScript (as installed with Node) and Debian's shell
scripts in /usr/bin. Never a public infilling benchmark.

A hole is whole lines: the prefix ends at a line start, and the answer ends with a newline.
The blocks come from the parsers (Python's `ast`, tree-sitter for JavaScript and shell):

- block_end: the last 2 or 4 lines of a block's body; the code after goes on lower.
- past_block: the last 1 or 2 lines of a body and the next 1 or 2 lines after it, at an outer
  level (a loop's end, then the function's `return`).
- suffix_deeper: a block's opening line (and the line before it); the suffix starts inside it.
- function_end: the last 2, 3 or 5 lines of a function (with its closing brace in JavaScript);
  the suffix starts at a lower indentation or with the next definition.
- file_end: the same at the end of a file: the code after the function is gone.
- random: 1 to 6 lines anywhere, drawn with a fixed seed.
"""

from __future__ import annotations

import ast
import glob
import importlib
import inspect
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PY_MODULES = ("textwrap", "statistics", "heapq", "bisect", "fractions", "shlex", "difflib",
              "colorsys", "calendar", "ipaddress", "string", "fnmatch", "glob", "base64")
SHELL_SCRIPTS = ("savelog", "ssh-copy-id", "tzselect", "dpkg-maintscript-helper", "apt-key",
                 "ucf", "gettextize", "lesspipe", "kernel-install", "gpgrt-config",
                 "invoke-rc.d", "blkdeactivate", "pg_buildext")
SHAPES = ("block_end", "past_block", "suffix_deeper", "function_end", "file_end", "random")
PER_FILE = 6  # holes of one shape from one file, at most (spread over it)


@dataclass(frozen=True)
class Hole:
    lang: str
    shape: str
    where: str
    prefix: str
    answer: str
    suffix: str
    # for a hole in a doctested function (`doctest_holes`): how to run the filled function
    module: str = ""
    function: str = ""  # its name, "Class.method" for a method
    head: str = ""  # the neighbours before the function, at the start of `prefix`
    tail: str = ""  # and after it, at the end of `suffix`

    def source(self, middle: str) -> str:
        """The function with `middle` in the hole (for `doctest_holes`)."""
        suffix = self.suffix[: len(self.suffix) - len(self.tail)] if self.tail else self.suffix
        return self.prefix[len(self.head):] + middle + suffix


@dataclass(frozen=True)
class Block:
    header: int  # 0-based line of the opening line
    first: int  # the body's first and last lines
    last: int
    closer: int | None  # the closing line (a brace, `done`, `fi`), None in Python
    function: bool


def sources() -> Iterator[tuple[str, str, str]]:
    """(language, name, text) of every source file the set is cut from."""
    for name in PY_MODULES:
        yield "python", name, inspect.getsource(importlib.import_module(name))
    npm = shutil.which("npm")
    if npm:
        root = os.path.join(os.path.dirname(os.path.realpath(npm)), "..", "lib")
        for path in sorted(glob.glob(os.path.join(root, "**", "*.js"), recursive=True))[:60]:
            yield "javascript", os.path.relpath(path, root), Path(path).read_text("utf-8")
    for name in SHELL_SCRIPTS:
        path = os.path.join("/usr/bin", name)
        if os.path.isfile(path):
            text = Path(path).read_text("utf-8", errors="replace")
            if text.startswith("#!") and "sh" in text.split("\n", 1)[0]:
                yield "shell", name, text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def python_blocks(text: str) -> list[Block]:
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.For | ast.While | ast.If | ast.With | ast.FunctionDef |
                      ast.AsyncFunctionDef | ast.Try):
            out.append(Block(node.lineno - 1, node.body[0].lineno - 1,
                             (node.body[-1].end_lineno or 1) - 1, None,
                             isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)))
    return out


_TS = {"javascript": ("tree_sitter_javascript", {"statement_block", "class_body"},
                      {"function_declaration", "method_definition", "function_expression",
                       "arrow_function", "generator_function_declaration"}),
       "shell": ("tree_sitter_bash", {"do_group", "compound_statement", "if_statement"},
                 {"function_definition"})}


def tree_sitter_blocks(lang: str, text: str) -> list[Block]:
    import tree_sitter

    module, kinds, functions = _TS[lang]
    grammar = importlib.import_module(module)
    tree = tree_sitter.Parser(tree_sitter.Language(grammar.language())).parse(text.encode())
    lines = text.split("\n")
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        start, end = node.start_point[0], node.end_point[0]
        if node.type not in kinds or end - start < 3:
            continue
        header = start
        parent = node.parent
        if node.type == "do_group" and parent is not None:
            header = parent.start_point[0]  # `for x in ...; do` or `while ...` then `do`
        base = _indent(lines[header])
        body = [i for i in range(header + 1, end) if lines[i].strip()]
        if not body or any(_indent(lines[i]) <= base for i in body) \
                or _indent(lines[end]) != base:
            continue  # not a plain body (an else at the header's level, odd indentation)
        is_function = parent is not None and (parent.type in functions or (
            parent.parent is not None and parent.parent.type in functions))
        out.append(Block(header, body[0], body[-1], end, is_function))
    return out


def _hole(lang: str, shape: str, name: str, lines: list[str], start: int, end: int,
          drop_rest: bool = False) -> Hole | None:
    answer = "".join(lines[start:end])
    if not answer.strip() or start <= 0 or '"""' in answer or "'''" in answer:
        return None
    suffix = "" if drop_rest else "".join(lines[end:])
    return Hole(lang, shape, f"{name}:{start + 1}", "".join(lines[:start]), answer, suffix)


def holes_of(lang: str, name: str, text: str, seed: int = 7) -> list[Hole]:
    lines = text.splitlines(keepends=True)
    blocks = python_blocks(text) if lang == "python" else tree_sitter_blocks(lang, text)
    found: dict[str, list[Hole | None]] = {shape: [] for shape in SHAPES}
    for b in sorted(blocks, key=lambda b: b.header):
        after = b.closer if b.closer is not None else b.last + 1
        for k in (2, 4):
            if b.last - k + 1 > b.header:
                found["block_end"].append(_hole(lang, "block_end", name, lines,
                                                b.last - k + 1, b.last + 1))
        outer = [i for i in range(after, min(len(lines), after + 6)) if lines[i].strip()]
        for k, m in ((1, 1), (2, 2)):
            if len(outer) >= m and b.last - k + 1 > b.header \
                    and _indent(lines[outer[m - 1]]) < _indent(lines[b.last]):
                found["past_block"].append(_hole(lang, "past_block", name, lines,
                                                 b.last - k + 1, outer[m - 1] + 1))
        for k in (1, 2):
            if b.header - k + 1 > 0 and _indent(lines[b.first]) > _indent(lines[b.header]):
                found["suffix_deeper"].append(_hole(lang, "suffix_deeper", name, lines,
                                                    b.header - k + 1, b.header + 1))
        if b.function:
            end = after + 1 if b.closer is not None else b.last + 1
            for k in (2, 3, 5):
                if b.last - k + 1 > b.header:
                    found["function_end"].append(_hole(lang, "function_end", name, lines,
                                                       b.last - k + 1, end))
                    found["file_end"].append(_hole(lang, "file_end", name, lines,
                                                   b.last - k + 1, end, drop_rest=True))
    rng = random.Random(f"{seed}:{name}")
    for _ in range(PER_FILE):
        start = rng.randrange(1, max(2, len(lines) - 1))
        found["random"].append(_hole(lang, "random", name, lines, start,
                                     min(len(lines), start + rng.randint(1, 6))))
    out: list[Hole] = []
    for shape in SHAPES:
        real = [h for h in found[shape] if h is not None]
        step = max(1, len(real) // PER_FILE)
        out += real[::step][:PER_FILE]
    return out


def holes() -> list[Hole]:
    """The whole set, in a fixed order."""
    return [h for lang, name, text in sources() for h in holes_of(lang, name, text)]


def doctest_holes(per_shape: int = 10) -> list[Hole]:
    """Holes of every shape in standard-library functions that carry their own doctests
    (bench/code_tasks.py finds them): a filled function passes when its doctests do. The file
    is the function with a dozen lines of its module on each side; holes in the docstring are
    left out, and a file_end hole drops the lines after the function."""
    from bench.code_tasks import _candidates, _neighbours

    found: dict[str, list[Hole]] = {shape: [] for shape in SHAPES}
    for module, name, owner, src in _candidates():
        doc_end = 0
        fn = ast.parse(src).body[0]
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.body and \
                isinstance(fn.body[0], ast.Expr):
            doc_end = (fn.body[0].end_lineno or 0)  # 1-based last line of the docstring
        before, after = _neighbours(module, src)
        qual = f"{owner}.{name}" if owner else name
        for h in holes_of("python", f"{module.__name__}.{qual}", src, seed=11):
            start = h.prefix.count("\n")
            if start < doc_end:
                continue
            tail = "" if h.shape == "file_end" else after
            found[h.shape].append(Hole("python", h.shape, h.where, before + h.prefix, h.answer,
                                       h.suffix + tail, module.__name__, qual, before, tail))
    out: list[Hole] = []
    for shape in SHAPES:  # a hole counts when its answer passes and an empty one does not
        real = [h for h in found[shape] if solves(h, h.answer) and not solves(h, "")]
        step = max(1, len(real) // per_shape)
        out += real[::step][:per_shape]
    return out


def solves(hole: Hole, middle: str) -> bool:
    """Whether the function with `middle` in the hole passes its doctests."""
    from bench.code_tasks import passes

    owner, _, name = hole.function.rpartition(".")
    return passes(importlib.import_module(hole.module), name, hole.source(middle), owner)
