"""Completion through `tramontane serve` against the same completion in-process (the code
pane's path), on the Qwen2.5-Coder 1.5B starter: bench/fim_latency.py's file and its 50 typed
characters, each keystroke one /infill request built as llama.vim builds it (the lines before
the cursor's line, the line up to the cursor as `prompt`, the rest as `input_suffix`; 16 tokens).

1. in-process: CompletionSession.complete for each keystroke (as the code pane asks);
2. through the server: the same requests over HTTP, each waited for;
3. typing at 8 characters a second, each keystroke's request cancelling the one before (as
   llama.vim kills its curl): the requests answered, and the last one's latency;
4. one `tramontane complete` call against the warm server (a new process each time).

Targets: server p50 and p90 within 10% of in-process; `complete` against a warm server <= 1 s.
Run: .venv/bin/python bench/serve_latency.py [--model qwen2.5-coder-1.5b-instruct]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.session.complete import CompletionSession  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402
from bench.fim_latency import TYPED, source_file  # noqa: E402
from tests.fixtures.openai_server import free_port  # noqa: E402

MAX_TOKENS = 16


def vim_body(prefix: str, suffix: str) -> dict[str, object]:
    cut = prefix.rfind("\n") + 1
    return {"id_slot": 0, "input_prefix": prefix[:cut], "prompt": prefix[cut:],
            "input_suffix": suffix, "input_extra": [], "n_predict": MAX_TOKENS, "stop": [],
            "n_indent": 8, "top_k": 40, "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"],
            "stream": False, "cache_prompt": True, "t_max_prompt_ms": 500,
            "t_max_predict_ms": 1000}


def percentiles(values: list[float]) -> tuple[float, float]:
    s = sorted(values)
    return statistics.median(s), s[int(0.9 * (len(s) - 1))]


async def in_process(model: str | None) -> tuple[str, list[float]]:
    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, model, max_tokens=MAX_TOKENS)
    await backend.load(session.model, session.params)
    prefix, suffix = source_file()
    await session.complete(prefix, suffix)  # cold
    times = []
    for ch in TYPED:
        prefix += ch
        t0 = time.perf_counter()
        await session.complete(prefix, suffix)
        times.append((time.perf_counter() - t0) * 1000)
    await backend.unload()
    return session.model.name, times


def through_server(url: str) -> list[float]:
    prefix, suffix = source_file()
    times = []
    with httpx.Client(timeout=120) as client:
        client.post(f"{url}/infill", json=vim_body(prefix, suffix))  # cold
        for ch in TYPED:
            prefix += ch
            t0 = time.perf_counter()
            r = client.post(f"{url}/infill", json=vim_body(prefix, suffix))
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return times


async def typing(url: str, chars_per_s: float = 8.0) -> dict[str, float]:
    """Each keystroke starts a request and abandons the previous one, as llama.vim does."""
    prefix, suffix = source_file(target_tokens=2000)
    prefix += "\n"
    answered, last_ms = 0, 0.0
    async with httpx.AsyncClient(timeout=60) as client:
        pending: asyncio.Task[httpx.Response] | None = None
        for ch in TYPED:
            prefix += ch
            if pending is not None and not pending.done():
                pending.cancel()  # the connection closes: the server cancels the generation
            elif pending is not None and not pending.cancelled():
                answered += 1
            pending = asyncio.ensure_future(client.post(f"{url}/infill",
                                                        json=vim_body(prefix, suffix)))
            await asyncio.sleep(1 / chars_per_s)  # the typist's pace, not a wait for a result
        t0 = time.perf_counter()
        assert pending is not None
        await pending
        last_ms = (time.perf_counter() - t0) * 1000 + 1000 / chars_per_s
    return {"keystrokes": len(TYPED), "answered_before_next_key": answered,
            "last_after_typing_ms": last_ms}


def complete_call(url: str, folder: Path) -> float:
    prefix, suffix = source_file()
    source = folder / "textwrap_cut.py"
    source.write_text(prefix + suffix, encoding="utf-8")
    line = prefix.count("\n") + 1
    col = len(prefix.rsplit("\n", 1)[-1].encode()) + 1
    env = {**os.environ, "TRAMONTANE_SERVER": url}
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "app", "complete", str(source), "--line",
                              str(line), "--col", str(col), "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
        best = min(best, time.perf_counter() - t0)
        assert json.loads(out.stdout)["server"] == url, out.stderr
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    args = ap.parse_args()
    name, local = asyncio.run(in_process(args.model))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                             "--code-model", args.model, "-m", "smollm2-135m-instruct"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving" in line, line + proc.stdout.read()
        served = through_server(url)
        typed = asyncio.run(typing(url))
        with tempfile.TemporaryDirectory() as folder:
            complete_ms = complete_call(url, Path(folder))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    (lp50, lp90), (sp50, sp90) = percentiles(local), percentiles(served)
    # most keystrokes type the start of the last suggestion and are answered from the cache
    # (no model); the rest reach the model: both are shown
    lm = statistics.median([t for t in local if t > 50] or [0])
    sm = statistics.median([t for t in served if t > 50] or [0])
    rows = [{"path": "in-process (code pane)", "p50_ms": lp50, "p90_ms": lp90,
             "model_p50_ms": lm, "from_model": sum(t > 50 for t in local)},
            {"path": "tramontane serve /infill", "p50_ms": sp50, "p90_ms": sp90,
             "model_p50_ms": sm, "from_model": sum(t > 50 for t in served)}]
    print(table(rows))
    print(table([typed | {"complete_call_ms": complete_ms}]))
    # within 10 %, or within 5 ms where the figure is a cache answer of a millisecond or less
    ok = sp50 <= max(1.1 * lp50, lp50 + 5) and sp90 <= 1.1 * lp90 and sm <= 1.1 * lm and \
        complete_ms <= 1000
    print(f"{name}: server p50 {sp50:.1f} ms vs {lp50:.1f} ms in-process, p90 {sp90:.0f} vs "
          f"{lp90:.0f} ms, from the model {sm:.0f} vs {lm:.0f} ms; `complete` against the warm server "
          f"{complete_ms:.0f} ms (<= 1000): {'met' if ok else 'NOT met'}")
    result = {"model": name, "in_process": local, "served": served, "typing": typed,
              "model_p50": [lm, sm],
              "complete_call_ms": complete_ms, "p50": [lp50, sp50], "p90": [lp90, sp90],
              "pass": ok}
    print(f"wrote {write('serve_latency', result)}")


if __name__ == "__main__":
    main()
