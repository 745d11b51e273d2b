"""The space before the cursor (issue: `return fibonacci(n - 1) + ` then a pause). On the shared
single-line set, the cursor is put after the canonical line's first word and its space (`return `,
`x = `), and the Qwen starter completes from there, with the blanks healed (ours) and with the
prompt ending in the space (as before). A completion that starts with a blank doubles the typed
space; pass@1 counts the typed text plus the completion.

    python bench/cursor_space.py [--limit 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, write  # noqa: E402
from bench.fim_quality import DATA, passes  # noqa: E402


def typed_split(task: dict[str, str]) -> tuple[str, str] | None:
    """(text typed up to and with the first space after a word, the rest of the line)."""
    line = task["canonical_solution"].split("\n", 1)[0]
    body = line.lstrip()
    cut = body.find(" ")
    if cut <= 0:
        return None
    indent = line[:len(line) - len(body)]
    return indent + body[:cut + 1], body[cut + 1:] + task["canonical_solution"][len(line):]


async def run(tasks: list[dict[str, str]], heal: bool) -> dict[str, Any]:
    from app.engine.llama.backend import LlamaBackend
    from app.engine.prompts import cursor
    from app.session.complete import CompletionSession
    from app.session.context import AppContext

    if not heal:  # as before: the prompt ends in the typed space
        cursor.heal = lambda prefix: (prefix, "")  # type: ignore[assignment]
    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=48)
    # quality, not speed: no time cap, so a busy machine gives the same answers
    session.params = replace(session.params, max_time_ms=0)
    doubled = ok = 0
    t0 = time.perf_counter()
    try:
        for task in tasks:
            typed, _ = typed_split(task)  # type: ignore[misc]
            result = await session.complete(task["prompt"] + typed, task["suffix"])
            doubled += result.text[:1] in (" ", "\t")
            ok += passes(task, typed + result.text)
    finally:
        await backend.unload()
    n = len(tasks)
    return {"prompt": "healed (ours)" if heal else "ends in the space", "tasks": n,
            "doubled_space_pct": round(100 * doubled / n, 1), "pass_at_1": round(ok / n, 3),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=200)
    args = ap.parse_args()
    with gzip.open(DATA) as fh:
        every = [json.loads(line) for line in fh]
    tasks = [t for t in every if typed_split(t) is not None]
    if args.limit:
        tasks = tasks[:: max(1, len(tasks) // args.limit)][: args.limit]
    rows = [asyncio.run(run(tasks, heal=True)), asyncio.run(run(tasks, heal=False))]
    print(f"Cursor after a typed space: {len(tasks)} of {len(every)} single-line tasks "
          "(the canonical line's first word typed), Qwen2.5-Coder 1.5B, greedy")
    print(table(rows))
    print(f"wrote {write('cursor_space', {'rows': rows})}")


if __name__ == "__main__":
    main()
