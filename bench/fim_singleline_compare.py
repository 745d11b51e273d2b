"""Single-line pass@1 on the shared HumanEval infilling set, the same model answers through two
versions of the post-processor: the model runs once per task (greedy, 48 tokens, as
bench/fim_quality.py), its raw text and stop reason are kept, and each version's result is
tested. A difference is the post-processor's, never the model's.

Run: .venv/bin/python bench/fim_singleline_compare.py --old PATH/TO/old_fim.py [--limit 500]
(--old: a file with the older `postprocess(text, prefix, suffix)`, e.g. `git show REV:...`).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.prompts.fim_end import postprocess  # noqa: E402
from bench.common import table, write  # noqa: E402
from bench.fim_quality import DATA, passes  # noqa: E402


async def answers(tasks: list[dict[str, str]]) -> list[tuple[str, str]]:
    from app.engine.llama.backend import LlamaBackend
    from app.session.complete import CompletionSession
    from app.session.context import AppContext

    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=48)
    session.params = replace(session.params, max_time_ms=0)
    out = []
    try:
        for task in tasks:
            result = await session.complete(task["prompt"], task["suffix"], "task.py")
            out.append((result.raw, result.stats.stop_reason))
    finally:
        await backend.unload()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("old_fim", args.old)
    assert spec and spec.loader
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # its dataclasses look their module up
    spec.loader.exec_module(old)
    with gzip.open(DATA) as fh:
        tasks = [json.loads(line) for line in fh]
    if args.limit:
        tasks = tasks[:: max(1, len(tasks) // args.limit)][: args.limit]
    raws = asyncio.run(answers(tasks))
    new_ok = old_ok = 0
    for task, (raw, stop) in zip(tasks, raws, strict=True):
        cut = stop in ("length", "time")
        new_ok += passes(task, postprocess(raw, task["prompt"], task["suffix"], cut, "task.py"))
        old_ok += passes(task, old.postprocess(raw, task["prompt"], task["suffix"]))
    rows: list[dict[str, Any]] = [
        {"post-processor": "before (indentation rules always)", "pass_at_1": old_ok / len(tasks)},
        {"post-processor": "now (the model's own end first)", "pass_at_1": new_ok / len(tasks)}]
    print(f"{len(tasks)} tasks, the same greedy answers through both")
    print(table(rows))
    print(f"wrote {write('fim_singleline_compare', {'tasks': len(tasks), 'rows': rows})}")


if __name__ == "__main__":
    main()
