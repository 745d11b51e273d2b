"""Held-out edit tasks from real code we did not write: functions of Python's standard library
that carry their own doctests, each with one injected bug.

For every module-level function (and class method) of a few stdlib modules whose doctests
pass, each single-token mutation is tried in turn (a comparison flipped, `+` and `-` swapped, a
small constant moved by one). A mutant is kept when it compiles and fails the function's own
doctests; the original passes them by construction. The task's file is the function with its
neighbours in the module (the lines around the range must come back unchanged).

Nothing here is tuned to a public benchmark: the functions are whatever the modules hold.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import io as _io
import signal
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Any

MODULES = ("statistics", "difflib", "fractions", "textwrap", "ipaddress", "zipfile", "typing",
           "enum", "shutil", "http.cookiejar", "pickle", "heapq", "bisect", "colorsys",
           "fnmatch", "posixpath", "calendar", "base64", "html", "urllib.parse", "decimal",
           "functools", "collections", "pprint", "string", "shlex", "email.utils")
SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-",
         "-": "+", "0": "1", "1": "2", "2": "1"}
PER_FUNCTION = 5


@dataclass(frozen=True)
class EditTask:
    name: str  # module.function
    module: str
    function: str
    original: str  # the function's source, dedented
    buggy: str
    before: str  # the module text just before the function (its neighbour), and after
    after: str
    mutation: str  # what changed, e.g. "line 7: '<' -> '<='"

    @property
    def file_text(self) -> str:
        return self.before + self.buggy + self.after

    @property
    def lines(self) -> tuple[int, int]:
        start = self.before.count("\n") + 1
        return start, start + self.buggy.count("\n") - 1


@contextlib.contextmanager
def _time_limit(seconds: float) -> Any:
    """Raise TimeoutError after `seconds`, and again every 20 ms after that: a mutant whose
    loop swallows exceptions still cannot hold the benchmark."""
    def stop(*_: Any) -> None:
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.02)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


def passes(module: Any, name: str, source: str, owner: str = "") -> bool:
    """Whether `source` (a function, or a method of class `owner`) passes the original's
    doctests, defined in a copy of its module's namespace."""
    ns = dict(vars(module))
    try:
        with _time_limit(2), contextlib.redirect_stdout(io.StringIO()):
            code = compile(source, f"<{module.__name__}.{name}>", "exec")
            if owner:
                cls = ns[owner]
                local: dict[str, Any] = {}
                exec(code, ns, local)
                fn = local[name]
                ns[owner] = type(owner, (cls,), {name: fn})
                target = getattr(cls, name)
            else:
                exec(code, ns)
                fn = target = ns[name]
            tests = doctest.DocTestFinder(recurse=False).find(target, name, module=module,
                                                              globs=ns)
            if not tests or not tests[0].examples:
                return False
            runner = doctest.DocTestRunner(verbose=False)
            result = runner.run(tests[0], out=lambda s: None)
            return result.failed == 0
    except BaseException:  # noqa: BLE001 - any failure of a mutant is a failing test
        return False


def _candidates() -> list[tuple[Any, str, str, str]]:
    """(module, name, owner class or "", source) of functions whose doctests pass."""
    out = []
    for mod_name in MODULES:
        try:
            module = importlib.import_module(mod_name)
        except ImportError:
            continue
        for name, obj in sorted(vars(module).items()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                out += [(module, name, "", obj)]
        for cname, cls in sorted(vars(module).items()):
            if inspect.isclass(cls) and cls.__module__ == module.__name__:
                for name, obj in sorted(vars(cls).items()):
                    if inspect.isfunction(obj):
                        out += [(module, name, cname, obj)]
    found = []
    for module, name, owner, obj in out:
        try:
            src = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            continue
        if not 6 <= src.count("\n") <= 60 or not (obj.__doc__ or "").count(">>>"):
            continue
        if passes(module, name, src, owner):
            found.append((module, name, owner, src))
    return found


def _mutants(src: str) -> list[tuple[str, str]]:
    """Every single-token mutation of the function's code (not its docstring)."""
    out = []
    lines = src.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(_io.StringIO(src).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    for tok in tokens:
        if tok.type not in (tokenize.OP, tokenize.NUMBER) or tok.string not in SWAPS:
            continue
        (row, col), (erow, ecol) = tok.start, tok.end
        if row != erow:
            continue
        line = lines[row - 1]
        new_line = line[:col] + SWAPS[tok.string] + line[ecol:]
        mutant = "".join(lines[:row - 1] + [new_line] + lines[row:])
        out.append((mutant, f"line {row}: {tok.string!r} -> {SWAPS[tok.string]!r}"))
    return out


def _neighbours(module: Any, src: str) -> tuple[str, str]:
    """A few lines of the module before and after the function (as found in the file)."""
    try:
        text = inspect.getsource(module)
    except OSError:
        return "", ""
    first = src.splitlines()[0].strip()
    at = next((i for i, ln in enumerate(text.splitlines()) if ln.strip() == first), -1)
    if at < 0:
        return "", ""
    lines = text.splitlines(keepends=True)
    end = at + src.count("\n")
    indent = len(lines[at]) - len(lines[at].lstrip())
    before = "".join(ln[indent:] if ln.strip() else ln for ln in lines[max(0, at - 12):at])
    after = "".join(ln[indent:] if ln.strip() else ln for ln in lines[end:end + 12])
    return before, after


def tasks(limit: int = 0) -> list[EditTask]:
    """The edit tasks, in a fixed order: up to PER_FUNCTION mutants a function, spread over
    its lines; `limit` takes that many spread over the whole set."""
    found: list[EditTask] = []
    for module, name, owner, src in _candidates():
        mutants = _mutants(src)
        kept = [(m, why) for m, why in mutants if not passes(module, name, m, owner)]
        step = max(1, len(kept) // PER_FUNCTION)
        before, after = _neighbours(module, src)
        for mutant, why in kept[::step][:PER_FUNCTION]:
            found.append(EditTask(f"{module.__name__}.{owner + '.' if owner else ''}{name}",
                                  module.__name__, f"{owner}.{name}" if owner else name, src,
                                  mutant, before, after, why))
    if limit and limit < len(found):  # spread over the whole set, not its first modules
        step = len(found) / limit
        return [found[int(i * step)] for i in range(limit)]
    return found


def fixed(task: EditTask, source: str) -> bool:
    """Whether `source` (the model's function) passes the original's doctests."""
    module = importlib.import_module(task.module)
    owner, _, name = task.function.rpartition(".")
    return passes(module, name, source, owner)


if __name__ == "__main__":
    all_tasks = tasks()
    print(f"{len(all_tasks)} tasks from {len({t.name for t in all_tasks})} functions")
    for t in all_tasks[:5]:
        print(t.name, t.mutation, t.lines)
