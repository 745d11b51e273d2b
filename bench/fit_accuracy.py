"""The memory estimate against reality: for each starter model at contexts 2k, 8k and 32k
(where the model allows), the estimate for a 512-token prompt against the worker's measured
peak RSS after a load and a 512-token prompt. Target: every row within +-10%.

Run: .venv/bin/python bench/fit_accuracy.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.backend import ModelRef, Params  # noqa: E402
from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.models import fit  # noqa: E402
from app.models.gguf_file import arch_of, read_header  # noqa: E402
from app.models.hardware import probe  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402

PROMPT_TOKENS = 512


async def measure(path: Path, context: int) -> tuple[int, int]:
    backend = LlamaBackend(log_path=Path(os.environ["TRAMONTANE_HOME"]) / "worker.log")
    params = Params(temperature=0.0, max_tokens=1, context_length=context)
    await backend.load(ModelRef(path.stem, path, chat_format="plain"), params)
    # about 512 tokens of prompt: "word " is one token in both vocabularies
    async with aclosing(backend.complete("word " * (PROMPT_TOKENS - 2), "", params)) as stream:
        async for event in stream:
            last = event
    prompt = getattr(getattr(last, "stats", None), "prompt_tokens", 0)
    memory = await backend.memory()
    await backend.unload()
    return memory["peak_rss"], prompt


async def main() -> None:
    ctx = AppContext()
    hw = probe()
    rows = []
    for model in ctx.local_models():
        if model.source != "starter package":
            continue
        model = ctx.resolve_model(model.name)  # a split starter is assembled now
        head = read_header(model.path)
        arch = arch_of(head)
        trained = int(head.arch("context_length", 4096))
        for context in (2048, 8192, 32768):
            if context > trained:
                continue
            est = fit.estimate(arch, head.tensor_bytes, context, prompt_tokens=PROMPT_TOKENS,
                               repack=fit.repacked(hw, head.repack_bytes))
            peak, prompt = await measure(model.path, context)
            error = (est.total - peak) / peak
            rows.append({"model": model.name, "context": context, "prompt_tokens": prompt,
                         "estimate_mib": est.total / 2**20, "peak_rss_mib": peak / 2**20,
                         "error_pct": error * 100, "within_10pct": abs(error) <= 0.10})
    print(table(rows))
    ok = all(r["within_10pct"] for r in rows)
    print(f"every row within +-10%: {ok}")
    print(f"wrote {write('fit_accuracy', {'rows': rows, 'pass': ok})}")


if __name__ == "__main__":
    asyncio.run(main())
