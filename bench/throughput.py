"""Decode speed and time to first token: raw llama-cpp-python in this process against
Tramontane's backend through its worker process. Same model, prompt, greedy sampling,
256 tokens; the model is loaded before timing and every run starts from an uncached prompt.

Targets: decode ratio >= 0.97, first-token overhead <= 30 ms.
Run: .venv/bin/python bench/throughput.py [--runs N] [--tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.backend import Message, ModelRef, Params, Token  # noqa: E402
from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.engine.prompts import chat as chat_prompts  # noqa: E402
from bench.common import starter_path, table, write  # noqa: E402


def messages(run: int) -> list[Message]:
    return [Message("system", f"Session {run}. You are a storyteller."),
            Message("user", "Tell a long story about a lighthouse keeper.")]


def raw_run(llm, text: str, params: Params) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    llm.reset()
    t0 = time.perf_counter()
    tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
    t_first = t_last = 0.0
    n = 0
    for token in llm.generate(tokens, top_k=params.top_k, top_p=params.top_p, min_p=0.0,
                              temp=params.temperature, repeat_penalty=params.repeat_penalty):
        llm.detokenize([token])
        n += 1
        t_last = time.perf_counter()
        t_first = t_first or t_last
        if n >= params.max_tokens:
            break
    return (t_first - t0) * 1000, (n - 1) / (t_last - t_first)


async def ours_run(backend: LlamaBackend, msgs: list[Message], params: Params) -> tuple[float, float]:
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    async with aclosing(backend.chat(msgs, params)) as stream:
        async for event in stream:
            if isinstance(event, Token):
                t_last = time.perf_counter()
                t_first = t_first or t_last
            last = event
    generated = last.stats.generated_tokens  # type: ignore[attr-defined]
    return (t_first - t0) * 1000, (generated - 1) / (t_last - t_first)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--model", default="smollm2-135m-instruct",
                    help="a starter: smollm2-135m-instruct, qwen2.5-coder-1.5b-instruct, ...")
    args = ap.parse_args()
    model = starter_path(args.model)
    params = Params(temperature=0.0, max_tokens=args.tokens, context_length=2048,
                    seed=1)

    import llama_cpp

    llm = llama_cpp.Llama(str(model), n_ctx=2048, n_threads=params.thread_count, verbose=False)
    backend = LlamaBackend(measuring=True)
    await backend.load(ModelRef(args.model, model, chat_format="auto"), params)
    meta = backend._template_vars()
    raw_ttft, raw_tps, our_ttft, our_tps = [], [], [], []
    raw_run(llm, chat_prompts.build("auto", messages(-1), meta).text, params)  # warm-up
    await ours_run(backend, messages(-2), params)
    for run in range(args.runs):
        text = chat_prompts.build("auto", messages(run), meta).text
        a, b = raw_run(llm, text, params)
        raw_ttft.append(a)
        raw_tps.append(b)
        c, d = await ours_run(backend, messages(run), params)
        our_ttft.append(c)
        our_tps.append(d)
    await backend.unload()
    raw = {"ttft_ms": statistics.median(raw_ttft), "decode_tps": statistics.median(raw_tps)}
    ours = {"ttft_ms": statistics.median(our_ttft), "decode_tps": statistics.median(our_tps)}
    ratio = ours["decode_tps"] / raw["decode_tps"]
    overhead = ours["ttft_ms"] - raw["ttft_ms"]
    rows = [
        {"path": "raw llama-cpp-python", **raw},
        {"path": "tramontane worker", **ours},
    ]
    print(table(rows))
    print(f"decode ratio {ratio:.3f} (target >= 0.97) · first-token overhead {overhead:+.1f} ms "
          "(target <= 30 ms)")
    path = write(f"throughput-{args.model}", {"model": model.name, "tokens": args.tokens, "runs": args.runs,
                                "raw": raw, "tramontane": ours, "decode_ratio": ratio,
                                "ttft_overhead_ms": overhead,
                                "pass": ratio >= 0.97 and overhead <= 30})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
