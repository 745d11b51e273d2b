"""Predicted against measured speed for the three starters: decode tokens/s (64 tokens) and
prompt tokens/s (a ~2,000-token prompt), after the calibration `tramontane doctor` runs.

The calibration (as `tramontane doctor` runs it) fits the factors to all three starters on a
~1,000-token prompt by least squares; the runs here are new ones, and the 2k prompt is longer
than the calibration's. Target: every figure ±25%.

Run: .venv/bin/python bench/speed_prediction.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-bench-"))

from app.engine.llama.backend import LlamaBackend  # noqa: E402
from app.models import speed  # noqa: E402
from app.models.hardware import probe  # noqa: E402
from app.session.calibrate import calibrate, measure  # noqa: E402
from app.session.context import AppContext  # noqa: E402
from bench.common import table, write  # noqa: E402

STARTERS = ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-1.5b-instruct")
LONG_PROMPT = "Summarise this log.\n" + "\n".join(
    f"2026-11-24 08:{i % 60:02d}:{i * 7 % 60:02d} worker {i % 5} finished job {i} in {i * 13 % 997} ms"
    for i in range(60))


async def main() -> None:
    ctx = AppContext()
    figures, runs, not_saved = await calibrate(ctx, force=True)
    if not_saved:
        print(f"note: {not_saved}")
    print(f"calibrated: bandwidth {figures.bandwidth / 1e9:.1f} GB/s, efficiency "
          f"{figures.efficiency:.2f}, {figures.layer_s * 1e6:.0f} us/layer decode, "
          f"{figures.prompt_flops / 1e9:.0f} GFLOP/s + {figures.head_s * 1e6:.1f} us/layer-head "
          f"prompt (with {figures.calibrated_with})")
    hw = probe()
    rows = []
    backend = LlamaBackend()
    try:
        for name in STARTERS:
            decode, shape = await measure(backend, ctx, name, decode_tokens=64)
            prompt, _ = await measure(backend, ctx, name, decode_tokens=4, prompt=LONG_PROMPT)
            at_decode = speed.predict(shape, hw, figures, context_fill=decode.prompt_tokens)
            at_prompt = speed.predict(shape, hw, figures, context_fill=prompt.prompt_tokens // 2)
            rows.append({
                "model": name, "held_out": name not in figures.calibrated_with,
                "decode_measured": round(decode.decode_tps, 1),
                "decode_predicted": round(at_decode.decode_tps, 1),
                "decode_error": round(at_decode.decode_tps / decode.decode_tps - 1, 3),
                "prompt_tokens": prompt.prompt_tokens,
                "prompt_measured": round(prompt.prompt_tps, 1),
                "prompt_predicted": round(at_prompt.prompt_tps, 1),
                "prompt_error": round(at_prompt.prompt_tps / prompt.prompt_tps - 1, 3),
            })
    finally:
        await backend.unload()
    print(table(rows))
    ok = all(abs(r["decode_error"]) <= 0.25 and abs(r["prompt_error"]) <= 0.25 for r in rows)
    print("target ±25% on every figure:", "met" if ok else "NOT met")
    path = write("speed_prediction", {"machine_speed": figures.to_dict(), "rows": rows,
                                      "target_met": ok})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
