"""The decode thread count under load: fixed counts against the measured choice
(engine/llama/threads.py), on a starter, idle and with a bounded busy loop on one core.

Each configuration answers the same prompts (greedy, 64 tokens); decode tok/s is the median
over them. The busy loop is a process spinning for as long as its configuration runs.

Run: .venv/bin/python bench/threads.py [--model qwen2.5-coder-1.5b-instruct] [--prompts 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.backend import Done, Message, Params  # noqa: E402
from app.engine.llama.backend import LlamaBackend  # noqa: E402
from bench.common import table, write  # noqa: E402

PROMPTS = ["Explain what a hash map is.", "Write a haiku about the sea.",
           "List five uses of a paperclip.", "Describe how a bicycle works.",
           "What is recursion? Give an example.", "Tell a short story about a robot."]


def spin(until: float) -> None:
    """A bounded busy loop: one core, until the clock says stop."""
    x = 0
    while time.monotonic() < until:
        x += 1


async def run(model: str, threads: int, prompts: list[str]) -> float:
    from app.session.context import AppContext, model_ref

    ctx = AppContext()
    backend = LlamaBackend()
    params = Params(threads=threads, max_tokens=64, temperature=0.0, speculative="off")
    rates = []
    try:
        await backend.load(model_ref(ctx.resolve_model(model)), params)
        for prompt in prompts:
            async with aclosing(backend.chat([Message("user", prompt)], params)) as stream:
                async for event in stream:
                    if isinstance(event, Done):
                        rates.append(event.stats.decode_tps)
    finally:
        await backend.unload()
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--prompts", type=int, default=4)
    args = ap.parse_args()
    prompts = PROMPTS[: args.prompts]
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    for load in ("idle", "one core busy"):
        row: dict[str, Any] = {"machine": load}
        for label, threads in ((f"fixed {cores}", cores), ("fixed 1", 1), ("auto", 0)):
            spinner = None
            if load != "idle":
                spinner = multiprocessing.Process(target=spin, args=(time.monotonic() + 600,))
                spinner.start()
            try:
                row[f"{label} tok/s"] = round(asyncio.run(run(args.model, threads, prompts)), 1)
            finally:
                if spinner is not None:
                    spinner.terminate()
                    spinner.join()
        fixed = [v for k, v in row.items() if k.startswith("fixed")]
        row["auto / best fixed"] = round(row["auto tok/s"] / max(fixed), 2)
        rows.append(row)
    print(f"{args.model}, {cores} cores, 64 greedy tokens per prompt, median of {len(prompts)}")
    print(table(rows))
    print(f"wrote {write('threads', {'model': args.model, 'rows': rows})}")


if __name__ == "__main__":
    main()
