"""Completion latency while typing: a 2,000-token Python file, SmolLM2 through the worker, 50
keystrokes typed at the cursor, a completion asked for after each (the suggestion cache is
bypassed so every request reaches the model). Reports the cold request, p50/p90 of the warm
ones, and the prompt tokens each warm request had to evaluate.

Targets: warm requests evaluate <= 32 prompt tokens beyond what was typed; p50 warm <= 0.25 x
cold. Run: .venv/bin/python bench/fim_latency.py
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import sys
import tempfile
import textwrap
import time
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.backend import Done, Params  # noqa: E402
from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.session.complete import CompletionSession  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402

TYPED = "        result = [line.strip() for line in lines if line]\n"[:50]


def source_file(target_tokens: int = 2000) -> tuple[str, str]:
    """Real code (the standard library's textwrap), cut to about `target_tokens`."""
    lines = inspect.getsource(textwrap).splitlines(keepends=True)
    size, cut = 0, len(lines)
    for i, line in enumerate(lines):
        size += len(line.encode())
        if size / 3.8 >= target_tokens:  # about 3.8 bytes of this code a SmolLM2 token
            cut = i + 1
            break
    return "".join(lines[:cut]), "".join(lines[cut:cut + 30])  # code on both sides


async def request(backend: LlamaBackend, prefix: str, suffix: str, params: Params
                  ) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    async with aclosing(backend.complete(prefix, suffix, params)) as stream:
        async for event in stream:
            if isinstance(event, Done):
                stats = event.stats
    return (time.perf_counter() - t0) * 1000, stats.prompt_tokens, stats.cached_tokens


async def main() -> None:
    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=16)
    params = session.params
    await backend.load(session.model, params)
    prefix, suffix = source_file()
    cold_ms, cold_prompt, _ = await request(backend, prefix, suffix, params)
    warm = []
    for ch in TYPED:
        prefix += ch
        ms, prompt, cached = await request(backend, prefix, suffix, params)
        warm.append({"latency_ms": ms, "prompt_tokens": prompt, "evaluated": prompt - cached})
    await backend.unload()
    lat = sorted(w["latency_ms"] for w in warm)
    evaluated = [w["evaluated"] for w in warm]
    p50, p90 = statistics.median(lat), lat[int(0.9 * (len(lat) - 1))]
    result = {"model": session.model.name, "format": session.model.fim_format,
              "prompt_tokens_cold": cold_prompt, "cold_ms": cold_ms, "warm_p50_ms": p50,
              "warm_p90_ms": p90, "p50_over_cold": p50 / cold_ms,
              "evaluated_per_warm_max": max(evaluated),
              "evaluated_per_warm_median": statistics.median(evaluated), "keystrokes": len(TYPED)}
    print(table([{k: v for k, v in result.items() if k not in ("model", "format")}]))
    ok = max(evaluated) <= 32 + 1 and p50 <= 0.25 * cold_ms
    print(f"warm requests evaluate at most {max(evaluated)} prompt tokens (target <= 32 beyond "
          f"the 1 typed); p50 warm / cold = {p50 / cold_ms:.3f} (target <= 0.25)")
    print(f"wrote {write('fim_latency', result | {'requests': warm, 'pass': ok})}")


if __name__ == "__main__":
    asyncio.run(main())
