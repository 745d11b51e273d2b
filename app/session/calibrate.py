"""Calibrate the speed prediction on this machine: run the starters through llama.cpp, measure
decode and prompt tokens/s, and fit the factors of `models/speed.py` to them.

`tramontane doctor` runs this (about 25 s); the figures are cached in the data folder, and
every `models list`, `models fit` and the models screen use them.
"""

from __future__ import annotations

import os
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
REPEATS = 2  # each measurement is taken this often, and the best kept
BUSY_LOAD = 0.5  # a 1-minute load average over this share of the cores: the machine is busy
PLAUSIBLE = 30.0  # see `plausible`
WORSE = 0.7  # a calibration predicting under this share of the saved one's speed is not kept


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
    best: Measured | None = None
    for i in range(REPEATS):  # a busy moment slows one run: the best of them is the machine
        stats = await _run(backend, f"{i}: {prompt}", params)  # nothing cached between runs
        if stats is None or stats.decode_tps <= 0:
            raise TramontaneError(f"{name} produced no tokens to measure.")
        new_tokens = stats.prompt_tokens - stats.cached_tokens
        prompt_s = stats.ttft_ms / 1000 - 1 / stats.decode_tps
        run = Measured(local.name, stats.decode_tps, new_tokens / max(prompt_s, 1e-3),
                       new_tokens)
        best = run if best is None else Measured(
            run.model, max(run.decode_tps, best.decode_tps),
            max(run.prompt_tps, best.prompt_tps), run.prompt_tokens)
    assert best is not None
    return best, speedmod.shape_of_header(read_header(local.path))


async def _run(backend: LlamaBackend, prompt: str, params: Params) -> Stats | None:
    stats = None
    async with aclosing(backend.chat([Message("user", prompt)], params)) as stream:
        async for event in stream:
            if isinstance(event, Done):
                stats = event.stats
            elif isinstance(event, Error):
                raise TramontaneError(event.message)
    return stats


def busy(cores: int) -> str:
    """Why the machine is too busy to measure ("" when it is not)."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD * max(1, cores):
        return (f"the machine is busy (load average {load:.1f} on {cores} cores); run "
                "`tramontane doctor` again when it is idle")
    return ""


def plausible(found: Measured, shape: speedmod.ModelShape, bandwidth: float) -> bool:
    """A decode rate within a factor of PLAUSIBLE of reading the weights once per token at
    the measured bandwidth (small models pay fixed costs per token, so the floor is low)."""
    ceiling = bandwidth / max(shape.bytes_per_token, 1.0)
    return ceiling / PLAUSIBLE <= found.decode_tps <= ceiling * PLAUSIBLE and \
        found.prompt_tps > 0


async def calibrate(ctx: AppContext, names: tuple[str, ...] = CALIBRATION_STARTERS,
                    force: bool = False) -> tuple[speedmod.MachineSpeed, list[Measured], str]:
    """Measure bandwidth and the starters that are installed; save the figures unless the
    machine was busy, a run was implausible, or (without `force`) they predict far slower
    than those saved. The figures, the runs, and why they were not saved ("" when saved)."""
    before = speedmod.load_cached(ctx.paths.data_dir, ctx.hardware)
    base = speedmod.machine_speed(ctx.paths.data_dir, ctx.hardware, remeasure=True,
                                  save_it=False)
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "worker.log", measuring=True)
    runs: list[tuple[speedmod.ModelShape, float, float, int]] = []
    measured: list[Measured] = []
    try:
        for name in names:
            try:
                found, shape = await measure(backend, ctx, name)
            except TramontaneError:
                continue  # a starter that is not installed, or fails, is left out
            if not plausible(found, shape, base.bandwidth):
                continue  # a run slowed to nothing, or a clock that jumped: not a figure
            measured.append(found)
            runs.append((shape, found.decode_tps, found.prompt_tps, found.prompt_tokens))
    finally:
        await backend.unload()
    result = speedmod.calibrated(base, runs, " + ".join(m.model for m in measured))
    why = busy(ctx.hardware.cores)
    if not why and not measured:
        why = "no starter gave a plausible measurement"
    if not why and not force and before is not None and before.is_calibrated and runs:
        shape = runs[-1][0]
        old = speedmod.predict(shape, ctx.hardware, before).decode_tps
        new = speedmod.predict(shape, ctx.hardware, result).decode_tps
        if new < WORSE * old:
            why = (f"these figures predict {new:.1f} tok/s for {measured[-1].model} where "
                   f"the saved ones predict {old:.1f}; the machine may have been busy. The "
                   "saved figures are kept (`tramontane doctor --recalibrate` replaces them)")
    if not why:
        speedmod.save(ctx.paths.data_dir, result)
    return result, measured, why
