"""The memory estimate against reality: for each starter model at contexts 2k, 8k and 32k
(where the model allows), the estimate for a 512-token prompt against the worker's measured
peak RSS after a load and a 512-token prompt. Target: every row within +-10%.

--full fills the context instead (a prompt of the context less 64 tokens: the verdict's own
case; a 32k prompt on the Qwen 1.5B takes minutes here). --draft adds the Qwen 1.5B with the
0.5B loaded beside it as its draft model (speculative decoding), against `fit.with_draft`.
--contexts and --models narrow the run. --recount FILE takes the peaks a run measured (its
JSON) and counts the estimates again with the current `fit.py`, for the same prompts.

Run: .venv/bin/python bench/fit_accuracy.py [--full] [--draft] [--contexts 2048,8192]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.backend import Message, ModelRef, Params  # noqa: E402
from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.models import fit  # noqa: E402
from app.models.gguf_file import arch_of, read_header  # noqa: E402
from app.models.hardware import probe  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402

PROMPT_TOKENS = 512
TARGET, DRAFT = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"


async def measure(path: Path, context: int, prompt_tokens: int,
                  draft: Path | None = None) -> tuple[int, int]:
    backend = LlamaBackend(log_path=Path(os.environ["TRAMONTANE_HOME"]) / "worker.log")
    # with a draft model: a few tokens, so that it drafts (its cache and buffers in use too)
    params = Params(temperature=0.0, max_tokens=12 if draft else 1, context_length=context,
                    speculative="draft" if draft else "off")
    await backend.load(ModelRef(path.stem, path, chat_format="plain", draft=draft), params)
    # the prompt, as one message in the plain format (a completion's prompt would keep room to
    # answer): "word " is one token in every starter's vocabulary
    text = "word " * (prompt_tokens - 8)
    async with aclosing(backend.chat([Message("user", text)], params)) as stream:
        async for event in stream:
            last = event
    prompt = getattr(getattr(last, "stats", None), "prompt_tokens", 0)
    memory = await backend.memory()
    await backend.unload()
    return memory["peak_rss"], prompt


def _row(name: str, context: int, prompt: int, est: int, peak: int) -> dict[str, object]:
    error = (est - peak) / peak
    return {"model": name, "context": context, "prompt_tokens": prompt,
            "estimate_mib": est / 2**20, "peak_rss_mib": peak / 2**20,
            "error_pct": error * 100, "within_10pct": abs(error) <= 0.10}


def _estimate(name: str, context: int, prompt: int) -> int:
    """The estimate for `name` ("A + B draft" for a pair) with `prompt` tokens evaluated."""
    ctx, hw = AppContext(), probe()
    target = name.split(" + ")[0]
    head = read_header(ctx.resolve_model(target).path)
    alone = fit.estimate(arch_of(head), head.tensor_bytes, context, prompt_tokens=prompt,
                         repack=fit.repacked(hw, head.repack_bytes))
    if " + " not in name:
        return alone.total
    dhead = read_header(ctx.resolve_model(DRAFT).path)
    return fit.with_draft(fit.FitVerdict("cpu", alone, hw.ram_total, 0), arch_of(dhead),
                          dhead.tensor_bytes, dhead.repack_bytes, hw,
                          prompt_tokens=prompt).estimate.total


def recount(path: Path) -> None:
    import json

    old = json.loads(path.read_text())["rows"]
    rows = [_row(r["model"], r["context"], r["prompt_tokens"],
                 _estimate(r["model"], r["context"], r["prompt_tokens"]),
                 int(r["peak_rss_mib"] * 2**20)) for r in old]
    print(table(rows))
    ok = all(r["within_10pct"] for r in rows)
    print(f"every row within +-10%: {ok}")
    print(f"wrote {write(path.stem + '_recounted', {'rows': rows, 'pass': ok})}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="fill the context")
    ap.add_argument("--draft", action="store_true", help="add the 1.5B with its 0.5B draft")
    ap.add_argument("--contexts", default="2048,8192,32768")
    ap.add_argument("--models", default="", help="comma-separated starter names (default: all)")
    ap.add_argument("--recount", metavar="FILE", help="a run's JSON: its peaks, estimated anew")
    args = ap.parse_args()
    if args.recount:
        recount(Path(args.recount))
        return
    contexts = [int(c) for c in args.contexts.split(",")]
    wanted = [m for m in args.models.split(",") if m]
    ctx = AppContext()
    rows = []
    for model in ctx.local_models():
        if model.source != "starter package" or (wanted and model.name not in wanted):
            continue
        model = ctx.resolve_model(model.name)  # a split starter is assembled now
        head = read_header(model.path)
        trained = int(head.arch("context_length", 4096))
        for context in contexts:
            if context > trained:
                continue
            prompt_tokens = context - 64 if args.full else PROMPT_TOKENS
            peak, prompt = await measure(model.path, context, prompt_tokens)
            rows.append(_row(model.name, context, prompt,
                             _estimate(model.name, context, prompt), peak))
            print(f"  {model.name} {context}: {rows[-1]['error_pct']:+.1f}%", file=sys.stderr,
                  flush=True)
    if args.draft:
        big, small = ctx.resolve_model(TARGET), ctx.resolve_model(DRAFT)
        for context in contexts:
            peak, prompt = await measure(big.path, context, context - 80, small.path)
            name = f"{TARGET} + {DRAFT} draft"
            rows.append(_row(name, context, prompt, _estimate(name, context, prompt), peak))
            print(f"  draft pair {context}: {rows[-1]['error_pct']:+.1f}%", file=sys.stderr,
                  flush=True)
    print(table(rows))
    ok = all(r["within_10pct"] for r in rows)
    print(f"every row within +-10%: {ok}")
    name = "fit_accuracy" + ("_full" if args.full else "") + ("_draft" if args.draft else "")
    print(f"wrote {write(name, {'rows': rows, 'pass': ok})}")


if __name__ == "__main__":
    asyncio.run(main())
