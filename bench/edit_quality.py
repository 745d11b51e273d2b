"""Edit quality: how many injected bugs an instruction edit fixes, on held-out tasks from the
standard library (bench/code_tasks.py: functions with their own doctests, one mutation each).

Ours: `tramontane edit`'s path (session/edit.py, the code model's chat template, the whole
range rewritten in one code block, greedy), instruction "Fix the bug.". Each answer is also
checked for lines outside the range (none may change) and for answers that are not code
(never applied).

Anchor (--anchor PATH): the same model through llama-server's /v1/chat/completions with
llama.vim's instruction-edit request (its system prompt with CONTEXT / PREFIX / SELECTION /
SUFFIX, `INSTRUCTION: ...`, min_p 0.1, temperature 0.1), the reply put in place of the
selection as llama.vim does; also scored with code fences stripped, in its favour.

Target (issue 26): ours at least 10 points above the anchor.

Run: .venv/bin/python bench/edit_quality.py [--limit N] [--anchor PATH/TO/llama-server]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.code_tasks import EditTask, fixed, tasks  # noqa: E402
from bench.common import LlamaServer, code_session, starter_path, table, write  # noqa: E402

INSTRUCTION = "Fix the bug."
MODEL = "qwen2.5-coder-1.5b-instruct"


async def ours(items: list[EditTask]) -> list[dict[str, object]]:
    from app.session import edit

    session = code_session(MODEL)
    backend = session.backend
    rows = []
    try:
        for i, task in enumerate(items, 1):
            start, end = task.lines
            where = edit.span(task.file_text, start, end)
            result = await edit.run(session, INSTRUCTION, where, f"{task.module}.py")
            code = result.answer.code
            outside_ok = result.new_text is None or (
                result.new_text.startswith(task.before) and result.new_text.endswith(task.after))
            ok = code is not None and fixed(task, code)
            rows.append({"task": task.name, "mutation": task.mutation, "fixed": ok,
                         "code": code is not None, "outside_unchanged": outside_ok,
                         "tokens": result.stats.generated_tokens,
                         "seconds": round(result.elapsed_ms / 1000, 2)})
            print(f"  ours {i}/{len(items)} {task.name}: {'fixed' if ok else '-'}",
                  file=sys.stderr, flush=True)
    finally:
        await backend.unload()
    return rows


def llama_vim_messages(task: EditTask, instruction: str) -> list[dict[str, str]]:
    """The messages llama.vim's instruction edit sends (autoload/llama.vim, inst_build), for
    a selection of the task's function with the lines around it as PREFIX and SUFFIX."""
    system = ("You are a text-editing assistant. Respond ONLY with the result of applying "
              "INSTRUCTION to SELECTION given the CONTEXT. Maintain the existing text "
              "indentation. Do not add extra code blocks. Respond only with the modified "
              "block. If the INSTRUCTION is a question, answer it directly. Do not output any "
              "extra separators. Consider the local context before (PREFIX) and after (SUFFIX) "
              "the SELECTION.\n")
    rule = "-" * 40
    system += (f"\n--- CONTEXT     {rule}\n\n--- PREFIX      {rule}\n{task.before.rstrip(chr(10))}\n"
               f"--- SELECTION   {rule}\n{task.buggy.rstrip(chr(10))}\n"
               f"--- SUFFIX      {rule}\n{task.after.rstrip(chr(10))}\n")
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"INSTRUCTION: {instruction}"}]


def anchor(binary: str, items: list[EditTask]) -> list[dict[str, object]]:
    from app.engine.prompts.edit import code_blocks
    from app.session.edit import answer_budget

    rows = []
    with LlamaServer(binary, starter_path(MODEL)) as server:
        for i, task in enumerate(items, 1):
            # llama.vim sends no limit; a 1.5B model that loops would then run to the end of
            # the context (minutes a task here): the same cap as ours
            budget = answer_budget(task.buggy)
            body = {"messages": llama_vim_messages(task, INSTRUCTION), "min_p": 0.1,
                    "temperature": 0.1, "samplers": ["min_p", "temperature"],
                    "cache_prompt": True, "seed": 1, "n_predict": budget}
            text, timings, seconds = server.chat(body)
            blocks = code_blocks(text)
            rows.append({"task": task.name, "fixed": fixed(task, text + "\n"),
                         "fixed_unfenced": fixed(task, blocks[0]) if blocks else
                         fixed(task, text + "\n"), "seconds": round(seconds, 2),
                         "tokens": timings.get("predicted_n", 0)})
            print(f"  llama-server {i}/{len(items)} {task.name}: "
                  f"{'fixed' if rows[-1]['fixed'] else '-'}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--anchor", help="llama-server binary to measure beside ours")
    args = ap.parse_args()
    items = tasks(args.limit)
    t0 = time.perf_counter()
    mine = asyncio.run(ours(items))
    n = len(items)
    rate = sum(bool(r["fixed"]) for r in mine) / n
    summary = [{"edit path": "tramontane edit (ours)", "tasks": n, "fix_rate": rate,
                "answers_not_code": sum(not r["code"] for r in mine),
                "outside_lines_changed": sum(not r["outside_unchanged"] for r in mine)}]
    result: dict[str, object] = {"tasks": n, "fix_rate": rate, "ours": mine}
    if args.anchor:
        theirs = anchor(args.anchor, items)
        their_rate = sum(bool(r["fixed"]) for r in theirs) / n
        unfenced = sum(bool(r["fixed_unfenced"]) for r in theirs) / n
        summary.append({"edit path": "llama-server + llama.vim's prompt", "tasks": n,
                        "fix_rate": their_rate, "answers_not_code": "-",
                        "outside_lines_changed": "-"})
        summary.append({"edit path": "  the same, fences stripped", "tasks": n,
                        "fix_rate": unfenced, "answers_not_code": "-",
                        "outside_lines_changed": "-"})
        result |= {"anchor_fix_rate": their_rate, "anchor_fix_rate_unfenced": unfenced,
                   "anchor": theirs, "points_above_anchor": round(100 * (rate - max(
                       their_rate, unfenced)), 1)}
    print(table(summary))
    if args.anchor:
        print(f"ours - best anchor = {result['points_above_anchor']} points (target >= 10)")
    print(f"{time.perf_counter() - t0:.0f} s; wrote {write('edit_quality', result)}")


if __name__ == "__main__":
    main()
