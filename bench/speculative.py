"""Speculative decoding (prompt lookup) against raw decoding and llama-server, same prompts,
same run, greedy, the Qwen2.5-Coder 1.5B starter as the target.

Workloads, from standard-library functions (bench/code_tasks.py):
  edit     rewrite a 30-60 line function with a one-line change (the edit prompt of
           engine/prompts/edit.py, instruction naming the line to change)
  explain  "explain this function" with the function in the prompt
  write    write a function from its docstring (little to copy)

Ours: one worker with the 0.5B starter loaded beside the target as its draft model, run with
speculative = off (raw), lookup, draft (the draft model on every pass), and auto (what pays).
Decode tokens/s come from the worker (first token to last). Greedy outputs with and without
speculation are compared.
With --anchor PATH: llama-server with the same messages, plain, `--spec-type ngram-simple`,
and `-md` the 0.5B starter with `--spec-type draft-simple` (its defaults otherwise); its
`timings.predicted_per_second` and draft counts.

Targets (issue 28): edit >= 2.5x raw and >= llama-server's best; explain/write >= 1.2x raw;
no workload below 0.97x raw with auto.

Run: .venv/bin/python bench/speculative.py [--anchor PATH/TO/llama-server] [--per-kind N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.code_tasks import EditTask, tasks  # noqa: E402
from bench.common import LlamaServer, starter_path, table, write  # noqa: E402

MODEL, DRAFT = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"
MAX_TOKENS = {"edit": 700, "explain": 300, "write": 300}


def workloads(per_kind: int) -> list[tuple[str, list[dict[str, str]]]]:
    from app.engine.prompts.edit import edit_messages

    picked: list[EditTask] = []
    seen = set()
    for t in tasks():
        lines = t.original.count("\n")
        if 30 <= lines <= 60 and t.name not in seen:
            seen.add(t.name)
            picked.append(t)
    out: list[tuple[str, list[dict[str, str]]]] = []
    for t in picked[:per_kind]:
        row = int(t.mutation.split(":")[0].split()[1])
        bad = t.buggy.splitlines()[row - 1].strip()
        good = t.original.splitlines()[row - 1].strip()
        messages = edit_messages(f"Change the line `{bad}` to `{good}`.", t.before, t.buggy,
                                 t.after, f"{t.module}.py")
        out.append(("edit", [{"role": m.role, "content": m.content} for m in messages]))
    for t in picked[per_kind:2 * per_kind]:
        out.append(("explain", [{"role": "user", "content":
                                 f"Explain what this function does, step by step:\n\n"
                                 f"```python\n{t.original}```"}]))
    for t in picked[2 * per_kind:3 * per_kind]:
        doc = t.original.split('"""')[1] if '"""' in t.original else t.name
        head = t.original.splitlines()[0]
        out.append(("write", [{"role": "user", "content":
                               f"Write this Python function:\n\n```python\n{head}\n"
                               f'    """{doc}"""\n```'}]))
    return out


async def ours(work: list[tuple[str, list[dict[str, str]]]]) -> list[dict[str, object]]:
    from app.engine.backend import Done, Message, Params, Token
    from app.engine.llama.backend import LlamaBackend
    from app.session.context import AppContext

    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    ref = replace(ctx.placed(ctx.resolve_model(MODEL), Params()), draft=starter_path(DRAFT))
    base = replace(ctx.default_params(), temperature=0.0, seed=1, repeat_penalty=1.0)
    await backend.load(ref, base)
    rows = []
    try:
        for i, (kind, messages) in enumerate(work):
            msgs = [Message(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
            row: dict[str, object] = {"kind": kind, "prompt": i}
            texts = {}
            for mode in ("off", "lookup", "draft", "auto"):
                params = replace(base, speculative=mode, max_tokens=MAX_TOKENS[kind])
                text, stats = "", None
                async with aclosing(backend.chat(msgs, params)) as events:
                    async for event in events:
                        if isinstance(event, Token):
                            text += event.text
                        elif isinstance(event, Done):
                            stats = event.stats
                assert stats is not None
                texts[mode] = text
                row[f"{mode}_tps"] = round(stats.decode_tps, 1)
                row[f"{mode}_tokens"] = stats.generated_tokens
                if mode != "off":
                    row[f"{mode}_drafted"] = stats.drafted_tokens
                    row[f"{mode}_accepted"] = stats.accepted_tokens
            row["identical"] = texts["off"] == texts["lookup"] == texts["auto"]
            row["draft_identical"] = texts["off"] == texts["draft"]
            rows.append(row)
            print(f"  ours {i + 1}/{len(work)} {kind}: raw {row['off_tps']} tok/s, lookup "
                  f"{row['lookup_tps']}, draft {row['draft_tps']}, auto {row['auto_tps']}",
                  file=sys.stderr, flush=True)
    finally:
        await backend.unload()
    return rows


def anchor(binary: str, work: list[tuple[str, list[dict[str, str]]]]) -> list[dict[str, object]]:
    model, draft = starter_path(MODEL), starter_path(DRAFT)
    modes = {"plain": [], "ngram-simple": ["--spec-type", "ngram-simple"],
             "draft": ["-md", str(draft), "--spec-type", "draft-simple"]}
    rows: list[dict[str, object]] = [{"kind": k, "prompt": i} for i, (k, _) in enumerate(work)]
    for mode, args in modes.items():
        with LlamaServer(binary, model, *args) as server:
            for row, (kind, messages) in zip(rows, work, strict=True):
                body = {"messages": messages, "temperature": 0.0, "seed": 1,
                        "max_tokens": MAX_TOKENS[kind], "repeat_penalty": 1.0}
                _, timings, _ = server.chat(body)
                row[f"{mode}_tps"] = round(float(timings.get("predicted_per_second", 0)), 1)
                if mode != "plain":
                    row[f"{mode}_drafted"] = timings.get("draft_n", 0)
                    row[f"{mode}_accepted"] = timings.get("draft_n_accepted", 0)
        print(f"  llama-server {mode} done", file=sys.stderr, flush=True)
    return rows


def summarize(mine: list[dict[str, object]], theirs: list[dict[str, object]] | None
              ) -> list[dict[str, object]]:
    out = []
    for kind in ("edit", "explain", "write"):
        rows = [r for r in mine if r["kind"] == kind]
        if not rows:
            continue
        raw = statistics.mean(float(r["off_tps"]) for r in rows)  # type: ignore[arg-type]
        line: dict[str, object] = {"work": kind, "prompts": len(rows), "raw tok/s": round(raw, 1)}
        for mode in ("lookup", "draft", "auto"):
            tps = statistics.mean(float(r[f"{mode}_tps"]) for r in rows)  # type: ignore[arg-type]
            drafted = sum(int(r[f"{mode}_drafted"]) for r in rows)  # type: ignore[call-overload]
            kept = sum(int(r[f"{mode}_accepted"]) for r in rows)  # type: ignore[call-overload]
            line[f"{mode} tok/s"] = round(tps, 1)
            line[f"{mode} x raw"] = round(tps / raw, 2) if raw else 0.0
            line[f"{mode} kept"] = f"{kept}/{drafted}"
        line["identical"] = f"{sum(bool(r['identical']) for r in rows)}/{len(rows)}"
        line["draft identical"] = f"{sum(bool(r['draft_identical']) for r in rows)}/{len(rows)}"
        if theirs:
            trows = [r for r in theirs if r["kind"] == kind]
            for mode in ("plain", "ngram-simple", "draft"):
                tps = statistics.mean(float(r[f"{mode}_tps"]) for r in trows)  # type: ignore[arg-type]
                line[f"ls {mode}"] = round(tps, 1)
        out.append(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchor", help="llama-server binary to measure beside ours")
    ap.add_argument("--per-kind", type=int, default=4)
    args = ap.parse_args()
    work = workloads(args.per_kind)
    mine = asyncio.run(ours(work))
    theirs = anchor(args.anchor, work) if args.anchor else None
    summary = summarize(mine, theirs)
    print(table(summary))
    edit = next((s for s in summary if s["work"] == "edit"), None)
    if edit:
        print(f"edit: lookup {edit['lookup x raw']}x raw (target >= 2.5)")
    print(f"wrote {write('speculative', {'summary': summary, 'ours': mine, 'anchor': theirs})}")


if __name__ == "__main__":
    main()
