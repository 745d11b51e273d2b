"""Multi-line holes that end a block: does `postprocess` keep correct multi-line answers?

A held-out set built here from standard-library modules (never a public infilling benchmark):
in each function, a hole of 2 to 6 lines ends a loop's, an `if`'s or a `with`'s body, and the
code after it goes on at a lower indentation, which the old first-dedent rule cut.

1. Kept (no model): the correct answer, followed by the suffix as a model that runs on would
   write it, through `postprocess`: the answer must come out whole. Target >= 98%.
2. With the model (--model, default the Qwen starter; --limit holes): its raw output cut where
   the suffix starts, against the same output through `postprocess`; a hole is solved when the
   text equals the answer (whitespace at line ends ignored). Target: postprocess >= raw cut.

Run: .venv/bin/python bench/fim_multiline.py [--limit 40] [--no-model]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib
import inspect
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.prompts.fim import postprocess  # noqa: E402
from bench.common import table, write  # noqa: E402

MODULES = ("textwrap", "statistics", "heapq", "bisect", "fractions", "shlex", "difflib",
           "colorsys", "calendar", "ipaddress", "string", "fnmatch", "glob", "base64")


@dataclass
class Hole:
    where: str
    prefix: str
    answer: str  # whole lines, ending with a newline
    suffix: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def holes() -> list[Hole]:
    found: list[Hole] = []
    for name in MODULES:
        source = inspect.getsource(importlib.import_module(name))
        lines = source.splitlines(keepends=True)
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.For | ast.While | ast.If | ast.With):
                continue
            body_end = node.body[-1].end_lineno or 0  # 1-based, last line of the body
            after = body_end  # 0-based index of the line after the body
            while after < len(lines) and not lines[after].strip():
                after += 1
            if after >= len(lines) or _indent(lines[after]) >= _indent(lines[body_end - 1]):
                continue  # the code after does not go on at a lower indentation
            if lines[after].lstrip().startswith(("else", "elif", "except", "finally")):
                continue
            for size in (2, 4, 6):
                start = body_end - size
                if start < node.lineno:  # keep the block's own first line in the prefix
                    break
                answer = "".join(lines[start:body_end])
                if not answer.strip() or '"""' in answer or "'''" in answer:
                    continue
                found.append(Hole(f"{name}:{start + 1}", "".join(lines[:start]), answer,
                                  "".join(lines[body_end:])))
    return found


def same(a: str, b: str) -> bool:
    norm = lambda t: [ln.rstrip() for ln in t.strip("\n").split("\n")]  # noqa: E731
    return norm(a) == norm(b)


def cut_at_suffix(raw: str, suffix: str) -> str:
    """The raw output up to where it starts writing the suffix's first line."""
    first = next((ln.rstrip() for ln in suffix.split("\n") if ln.strip()), "")
    out = []
    for line in raw.split("\n"):
        if first and line.rstrip() == first:
            break
        out.append(line)
    return "\n".join(out)


async def with_model(found: list[Hole], model: str | None, limit: int) -> dict[str, object]:
    from contextlib import aclosing

    from app.engine.backend import Done, Token
    from app.engine.llama.backend import LlamaBackend
    from app.session.complete import CompletionSession
    from app.session.context import AppContext

    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, model, max_tokens=96)
    await backend.load(session.model, session.params)
    step = max(1, len(found) // limit)
    sample = found[::step][:limit]
    solved_post = solved_raw = 0
    for hole in sample:
        prefix, suffix = session.visible(hole.prefix, hole.suffix)
        raw = ""
        async with aclosing(backend.complete(prefix, suffix, session.params)) as stream:
            async for event in stream:
                if isinstance(event, Token):
                    raw += event.text
                elif isinstance(event, Done):
                    break
        solved_post += same(postprocess(raw, hole.prefix, hole.suffix), hole.answer)
        solved_raw += same(cut_at_suffix(raw, hole.suffix), hole.answer)
    await backend.unload()
    return {"model": session.model.name, "holes": len(sample),
            "pass_at_1_postprocess": solved_post / len(sample),
            "pass_at_1_raw_cut_at_suffix": solved_raw / len(sample)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-model", action="store_true")
    args = ap.parse_args()
    found = holes()
    kept_runon = sum(same(postprocess(h.answer + h.suffix[:400], h.prefix, h.suffix), h.answer)
                     for h in found)
    kept_exact = sum(same(postprocess(h.answer, h.prefix, h.suffix), h.answer) for h in found)
    result: dict[str, object] = {
        "holes": len(found), "modules": list(MODULES),
        "kept_when_model_runs_on": kept_runon / len(found),
        "kept_when_model_stops": kept_exact / len(found),
    }
    print(table([{"holes": len(found), "kept (runs on)": result["kept_when_model_runs_on"],
                  "kept (stops)": result["kept_when_model_stops"]}]))
    if not args.no_model:
        scored = asyncio.run(with_model(found, args.model, args.limit))
        print(table([scored]))
        result["model"] = scored
    print(f"wrote {write('fim_multiline', result)}")


if __name__ == "__main__":
    main()
