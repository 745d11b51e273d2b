"""Calibrate the speed prediction on this machine: run the starters through llama.cpp, measure
decode and prompt tokens/s, and fit the factors of `models/speed.py` to them.

`tramontane doctor` runs this (about 25 s); the figures are cached in the data folder, and
every `models list`, `models fit` and the models screen use them.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, replace

from app.engine.backend import Done, Error, Message, Params, Stats
from app.engine.llama.backend import LlamaBackend
from app.errors import TramontaneError
from app.models import speed as speedmod
from app.models.gguf_file import read_header
from app.session.context import AppContext, model_ref

CALIBRATION_STARTERS = ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-1.5b-instruct")
PROMPT = ("Here is a Python module. Read it and say what it does.\n\n"
          + "\n".join(f"def step_{i}(x):\n    return x * {i} + {i * 7} // 3\n" for i in range(48)))
WARM_UP = "Write one word."
DECODE_TOKENS = 48


@dataclass(frozen=True)
class Measured:
    model: str
    decode_tps: float
    prompt_tps: float
    prompt_tokens: int


async def measure(backend: LlamaBackend, ctx: AppContext, name: str,
                  decode_tokens: int = DECODE_TOKENS, prompt: str = PROMPT,
                  threads: int = 0) -> tuple[Measured, speedmod.ModelShape]:
    """Load `name`, run one prompt and decode `decode_tokens`; the figures and its shape."""
    local = ctx.resolve_model(name)
    params = Params(temperature=0.0, max_tokens=decode_tokens, context_length=4096, seed=1,
                    threads=threads, gpu_layers=0)
    await backend.load(model_ref(local), params)
    # llama.cpp maps the weights lazily: a first short run pages them in, so the measured run
    # times the model, not the disk. Its prompt differs, so nothing of it is cached.
    await _run(backend, WARM_UP, replace(params, max_tokens=4))
    stats = await _run(backend, prompt, params)
    if stats is None or stats.decode_tps <= 0:
        raise TramontaneError(f"{name} produced no tokens to measure.")
    new_tokens = stats.prompt_tokens - stats.cached_tokens
    prompt_s = stats.ttft_ms / 1000 - 1 / stats.decode_tps
    head = read_header(local.path)
    shape = speedmod.shape_of_header(head)
    return Measured(local.name, stats.decode_tps, new_tokens / max(prompt_s, 1e-3),
                    new_tokens), shape


async def _run(backend: LlamaBackend, prompt: str, params: Params) -> Stats | None:
    stats = None
    async with aclosing(backend.chat([Message("user", prompt)], params)) as stream:
        async for event in stream:
            if isinstance(event, Done):
                stats = event.stats
            elif isinstance(event, Error):
                raise TramontaneError(event.message)
    return stats


async def calibrate(ctx: AppContext, names: tuple[str, ...] = CALIBRATION_STARTERS,
                    ) -> tuple[speedmod.MachineSpeed, list[Measured]]:
    """Measure bandwidth and the starters that are installed; save and return the figures."""
    base = speedmod.machine_speed(ctx.paths.data_dir, ctx.hardware, remeasure=True)
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "worker.log", measuring=True)
    runs: list[tuple[speedmod.ModelShape, float, float, int]] = []
    measured: list[Measured] = []
    try:
        for name in names:
            try:
                found, shape = await measure(backend, ctx, name)
            except TramontaneError:
                continue  # a starter that is not installed, or fails, is left out
            measured.append(found)
            runs.append((shape, found.decode_tps, found.prompt_tps, found.prompt_tokens))
    finally:
        await backend.unload()
    result = speedmod.calibrated(base, runs, " + ".join(m.model for m in measured))
    speedmod.save(ctx.paths.data_dir, result)
    return result, measured
