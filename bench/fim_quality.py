"""Completion quality on HumanEval single-line infilling (1,033 tasks, MIT licence; the data is
in ../shared/data). Each task's tests run in a subprocess with a timeout.

(a) pass@1 of the starter model through the worker (greedy), after post-processing;
(b) the "overshoot" check: the canonical answer followed by the first line of the suffix,
    passed through `postprocess`; target >= 98% of tasks pass.

(c) with --formats qwen,qwen-psm: pass@1 of each FIM layout, and for the first one also while
    typing (the whole prompt then reuses the cache of the short one: the suffix-first layout
    reuses it exactly); the suggestion cache is bypassed so every answer is the model's.

Multi-line holes (every shape, checked by execution, ours through `serve` beside
llama-server's /infill in one run): bench/fim_multiline.py --set doctest --anchor PATH.

Run: .venv/bin/python bench/fim_quality.py [--limit N] [--skip-model]
     [--formats qwen,qwen-psm]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.engine.prompts.fim_end import postprocess  # noqa: E402
from app.session.complete import CompletionSession  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / \
    "HumanEval-SingleLineInfilling.jsonl.gz"


def passes(task: dict[str, str], completion: str, timeout: float = 10.0) -> bool:
    program = (task["prompt"] + completion + task["suffix"] + "\n" + task["test"] + "\n"
               + f"check({task['entry_point']})\n")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(program)
    try:
        done = subprocess.run([sys.executable, fh.name], capture_output=True, timeout=timeout)
        return done.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        os.unlink(fh.name)


def first_suffix_line(suffix: str) -> str:
    return suffix.split("\n", 1)[0] + ("\n" if "\n" in suffix else "")


async def model_pass(tasks: list[dict[str, str]],
                     typing: bool = False, fim_format: str = "") -> tuple[float, float]:
    """pass@1 of the code model. With `typing`, each task is asked twice, as while typing: the
    prefix three characters short first, then whole, so the second reuses the first's cache."""
    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=48)
    # quality, not speed: no time cap, so a busy machine gives the same answers
    session.params = replace(session.params, max_time_ms=0)
    if fim_format:
        session.model = replace(session.model, fim_format=fim_format)
    ok, t0 = 0, time.perf_counter()
    try:
        for done, task in enumerate(tasks, 1):
            if typing and len(task["prompt"]) > 3:
                await session.complete(task["prompt"][:-3], task["suffix"])
                session._cache.clear()  # the model must answer, from the reused cache
                session._last = None
            result = await session.complete(task["prompt"], task["suffix"])
            ok += passes(task, result.text)
            if done % 100 == 0:  # a long run shows that it is alive, and how it goes
                print(f"  {done}/{len(tasks)}: pass@1 so far {ok / done:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    finally:
        await backend.unload()
    return ok / len(tasks), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--formats", default="", help="FIM layouts to compare, e.g. qwen,qwen-psm")
    args = ap.parse_args()
    with gzip.open(DATA) as fh:
        tasks = [json.loads(line) for line in fh]
    if args.limit:
        tasks = tasks[:: max(1, len(tasks) // args.limit)][: args.limit]  # spread over the set
    canonical_ok = sum(passes(t, t["canonical_solution"]) for t in tasks) / len(tasks)
    overshoot = sum(
        passes(t, postprocess(t["canonical_solution"] + first_suffix_line(t["suffix"]),
                              t["prompt"], t["suffix"])) for t in tasks) / len(tasks)
    rows = [{"check": "canonical answer as is", "pass_rate": canonical_ok},
            {"check": "overshoot through postprocess", "pass_rate": overshoot}]
    result: dict[str, object] = {"tasks": len(tasks), "canonical": canonical_ok,
                                 "overshoot": overshoot, "overshoot_pass": overshoot >= 0.98}
    if args.formats:
        for i, fmt in enumerate(args.formats.split(",")):
            for typing in ((False, True) if i == 0 else (False,)):
                rate, seconds = asyncio.run(model_pass(tasks, typing=typing,
                                                       fim_format=fmt))
                label = f"{fmt} pass@1" + (" while typing (cache reused)" if typing else "")
                rows.append({"check": label, "pass_rate": rate})
                result |= {f"{fmt}{'_typing' if typing else ''}_pass_at_1": rate,
                           f"{fmt}{'_typing' if typing else ''}_seconds": seconds}
    elif not args.skip_model:
        rate, seconds = asyncio.run(model_pass(tasks))
        rows.append({"check": "code model pass@1 (greedy)", "pass_rate": rate})
        result |= {"model_pass_at_1": rate, "model_seconds": seconds}
    print(table(rows))
    print(f"overshoot check: {overshoot:.1%} of {len(tasks)} tasks pass (target >= 98%)")
    print(f"wrote {write('fim_quality', result)}")


if __name__ == "__main__":
    main()
