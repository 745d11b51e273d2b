"""Edit latency: a warm edit of a 30-60 line standard-library function with a one-line fix,
as the code pane runs it (the prompt evaluated while the instruction is typed, then the
instruction), on the Qwen2.5-Coder 1.5B starter.

Prints, per function: the first line of the diff (the first code line of the answer) after the
instruction is sent, the whole edit's time, and decode tokens/s with speculative decoding off
(raw, the same worker) and on (prompt lookup). With --anchor PATH, llama-server's time for the
same messages (warmed with n_predict 0 first, as llama.vim does), in the same run.

Targets (issue 26): first diff line <= 1 s; whole edit >= 2.5x raw decode speed.

Run: .venv/bin/python bench/edit_latency.py [--functions N] [--anchor PATH/TO/llama-server]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.code_tasks import EditTask, tasks  # noqa: E402
from bench.common import LlamaServer, code_session, starter_path, table, write  # noqa: E402

MODEL = "qwen2.5-coder-1.5b-instruct"


def picked(n: int) -> list[EditTask]:
    out, seen = [], set()
    for t in tasks():
        if 30 <= t.original.count("\n") <= 60 and t.name not in seen:
            seen.add(t.name)
            out.append(t)
    return out[:n]


def instruction(t: EditTask) -> str:
    row = int(t.mutation.split(":")[0].split()[1])
    bad, good = t.buggy.splitlines()[row - 1].strip(), t.original.splitlines()[row - 1].strip()
    return f"Change the line `{bad}` to `{good}`."


async def ours(items: list[EditTask]) -> list[dict[str, object]]:
    from app.engine.backend import Done, Token
    from app.session import edit

    session = code_session(MODEL)
    backend = session.backend
    rows = []
    try:
        for t in items:
            start, end = t.lines
            where = edit.span(t.file_text, start, end)
            row: dict[str, object] = {"function": t.name, "lines": t.original.count("\n")}
            for mode in ("off", "lookup"):
                session.params = replace(session.params, speculative=mode)
                await edit.warm(session, where, f"{t.module}.py")  # while the user types
                t0 = time.perf_counter()
                first_line, text, stats = 0.0, "", None
                events = edit.stream(session, instruction(t), where, f"{t.module}.py")
                async with aclosing(events) as stream:
                    async for event in stream:
                        if isinstance(event, Token):
                            text += event.text
                            fence = text.find("```")
                            if not first_line and fence >= 0 and \
                                    text.count("\n", fence) >= 2:
                                first_line = time.perf_counter() - t0
                        elif isinstance(event, Done):
                            stats = event.stats
                assert stats is not None
                total = time.perf_counter() - t0
                if mode == "off":
                    row |= {"raw_tok_s": round(stats.decode_tps, 1), "raw_total_s": round(total, 2)}
                else:
                    row |= {"first_line_s": round(first_line, 2), "total_s": round(total, 2),
                            "tok_s": round(stats.decode_tps, 1), "tokens": stats.generated_tokens,
                            "kept": f"{stats.accepted_tokens}/{stats.drafted_tokens}"}
            row["x_raw"] = round(float(row["tok_s"]) / float(row["raw_tok_s"]), 2)  # type: ignore[arg-type]
            rows.append(row)
            print(f"  {t.name}: first line {row['first_line_s']} s, {row['x_raw']}x raw",
                  file=sys.stderr, flush=True)
    finally:
        await backend.unload()
    return rows


def _body(t: EditTask, text: str) -> dict[str, object]:
    from app.engine.prompts.edit import edit_messages

    msgs = edit_messages(text, t.before, t.buggy, t.after, f"{t.module}.py")
    return {"messages": [{"role": m.role, "content": m.content} for m in msgs],
            "temperature": 0.0, "cache_prompt": True}


def anchor(binary: str, items: list[EditTask]) -> list[float]:
    out = []
    with LlamaServer(binary, starter_path(MODEL)) as server:
        for t in items:
            server.chat(_body(t, "") | {"n_predict": 0})  # llama.vim's warm-up
            _, _, seconds = server.chat(_body(t, instruction(t)))
            out.append(round(seconds, 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--functions", type=int, default=4)
    ap.add_argument("--anchor", help="llama-server binary to measure beside ours")
    args = ap.parse_args()
    items = picked(args.functions)
    rows = asyncio.run(ours(items))
    if args.anchor:
        for row, seconds in zip(rows, anchor(args.anchor, items), strict=True):
            row["llama_server_total_s"] = seconds
    print(table(rows))
    first = statistics.median(float(r["first_line_s"]) for r in rows)  # type: ignore[arg-type]
    speed = statistics.median(float(r["x_raw"]) for r in rows)  # type: ignore[arg-type]
    print(f"median first diff line {first:.2f} s (target <= 1 s); median speed {speed:.2f}x raw "
          f"(target >= 2.5x)")
    data = {"rows": rows, "first_line_median_s": first, "x_raw_median": speed}
    print(f"wrote {write('edit_latency', data)}")


if __name__ == "__main__":
    main()
