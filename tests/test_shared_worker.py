"""Chat and code share one llama.cpp worker when they load the same model the same way (issue
24: the Qwen starter is the default for both, and two workers held two KV caches and two
repacked copies). Each backend still streams its own replies; when chat moves to another
model, code gets a worker of its own."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

import pytest

from app.engine.backend import Done, Event, Message, ModelRef, Params, Token
from app.engine.llama.backend import LlamaBackend
from app.session.context import AppContext

pytestmark = pytest.mark.model

PARAMS = Params(temperature=0.0, max_tokens=16, context_length=512, seed=1)


async def _collect(stream) -> list[Event]:  # type: ignore[no-untyped-def]
    async with aclosing(stream) as events:
        return [e async for e in events]


def _text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


async def test_chat_and_code_on_the_same_model_share_one_worker(smollm2: Path,
                                                                tiny_gguf: Path) -> None:
    ctx = AppContext()
    chat = ctx.backend_for("llama.cpp")
    code = ctx.code_backend
    assert isinstance(chat, LlamaBackend) and isinstance(code, LlamaBackend)
    ref = ModelRef("smollm2", smollm2)
    try:
        await chat.load(ref, PARAMS)
        await code.load(replace(ref, fim_format="smollm2"), PARAMS)
        assert code.worker is chat.worker and code.worker is not None
        pid = chat.worker.pid
        # both at once: one worker answers each in turn, each gets its own reply
        answer, completion = await asyncio.gather(
            _collect(chat.chat([Message("user", "Name a French river.")], PARAMS)),
            _collect(code.complete("def add(a, b):\n    return", "\n", PARAMS)))
        assert isinstance(answer[-1], Done) and _text(answer)
        assert isinstance(completion[-1], Done) and _text(completion)
        assert chat.worker is not None and chat.worker.pid == pid
        # a chat on another file: code keeps working, on a worker of its own
        await chat.load(ModelRef("copy", tiny_gguf), PARAMS)
        again = await _collect(code.complete("def add(a, b):\n    return", "\n", PARAMS))
        assert isinstance(again[-1], Done)
        assert code.worker is not None and code.worker is not chat.worker
        assert code.worker.pid != chat.worker.pid
    finally:
        await code.unload()
        await chat.unload()


async def test_another_context_is_another_load(smollm2: Path) -> None:
    ctx = AppContext()
    chat, code = ctx.backend_for("llama.cpp"), ctx.code_backend
    assert isinstance(chat, LlamaBackend) and isinstance(code, LlamaBackend)
    ref = ModelRef("smollm2", smollm2)
    try:
        await chat.load(ref, PARAMS)
        await code.load(ref, replace(PARAMS, context_length=1024))
        assert code.worker is not chat.worker
    finally:
        await code.unload()
        await chat.unload()


async def test_two_different_models_are_planned_together(smollm2: Path, tiny_gguf: Path) -> None:
    """While chat holds one model in its worker, code's model is planned against the memory
    left: on a machine just big enough for either alone, the second does not fit beside the
    first (its warning says so), and fits again once the first is unloaded."""
    from app.session.placement import plan_load

    ctx = AppContext()
    chat = ctx.backend_for("llama.cpp")
    assert isinstance(chat, LlamaBackend)
    local = ctx.resolve_model(str(tiny_gguf))
    alone = plan_load(local, 512, ctx.hardware)
    assert alone.verdict is not None
    need = alone.verdict.estimate.cpu_bytes - alone.verdict.estimate.reclaimable
    ctx.__dict__["hardware"] = replace(ctx.hardware, ram_total=int(need / 0.9 * 1.5),
                                       gpus=[])  # either alone fits; not both
    params = replace(PARAMS, gpu_layers=0)
    assert ctx.placed(local, params).fit_warning == ""
    try:
        await chat.load(ModelRef("smollm2", smollm2), params)
        assert "needs about" in ctx.placed(local, params).fit_warning
    finally:
        await chat.unload()
    assert ctx.placed(local, params).fit_warning == ""
