"""What plugins cost a completion. In a temp git repository with 12 recently opened files:
(1) the time to gather FIM context through the plugin host (a thread per hook call, with its
time limit), with no plugin and with tramontane-repo-context; (2) warm completion latency
while typing (fim_latency's file and keystrokes, SmolLM2 through the worker) with and without
the repository chunks in the prompt, and the prompt tokens each warm request evaluates: chunks
sit at the start of the prompt, so the KV cache must still cover them.

Targets: gathering context p50 <= 5 ms; warm requests with chunks evaluate <= 32 prompt tokens
beyond the typed one. Run: .venv/bin/python bench/plugin_overhead.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.plugins.manager import get_host, reset_host  # noqa: E402
from app.session.complete import CompletionSession  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402
from bench.fim_latency import TYPED, source_file  # noqa: E402


def make_repo() -> tuple[Path, list[Path]]:
    repo = Path(tempfile.mkdtemp(prefix="tram-bench-repo-"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    files = []
    for i in range(12):
        path = repo / f"module_{i}.py"
        path.write_text("".join(f"def helper_{i}_{j}(value):\n    return value * {j} + {i}\n\n"
                                for j in range(30)))
        files.append(path)
    return repo, files


async def gather_ms(session: CompletionSession, path: str, prefix: str, suffix: str,
                    n: int = 200) -> tuple[float, int]:
    times, chunks = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        chunks = len(await session.gather_context(path, prefix, suffix))
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), chunks


async def typing(session: CompletionSession, path: str, prefix: str, suffix: str
                 ) -> dict[str, float]:
    first = await session.complete(prefix, suffix, path)
    lat, evaluated = [], []
    for ch in TYPED:
        prefix += ch
        session._cache.clear()
        session._last = None
        done = await session.complete(prefix, suffix, path)
        lat.append(done.elapsed_ms)
        evaluated.append(done.stats.prompt_tokens - done.stats.cached_tokens)
    return {"prompt_tokens": first.stats.prompt_tokens, "chunks_offered": len(session.last_extra),
            "cold_ms": first.elapsed_ms, "warm_p50_ms": statistics.median(lat),
            "evaluated_max": max(evaluated), "evaluated_median": statistics.median(evaluated)}


async def run(pin: str, repo: Path, files: list[Path]) -> dict[str, object]:
    os.environ["TRAMONTANE_PLUGINS"] = pin
    reset_host()
    host = get_host()
    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=16)
    for path in files:
        await host.acall("file_touched", 10.0, path=str(path), event="opened",
                         text=path.read_text())
    prefix, suffix = source_file(1500)
    current = str(repo / "main.py")
    gather, _ = await gather_ms(session, current, prefix, suffix)
    row: dict[str, object] = {"plugins": pin or "none", "gather_p50_ms": gather}
    row |= await typing(session, current, prefix, suffix)
    await backend.unload()
    return row


async def main() -> None:
    repo, files = make_repo()
    rows = [await run("", repo, files), await run("tramontane-repo-context", repo, files)]
    print(table(rows))
    with_ctx = rows[1]
    ok = float(str(with_ctx["gather_p50_ms"])) <= 5 and int(str(with_ctx["evaluated_max"])) <= 33
    print(f"gathering context p50 {with_ctx['gather_p50_ms']:.2f} ms (target <= 5); warm requests "
          f"with {with_ctx['chunks_offered']} chunks evaluate at most {with_ctx['evaluated_max']} prompt "
          "tokens (target <= 32 beyond the typed one)")
    print(f"wrote {write('plugin_overhead', {'rows': rows, 'pass': ok})}")


if __name__ == "__main__":
    asyncio.run(main())
