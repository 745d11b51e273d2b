"""What our Ollama backend costs over reading the server's stream directly: the same /api/chat
request (greedy, 128 tokens) against the test fixture (real SmolLM2 behind Ollama's protocol),
once through OllamaBackend (the official client) and once read with httpx. Target: >= 0.97.

Run: .venv/bin/python bench/ollama_overhead.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.backend import Message, ModelRef, Params  # noqa: E402
from app.engine.ollama.backend import OllamaBackend, options  # noqa: E402
from app.models import starters  # noqa: E402
from bench.common import table, token_rate, write  # noqa: E402
from tests.fixtures.ollama_server import OllamaFixture  # noqa: E402

PARAMS = Params(temperature=0.0, max_tokens=128, context_length=2048, seed=1)
ASK = [Message("user", "Tell a long story about a lighthouse keeper.")]


async def direct(host: str) -> float:
    body = {"model": "smollm2:135m", "messages": [{"role": m.role, "content": m.content}
                                                  for m in ASK],
            "stream": True, "options": options(PARAMS)}
    t_first = t_last = 0.0
    n = 0
    async with httpx.AsyncClient(timeout=60) as client, \
            client.stream("POST", f"{host}/api/chat", json=body) as resp:
        async for line in resp.aiter_lines():
            part = json.loads(line)
            if part.get("message", {}).get("content"):
                n += 1
                t_last = time.perf_counter()
                t_first = t_first or t_last
    return (n - 1) / (t_last - t_first)


async def ours(host: str) -> float:
    backend = OllamaBackend(host)
    await backend.load(ModelRef("smollm2:135m"))
    return await token_rate(backend.chat(ASK, PARAMS))


async def main() -> None:
    model = starters.smollm2_path()
    assert model, "run `make install` first"
    with OllamaFixture({"smollm2:135m": model}) as server:
        await direct(server.host)  # load the model once before timing
        raw = await direct(server.host)
        through = await ours(server.host)
    ratio = through / raw
    print(table([{"path": "httpx, reading the stream", "tokens_per_s": raw},
                 {"path": "OllamaBackend", "tokens_per_s": through}]))
    print(f"ratio {ratio:.3f} (target >= 0.97)")
    result = {"direct_tps": raw, "backend_tps": through, "ratio": ratio, "pass": ratio >= 0.97}
    print(f"wrote {write('ollama_overhead', result)}")


if __name__ == "__main__":
    asyncio.run(main())
