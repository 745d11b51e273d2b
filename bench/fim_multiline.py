"""Multi-line completions of every shape: does `postprocess` keep what is right, and does the
model's answer get through? The set is bench/fim_holes.py (Python, JavaScript, shell; six
shapes), cut from real code this project did not write.

1. Without a model, per language and shape (targets: kept >= 99%, overshoot >= 98%):
   - kept: the right answer, as a model that stops by itself returns it, comes out whole;
   - overshoot: the answer and then the suffix's first line, or the whole suffix, is cut back
     to the answer;
   - cut in the next line (no target; the rules for a limit): the answer and half the suffix's
     first line, as the token limit cut it, comes back as the answer.
2. --per-shape N (holes per language and shape, spread over the set; 0 skips): the Qwen
   starter in-process, greedy, through `postprocess`, against its raw output cut only where it
   repeats the suffix's first line. A hole is solved when the text equals the answer
   (whitespace at line ends ignored). Target: postprocess >= raw cut, per shape.
3. --anchor PATH (llama-server): the same holes through `tramontane serve`'s /infill and
   llama-server's /infill, each sent as llama.vim sends it (256 lines before, 64 after, 128
   tokens). The time caps are left out of both requests so that quality does not depend on
   this machine's speed. Target: serve >= llama-server + 5 points.

Run: .venv/bin/python bench/fim_multiline.py [--per-shape 4] [--anchor PATH/llama-server]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.prompts.fim_end import postprocess  # noqa: E402
from bench.common import LLAMA_SERVER_HELP, LlamaServer, starter_path, table, write  # noqa: E402
from bench.fim_holes import SHAPES, Hole, doctest_holes, holes, solves  # noqa: E402

EXTENSION = {"python": "x.py", "javascript": "x.js", "shell": "x.sh"}
MODEL = "qwen2.5-coder-1.5b-instruct"


def right(hole: Hole, text: str) -> bool:
    """A doctested hole is solved when the function passes its doctests; another when the
    text equals the answer (whitespace at line ends ignored)."""
    return solves(hole, text) if hole.module else same(text, hole.answer)


def same(a: str, b: str) -> bool:
    def norm(t: str) -> list[str]:
        return [ln.rstrip() for ln in t.strip("\n").split("\n")]
    return norm(a) == norm(b)


def first_line(suffix: str) -> str:
    return suffix.split("\n", 1)[0] + ("\n" if "\n" in suffix else "")


def half_line(suffix: str) -> str:
    """The suffix's first non-blank line up to its middle: where a token limit might fall."""
    line = next((ln for ln in suffix.split("\n") if ln.strip()), "")
    return line[: max(len(line) - len(line.lstrip()) + 1, len(line) // 2)]


def cut_at_suffix(raw: str, suffix: str) -> str:
    """The raw output up to where it starts writing the suffix's first non-blank line."""
    first = next((ln.rstrip() for ln in suffix.split("\n") if ln.strip()), "")
    out = []
    for line in raw.split("\n"):
        if first and line.rstrip() == first:
            break
        out.append(line)
    return "\n".join(out)


def groups(found: list[Hole]) -> dict[tuple[str, str], list[Hole]]:
    out: dict[tuple[str, str], list[Hole]] = defaultdict(list)
    for h in found:
        out[(h.lang, h.shape)].append(h)
    return out


def rule_checks(found: list[Hole]) -> list[dict[str, Any]]:
    rows = []
    for (lang, shape), hs in sorted(groups(found).items()):
        path = EXTENSION[lang]
        kept = sum(same(postprocess(h.answer, h.prefix, h.suffix, path=path), h.answer)
                   for h in hs)
        line = sum(same(postprocess(h.answer + first_line(h.suffix), h.prefix, h.suffix,
                                    path=path), h.answer) for h in hs)
        whole = sum(same(postprocess(h.answer + h.suffix, h.prefix, h.suffix, path=path),
                         h.answer) for h in hs)
        cut = sum(same(postprocess(h.answer + half_line(h.suffix), h.prefix, h.suffix,
                                   cut=True, path=path), h.answer) for h in hs)
        rows.append({"language": lang, "shape": shape, "holes": len(hs),
                     "kept": kept / len(hs), "overshoot_line": line / len(hs),
                     "overshoot_suffix": whole / len(hs), "cut_in_next_line": cut / len(hs)})
    return rows


def sample(found: list[Hole], per_shape: int, offset: int = 0) -> list[Hole]:
    """`per_shape` holes of each language and shape, spread over them (`offset`: another
    spread, for figures taken on holes the rules were not developed on)."""
    out = []
    for _, hs in sorted(groups(found).items()):
        out += hs[offset:][:: max(1, len(hs) // per_shape)][:per_shape]
    return out


async def in_process(holes_: list[Hole]) -> list[dict[str, Any]]:
    from app.engine.llama.backend import LlamaBackend
    from app.session.complete import CompletionSession
    from app.session.context import AppContext

    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    session = CompletionSession.for_context(ctx, backend, MODEL)
    # quality, not speed: no time cap, so a busy machine gives the same answers
    session.params = replace(session.params, max_time_ms=0)
    await backend.load(session.model, session.params)
    out = []
    try:
        for h in holes_:
            result = await session.complete(h.prefix, h.suffix, EXTENSION[h.lang])
            out.append({"lang": h.lang, "shape": h.shape, "ours": right(h, result.text),
                        "raw_cut": right(h, cut_at_suffix(result.raw, h.suffix)),
                        "stop": result.stats.stop_reason, "where": h.where,
                        "text": result.text, "raw": result.raw})
    finally:
        await backend.unload()
    return out


def vim_body(h: Hole) -> dict[str, Any]:
    """llama.vim's /infill request at the hole (its defaults: 256 lines before the cursor's
    line, 64 after, 128 tokens), without its time caps."""
    before = h.prefix.split("\n")
    return {"id_slot": 0, "input_prefix": "\n".join(before[-257:-1]) + "\n",
            "prompt": before[-1], "input_suffix": "\n".join(h.suffix.split("\n")[:64]),
            "input_extra": [], "n_predict": 128, "stop": [], "n_indent": 0, "top_k": 40,
            "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"], "stream": False,
            "cache_prompt": True}


def ask_all(url: str, holes_: list[Hole]) -> tuple[list[bool], float]:
    import httpx

    t0, solved = time.perf_counter(), []
    with httpx.Client(timeout=600) as client:
        for h in holes_:
            reply = client.post(f"{url}/infill", json=vim_body(h)).json()
            solved.append(right(h, reply.get("content", "")))
    return solved, time.perf_counter() - t0


def against_anchor(binary: str, holes_: list[Hole]) -> tuple[list[bool], list[bool]]:
    from app.config import paths
    from tests.fixtures.openai_server import free_port

    config = paths().config_file  # the bench's own home: serve without a time cap either
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[code]\nmax_time_ms = 0\n", encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                             "--code-model", MODEL, "-m", "smollm2-135m-instruct"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving" in line, line + proc.stdout.read()
        ours, ours_s = ask_all(f"http://127.0.0.1:{port}", holes_)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    with LlamaServer(binary, starter_path(MODEL), "--cache-reuse", "256") as server:
        theirs, theirs_s = ask_all(server.url, holes_)
    print(f"serve {ours_s:.0f} s, llama-server {theirs_s:.0f} s for {len(holes_)} holes",
          file=sys.stderr)
    return ours, theirs


def per_shape(holes_: list[Hole], columns: dict[str, list[bool]]) -> list[dict[str, Any]]:
    rows = []
    for key in [*(("all", s) for s in SHAPES), *sorted({(h.lang, "all") for h in holes_}),
                ("all", "all")]:
        picked = [i for i, h in enumerate(holes_)
                  if key[0] in ("all", h.lang) and key[1] in ("all", h.shape)]
        if picked:
            rows.append({"language": key[0], "shape": key[1], "holes": len(picked),
                         **{name: sum(col[i] for i in picked) / len(picked)
                            for name, col in columns.items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-shape", type=int, default=4)
    ap.add_argument("--anchor", help=LLAMA_SERVER_HELP)
    ap.add_argument("--offset", type=int, default=0, help="another spread of the holes")
    ap.add_argument("--set", choices=["shapes", "doctest"], default="shapes",
                    help="shapes: the three languages, solved when equal to the answer; "
                    "doctest: stdlib functions with doctests, solved when they pass")
    args = ap.parse_args()
    found = holes() if args.set == "shapes" else doctest_holes(max(args.per_shape, 10))
    rules = rule_checks(found)
    print(table(rules))
    worst = {k: min(r[k] for r in rules) for k in ("kept", "overshoot_line", "overshoot_suffix")}
    print(f"{len(found)} holes; lowest per shape: kept {worst['kept']:.1%} (target >= 99%), "
          f"overshoot {min(worst['overshoot_line'], worst['overshoot_suffix']):.1%} "
          "(target >= 98%)")
    result: dict[str, Any] = {"holes": len(found), "rules": rules, "lowest": worst}
    if args.per_shape:
        picked = sample(found, args.per_shape, args.offset)
        result |= {"set": args.set, "offset": args.offset}
        scored = asyncio.run(in_process(picked))
        columns = {"postprocess": [s["ours"] for s in scored],
                   "raw_cut_at_suffix": [s["raw_cut"] for s in scored]}
        if args.anchor:
            columns["serve"], columns["llama_server"] = against_anchor(args.anchor, picked)
        model_rows = per_shape(picked, columns)
        print(table(model_rows))
        result |= {"model": MODEL, "per_shape": args.per_shape, "scored": model_rows,
                   "answers": scored}
    print(f"wrote {write('fim_multiline', result)}")


if __name__ == "__main__":
    main()
