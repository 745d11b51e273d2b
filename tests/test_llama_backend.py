"""The llama.cpp backend through its worker process, with the real starter model."""

from __future__ import annotations

import os
import signal
import time
from contextlib import aclosing
from pathlib import Path

import psutil
import pytest

from app.engine.backend import Done, Error, Event, Message, ModelRef, Params, Token
from app.engine.llama.backend import LlamaBackend
from app.errors import BackendError

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

GREEDY = Params(temperature=0.0, max_tokens=24, context_length=512, seed=1)
QUESTION = [Message("user", "Name three French rivers.")]


async def collect(stream) -> list[Event]:  # type: ignore[no-untyped-def]
    async with aclosing(stream) as events:
        return [e async for e in events]


@pytest.fixture
async def backend(smollm2: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    b = LlamaBackend(log_path=tmp_path / "worker.log")
    await b.load(ModelRef("smollm2", smollm2), GREEDY)
    yield b
    await b.unload()


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


async def test_streams_tokens_then_done(backend: LlamaBackend) -> None:
    events = await collect(backend.chat(QUESTION, GREEDY))
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) > 3
    assert isinstance(events[-1], Done)
    stats = events[-1].stats
    assert stats.prompt_tokens > 10
    assert stats.generated_tokens == GREEDY.max_tokens
    assert stats.stop_reason == "length"
    assert stats.ttft_ms > 0 and stats.decode_tps > 0
    assert text_of(events).strip()


async def test_the_same_prompt_reuses_the_kv_cache(backend: LlamaBackend) -> None:
    first = await collect(backend.chat(QUESTION, GREEDY))
    second = await collect(backend.chat(QUESTION, GREEDY))
    assert isinstance(first[-1], Done) and first[-1].stats.cached_tokens == 0
    done = second[-1]
    assert isinstance(done, Done)
    assert done.stats.cached_tokens == done.stats.prompt_tokens - 1


async def test_cancel_stops_the_worker_without_killing_it(backend: LlamaBackend) -> None:
    pid = backend.worker.pid if backend.worker else None
    long = Params(temperature=0.0, max_tokens=400, context_length=512)
    started = time.monotonic()
    count = 0
    async with aclosing(backend.chat(QUESTION, long)) as stream:
        async for event in stream:
            if isinstance(event, Token):
                count += 1
            if count == 3:
                break
    assert time.monotonic() - started < 5
    assert backend.worker is not None and backend.worker.pid == pid
    events = await collect(backend.chat(QUESTION, GREEDY))
    assert isinstance(events[-1], Done)


@pytest.mark.parametrize(("sig", "words"), [(signal.SIGSEGV, "SIGSEGV"),
                                             (signal.SIGKILL, "out of memory")])
async def test_worker_death_is_an_error_and_the_next_request_recovers(
    backend: LlamaBackend, sig: signal.Signals, words: str
) -> None:
    long = Params(temperature=0.0, max_tokens=400, context_length=512)
    assert backend.worker is not None
    pid = backend.worker.pid
    assert pid is not None
    events: list[Event] = []
    async with aclosing(backend.chat(QUESTION, long)) as stream:
        async for event in stream:
            events.append(event)
            if len(events) == 2:
                os.kill(pid, sig)
    assert isinstance(events[-1], Error)
    assert words in events[-1].message
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = await collect(backend.chat(QUESTION, GREEDY))
    assert isinstance(again[-1], Done)
    assert backend.worker is not None and backend.worker.pid != pid


async def test_prompt_longer_than_context(smollm2: Path, tmp_path: Path) -> None:
    b = LlamaBackend(log_path=tmp_path / "w.log")
    small = Params(temperature=0.0, max_tokens=8, context_length=64)
    try:
        await b.load(ModelRef("smollm2", smollm2), small)
        events = await collect(b.chat([Message("user", "river " * 200)], small))
    finally:
        await b.unload()
    assert isinstance(events[-1], Error)
    assert "context length of 64" in events[-1].message


async def test_corrupt_file_fails_to_load_with_a_message(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[: len(data) // 3])
    b = LlamaBackend(log_path=tmp_path / "w.log")
    with pytest.raises(BackendError, match="copy.gguf"):
        await b.load(ModelRef("broken", tiny_gguf), GREEDY)
    assert b.worker is None


async def test_unload_returns_the_process(backend: LlamaBackend) -> None:
    assert backend.worker is not None
    proc = backend.worker.proc
    await backend.unload()
    assert not proc.is_alive()
    info = await backend.info()
    assert info.model is None


async def test_complete_continues_the_prefix(backend: LlamaBackend) -> None:
    events = await collect(backend.complete("def add(a, b):\n    return", "", GREEDY))
    assert isinstance(events[-1], Done)
    assert text_of(events)


async def test_time_cap_counts_decoding_only(backend: LlamaBackend) -> None:
    """max_time_ms is llama.cpp's t_max_predict_ms: it stops decoding that long after the
    first token, whatever the prompt took (a long prompt still gets its suggestion)."""
    params = Params(temperature=0.0, max_tokens=400, context_length=512, seed=1,
                    max_time_ms=60)
    long_question = [Message("user", "Tell a long story. " + "Rivers and seas. " * 60)]
    events = await collect(backend.chat(long_question, params))
    done = events[-1]
    assert isinstance(done, Done) and done.stats.stop_reason == "time"
    assert 1 < done.stats.generated_tokens < 400

