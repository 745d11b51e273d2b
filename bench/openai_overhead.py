"""What our OpenAI-compatible backend costs over reading the server's stream directly: the same
/v1/chat/completions request (greedy, 128 tokens) against llama-cpp-python's own server serving
the Qwen2.5-Coder 1.5B starter (and SmolLM2 beside it), once through OpenAIBackend (the
`openai` client) and once read with a bare httpx stream. Runs alternate, the median of each
is kept. Target: decode tokens/s ratio >= 0.97.

Run: .venv/bin/python bench/openai_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.backend import Message, ModelRef, Params  # noqa: E402
from app.engine.openai.backend import OpenAIBackend, sampling  # noqa: E402
from bench.common import starter_path, table, token_rate, write  # noqa: E402
from tests.fixtures.openai_server import LlamaCppServer  # noqa: E402

PARAMS = Params(temperature=0.0, max_tokens=128, context_length=2048, seed=1)
ASK = [Message("user", "Write a long story about a lighthouse keeper and the sea.")]


async def direct(base_url: str, model: str) -> float:
    """Decode tokens/s as a bare client sees them: one `data:` event per token."""
    body = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in ASK],
            "stream": True, **{k: v for k, v in sampling(PARAMS).items() if k != "extra_body"},
            **sampling(PARAMS)["extra_body"]}
    t_first = t_last = 0.0
    n = 0
    async with httpx.AsyncClient(timeout=120) as client, \
            client.stream("POST", f"{base_url}/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                n += 1
                t_last = time.perf_counter()
                t_first = t_first or t_last
    return (n - 1) / (t_last - t_first)


async def ours(base_url: str, model: str) -> float:
    backend = OpenAIBackend(base_url)
    await backend.load(ModelRef(model))
    rate = await token_rate(backend.chat(ASK, PARAMS))
    await backend.close()
    return rate


async def measure(base_url: str, model: str, runs: int) -> dict[str, float]:
    await direct(base_url, model)  # load the model and warm the cache before timing
    raw, through = [], []
    for _ in range(runs):
        raw.append(await direct(base_url, model))
        through.append(await ours(base_url, model))
    r, t = statistics.median(raw), statistics.median(through)
    return {"direct_tps": r, "backend_tps": t, "ratio": t / r}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    models = {"qwen2.5-coder-1.5b-instruct": starter_path("qwen2.5-coder-1.5b-instruct"),
              "smollm2": starter_path("smollm2-135m-instruct")}
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in models.items():
            with LlamaCppServer({name: path}, Path(folder)) as server:
                found = await measure(server.base_url, name, args.runs)
            results[name] = found
            rows.append({"model": name, "httpx_tps": found["direct_tps"],
                         "OpenAIBackend_tps": found["backend_tps"], "ratio": found["ratio"]})
    print(table(rows))
    worst = min(r["ratio"] for r in results.values())
    print(f"worst ratio {worst:.3f} (target >= 0.97)")
    print(f"wrote {write('openai_overhead', {'models': results, 'pass': worst >= 0.97})}")


if __name__ == "__main__":
    asyncio.run(main())
