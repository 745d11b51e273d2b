"""Tool calls and JSON mode on the Qwen2.5-Coder 1.5B starter: through `tramontane serve` and
through llama.cpp's `llama-server --jinja` (its own tool-call support), same model, same
requests (the official `openai` client), same run.

    python bench/tools.py --anchor PATH/llama-server          # both, the whole set
    python bench/tools.py --limit 20                           # a quick look, ours only

Tool calls (bench/tool_tasks.py: 100 single-call tasks, 50 where no tool fits):
- valid: of the calls made, those that parse, name an offered tool and have arguments valid to
  its schema (jsonschema);
- right: of the 100, the expected function with the expected arguments;
- no-call: of the 50, answered in text.
JSON mode: 100 requests with a schema; valid replies, and the first token's time with the
grammar against the same request without it (each prompt unique, so no cache helps either).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jsonschema  # noqa: E402
import openai  # noqa: E402

from bench.common import LLAMA_SERVER_HELP, LlamaServer, starter_path, table, write  # noqa: E402
from bench.tool_tasks import TOOLS, Task, right, tasks  # noqa: E402

MODEL = "qwen2.5-coder-1.5b-instruct"


def run_tools(url: str, model: str, items: list[Task]) -> dict[str, Any]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", timeout=600)
    made = valid = correct = quiet = 0
    calls_asked = sum(1 for t in items if t.name)
    seconds: list[float] = []
    for task in items:
        offered = [TOOLS[n] for n in task.tools]
        t0 = time.perf_counter()
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": task.question}],
            tools=offered, temperature=0, max_tokens=160)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - t0)
        calls = reply.choices[0].message.tool_calls or []
        name, args = None, {}
        if calls:
            made += 1
            fn = calls[0].function  # type: ignore[union-attr]
            name = fn.name
            try:
                args = json.loads(fn.arguments)
                schema = next(t["function"]["parameters"] for t in offered
                              if t["function"]["name"] == name)
                jsonschema.validate(args, schema)
                valid += 1
            except (json.JSONDecodeError, StopIteration, jsonschema.ValidationError):
                pass
        if task.name is None:
            quiet += not calls
        else:
            correct += right(task, name, args)
    no_calls = len(items) - calls_asked
    return {"calls_made": made, "valid_pct": round(100 * valid / made, 1) if made else None,
            "right_pct": round(100 * correct / calls_asked, 1) if calls_asked else None,
            "no_call_pct": round(100 * quiet / no_calls, 1) if no_calls else None,
            "median_s": round(statistics.median(seconds), 2)}


PERSON = {"type": "object", "additionalProperties": False,
          "required": ["name", "age", "city", "skills"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                         "city": {"type": "string"},
                         "skills": {"type": "array", "items": {"type": "string"},
                                    "maxItems": 4}}}
JOBS = ["baker", "pilot", "nurse", "carpenter", "chemist", "librarian", "welder", "farmer",
        "dancer", "judge"]


def run_json(url: str, model: str, n: int) -> dict[str, Any]:
    """n requests with the schema, n without, each prompt unique (a nonce first): valid
    replies, and first-token times (streamed, as a client sees them)."""
    import httpx

    def first_token(body: dict[str, Any]) -> tuple[float, str]:
        t0, first, text = time.perf_counter(), 0.0, ""
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True},
                          timeout=600, headers={"Authorization": "Bearer bench"}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    for c in json.loads(line[6:]).get("choices", []):
                        piece = (c.get("delta") or {}).get("content") or ""
                        if piece:
                            first = first or time.perf_counter() - t0
                            text += piece
        return first, text

    valid, shaped, plain = 0, [], []
    def ask(i: int) -> dict[str, Any]:  # a fresh nonce first: nothing of it is cached
        return {"model": model, "temperature": 0, "max_tokens": 120, "messages": [
            {"role": "user", "content": f"Request {i}-{os.urandom(3).hex()}: invent a "
                                        f"{JOBS[i % len(JOBS)]} and describe them as JSON."}]}

    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for i in range(n):
        t, text = first_token(ask(i) | {"response_format": fmt})
        shaped.append(t)
        try:
            jsonschema.validate(json.loads(text), PERSON)
            valid += 1
        except (json.JSONDecodeError, jsonschema.ValidationError):
            pass
        plain.append(first_token(ask(i))[0])
    ratio = statistics.median(shaped) / statistics.median(plain)
    return {"json_valid_pct": round(100 * valid / n, 1),
            "ttft_schema_ms": round(1000 * statistics.median(shaped), 1),
            "ttft_plain_ms": round(1000 * statistics.median(plain), 1),
            "ttft_ratio": round(ratio, 2)}


def serve(model: str) -> tuple[subprocess.Popen[str], str, str]:
    from tests.fixtures.openai_server import free_port

    home = tempfile.mkdtemp(prefix="tram-tools-")
    env = os.environ | {"TRAMONTANE_HOME": home}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "-m",
                             model, "--code-model", model], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving" in line, line + proc.stdout.read()
    return proc, f"http://127.0.0.1:{port}", home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchor", help=LLAMA_SERVER_HELP)
    ap.add_argument("--limit", type=int, default=0, help="only the first N call tasks and "
                    "N/2 no-call tasks")
    ap.add_argument("--json", type=int, default=100, help="JSON-mode requests (0: none)")
    args = ap.parse_args()
    items = tasks()
    if args.limit:
        items = items[:args.limit] + items[100:100 + args.limit // 2]
    rows = []
    proc, url, _ = serve(MODEL)
    try:
        ours = run_tools(url, MODEL, items)
        if args.json:
            ours |= run_json(url, MODEL, args.json)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    rows.append({"server": "tramontane serve"} | ours)
    if args.anchor:
        with LlamaServer(args.anchor, starter_path(MODEL), "--jinja") as anchor:
            theirs = run_tools(anchor.url, MODEL, items)  # JSON mode: ours is the target
        rows.append({"server": "llama-server --jinja"} | theirs)
    written = write("tools", {"model": MODEL, "rows": rows})
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, "-") for k in keys} for r in rows]  # JSON mode: ours only
    print(f"Tool calls: {sum(1 for t in items if t.name)} call tasks, "
          f"{sum(1 for t in items if not t.name)} no-call tasks, {MODEL}, greedy")
    print(table(rows))
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
