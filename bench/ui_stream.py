"""How the chat screen keeps up with a stream.

1. The headless app fed by a scripted backend as fast as it can go: 20,000 tokens of Markdown
   with code blocks. UI time per 1,000 tokens for the first and the last thousand (target: the
   last at most 20% slower), and the longest event-loop stall seen by a 10 ms timer (target
   <= 50 ms).
2. The real starter model: decode tokens/s the TUI shows over the CLI's --stats figure for the
   same prompt (target >= 0.97).

Run: .venv/bin/python bench/ui_stream.py [--tokens N] [--skip-real]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.backend import Done, Event, Message, Params, Stats, Token  # noqa: E402
from app.session.front import Tramontane  # noqa: E402
from app.ui.tui.app import TramontaneApp  # noqa: E402
from bench.common import table, write  # noqa: E402
from tests.fixtures.scripted import ScriptedBackend  # noqa: E402

PARAGRAPH = ("Rivers shape the land they cross, and **the Loire** is the longest in France. "
             "It runs for about a thousand kilometres.\n\n")
CODE = "```python\ndef flow(river: str) -> int:\n    return len(river) * 42\n```\n\n"


def markdown_tokens(n: int) -> list[str]:
    words: list[str] = []
    while len(words) < n:
        for block in (PARAGRAPH, PARAGRAPH, CODE):
            words.extend(re.findall(r"\S+\s*|\s+", block))
    return words[:n]


class FirehoseBackend(ScriptedBackend):
    """Yields pre-made tokens as fast as the consumer takes them, timing each thousand."""

    def __init__(self, tokens: list[str]) -> None:
        super().__init__()
        self.tokens = tokens
        self.marks: list[float] = []
        self.streaming = False

    async def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]:
        self.streaming = True
        for i, token in enumerate(self.tokens):
            if i % 1000 == 0:
                self.marks.append(time.perf_counter())
            yield Token(token)
        self.marks.append(time.perf_counter())
        self.streaming = False
        yield Done(Stats(generated_tokens=len(self.tokens)))


async def firehose(n_tokens: int) -> dict[str, float]:
    backend = FirehoseBackend(markdown_tokens(n_tokens))
    app = TramontaneApp(Tramontane.open(chat_backend=backend))
    stalls: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        last = time.perf_counter()

        def tick() -> None:
            nonlocal last
            now = time.perf_counter()
            if backend.streaming:
                stalls.append(now - last - 0.01)
            last = now

        app.set_interval(0.01, tick)
        prompt = app.query_one("#prompt")
        prompt.insert("Tell me everything about rivers.")  # type: ignore[attr-defined]
        started = time.perf_counter()
        await pilot.press("enter")
        while app.busy or len(backend.marks) < 2:
            await pilot.pause(0.01)
        total = time.perf_counter() - started
        end_pause = time.perf_counter() - backend.marks[-1]
    per_k = [b - a for a, b in zip(backend.marks, backend.marks[1:], strict=False)]
    return {"tokens": n_tokens, "first_1k_ms": per_k[0] * 1000, "last_1k_ms": per_k[-1] * 1000,
            "slowdown": per_k[-1] / per_k[0], "max_stall_ms": max(stalls) * 1000,
            "end_of_reply_ms": end_pause * 1000, "total_s": total}


QUESTION = "Tell a long story about a lighthouse keeper and the sea."


def cli_tps(tokens: int) -> float:
    bin_dir = Path(sys.executable).parent
    out = subprocess.run([str(bin_dir / "tramontane"), "chat", "--stats", "--temperature", "0",
                          "--max-tokens", str(tokens), QUESTION],
                         capture_output=True, text=True, check=True)
    return float(re.findall(r"([\d.]+) tok/s", out.stderr)[-1])


async def tui_tps(tokens: int) -> float:
    door = Tramontane.open()
    door.config.values["params"].update(max_tokens=tokens, temperature=0.0)
    app = TramontaneApp(door)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt").insert(QUESTION)  # type: ignore[attr-defined]
        await pilot.press("enter")
        # wait on the reply's worker itself: polling with pilot.pause() would ping every
        # widget 20 times a second and take the CPU the model needs (a person's terminal
        # does no such thing)
        for worker in [w for w in app.workers if w.group == "reply"]:
            await worker.wait()
        await pilot.pause()
        status = str(app.query_one("#status").render())
    return float(re.findall(r"([\d.]+) tok/s", status)[-1])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--real-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    fire = await firehose(args.tokens)
    print(table([{k: v for k, v in fire.items()}]))
    print(f"last 1k / first 1k = {fire['slowdown']:.2f} (target <= 1.20) · longest stall "
          f"{fire['max_stall_ms']:.1f} ms (target <= 50)")
    result: dict[str, object] = {"firehose": fire}
    if not args.skip_real:
        cli = [cli_tps(args.real_tokens) for _ in range(args.runs)]
        tui = [await tui_tps(args.real_tokens) for _ in range(args.runs)]
        ratio = statistics.median(tui) / statistics.median(cli)
        print(table([{"path": "CLI --stats", "decode_tps": statistics.median(cli)},
                     {"path": "TUI status line", "decode_tps": statistics.median(tui)}]))
        print(f"TUI / CLI = {ratio:.3f} (target >= 0.97)")
        result["real"] = {"cli_tps": cli, "tui_tps": tui, "ratio": ratio}
    print(f"wrote {write('ui_stream', result)}")


if __name__ == "__main__":
    asyncio.run(main())
