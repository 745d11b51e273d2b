"""Thinking models: the reasoning is split from the reply in every backend's events, kept
apart in the history, shown folded, never resent and never a title. Recorded outputs in the
formats those models use stand in for a 7B thinking model, too slow for the suite here."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from textual.widgets import Collapsible

from app.engine import thinking
from app.engine.backend import Done, Event, Message, ModelRef, Params, Thought, Token
from app.engine.openai.backend import OpenAIBackend
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import make_app, send, send_json, settle, start_sse, views

# DeepSeek-R1 distill: the template ends the prompt with "<think>\n"; the model closes it
R1 = ("Okay, the user wants 2 + 2. That is 4.\n</think>\n\nThe answer is **4**.")
# Qwen3 / QwQ: the model opens and closes the block itself
QWEN3 = "<think>\nSimple sum: 2 and 2 make 4.\n</think>\n\nIt is 4."
XML = "Use <think> tags like <think>this</think> in your prompt."


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
def test_the_reasoning_is_split_however_the_text_is_cut(size: int) -> None:
    for text, inside, thought, reply in (
            (R1, True, "Okay, the user wants 2 + 2. That is 4.\n", "The answer is **4**."),
            (QWEN3, False, "\nSimple sum: 2 and 2 make 4.\n", "It is 4."),
            (XML, False, "", XML),  # a tag that does not open the reply is text
            ("<think>cut off mid-thought", False, "cut off mid-thought", "")):
        s = thinking.Splitter(inside)
        got = [s.feed(p) for p in _pieces(text, size)] + [s.flush()]
        assert "".join(t for t, _ in got) == thought, (text, size)
        assert "".join(r for _, r in got) == reply, (text, size)


async def test_a_chat_keeps_the_reasoning_apart_and_never_resends_it(home: Path) -> None:
    from app.session.front import Tramontane

    backend = ScriptedBackend(replies=[QWEN3, "Then 8."])
    door = Tramontane.open(chat_backend=backend)
    session = door.chats.new(overrides={"max_tokens": 50})
    async with aclosing(session.send("What is 2 + 2?")) as stream:
        events = [e async for e in stream]
    assert "".join(e.text for e in events if isinstance(e, Thought)).strip() == \
        "Simple sum: 2 and 2 make 4."
    assert "".join(e.text for e in events if isinstance(e, Token)) == "It is 4."
    stored = door.chats.store.messages(session.chat_id)
    assert stored[-1].content == "It is 4." and "Simple sum" in stored[-1].thinking
    async with aclosing(session.send("And doubled?")) as stream:
        assert [e async for e in stream]
    sent, _ = backend.requests[-1]
    assert all("Simple sum" not in m.content and "<think>" not in m.content for m in sent)
    assert door.chats.chat(session.chat_id).title == "What is 2 + 2?"
    assert "<summary>Thinking</summary>" in door.chats.markdown(session.chat_id)
    door.close()


async def test_the_app_folds_the_reasoning_above_the_reply(home: Path) -> None:
    app = make_app(ScriptedBackend(replies=[QWEN3]))
    async with app.run_test() as pilot:
        await send(pilot, "What is 2 + 2?")
        await settle(pilot, lambda: len(views(app)) == 2 and views(app)[-1].state == "complete")
        reply = views(app)[-1]
        assert reply.text == "It is 4."
        fold = reply.query_one(".thinking", Collapsible)
        assert fold.display and fold.collapsed and fold.title == "Thinking (7 words)"
        assert "Simple sum" not in reply.shown_source


# vLLM's and llama-server's streamed chunks for a reasoning model (`--reasoning-parser`)
RECORDED = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"reasoning_content": "The user asks 2 + 2. "},
                  "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"reasoning_content": "That is 4."},
                  "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "It is 4."}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


@pytest.fixture
def reasoning_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # /v1/models, which load checks
            send_json(self, {"object": "list", "data": [
                {"id": "qwq", "object": "model", "created": 1, "owned_by": "me"}]})

        def do_POST(self) -> None:
            start_sse(self)
            for chunk in RECORDED:
                body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                        "model": "qwq"} | chunk
                self.wfile.write(f"data: {json.dumps(body)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


async def test_reasoning_content_from_an_openai_server_is_thought(reasoning_server: str) -> None:
    backend = OpenAIBackend(reasoning_server, "key")
    await backend.load(ModelRef("qwq", source="openai"))
    events: list[Event] = []
    stream: AsyncGenerator[Event, None] = backend.chat([Message("user", "2 + 2?")], Params())
    async with aclosing(stream) as s:
        events = [e async for e in s]
    await backend.close()
    assert "".join(e.text for e in events if isinstance(e, Thought)) == \
        "The user asks 2 + 2. That is 4."
    assert "".join(e.text for e in events if isinstance(e, Token)) == "It is 4."
    assert isinstance(events[-1], Done)


def test_serve_sends_reasoning_content_as_llama_server_does(home: Path) -> None:
    from starlette.testclient import TestClient

    from app.session.context import AppContext
    from app.session.serving import ServeSession, ServeSettings
    from app.ui.serve.routes import Server

    serve = ServeSession.start(AppContext())
    serve.chat_backend = ScriptedBackend(replies=[QWEN3])  # type: ignore[assignment]
    http = TestClient(Server(serve, ServeSettings("127.0.0.1", 8012, ""), "s").app(),
                      base_url="http://127.0.0.1:8012")
    body = {"messages": [{"role": "user", "content": "2 + 2?"}]}
    whole = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert whole["content"] == "It is 4." and "Simple sum" in whole["reasoning_content"]
    lines = http.post("/v1/chat/completions", json=body | {"stream": True}).text.splitlines()
    chunks = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    said = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks)
    assert "Simple sum" in said
    assert "".join(c["choices"][0]["delta"].get("content", "") or "" for c in chunks) == "It is 4."


@pytest.mark.model
async def test_a_thinking_block_past_its_budget_is_closed_for_the_answer(smollm2: Path) -> None:
    """The worker closes a <think> block the template opened once half the reply's tokens are
    spent (SmolLM2 never closes one itself): the answer follows, and is split from it."""
    from app.engine.llama.messages import (
        Finished,
        Generate,
        GenerateOptions,
        Load,
        Loaded,
        LoadOptions,
        Text,
    )
    from app.engine.llama.process import WorkerProcess

    worker = WorkerProcess(None)
    try:
        worker.send(Load(str(smollm2), LoadOptions(1024, 1, 0)))
        assert isinstance(await worker.recv(), Loaded)
        prompt = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
        worker.send(Generate(1, prompt, GenerateOptions(
            max_tokens=40, temperature=0.0, top_p=1.0, top_k=40, repeat_penalty=1.0, seed=1,
            add_bos=False, ignore_eos=True, think_open=True)))
        text = ""
        while not isinstance(reply := await worker.recv(), Finished):
            if isinstance(reply, Text):
                text += reply.text
    finally:
        await worker.stop()
    assert "</think>" in text
    thought, answer = text.split("</think>", 1)
    assert thought.strip() and answer.strip()  # thinking, then an answer after it
    got = [e async for e in thinking.split(_words(text), inside=True)]
    assert "</think>" not in "".join(e.text for e in got if isinstance(e, Token))


async def _words(text: str) -> AsyncGenerator[Event, None]:
    for piece in text.split(" "):
        yield Token(piece + " ")
    yield Done()


def test_the_think_budget_comes_from_the_speed_model(home: Path, smollm2: Path) -> None:
    """With no [params] think_budget_s, a chat on llama.cpp thinks for the time this machine
    is predicted to take for half the reply's tokens (the speed model, from the recorded
    calibration); a budget set in the config is kept; a server's model gets the token count."""
    from app.models import speed
    from app.models.gguf_file import read_header
    from app.session.context import AppContext
    from app.session.think_time import THINK_MAX_S, think_seconds
    from tests.helpers import write_machine_speed

    ctx = AppContext()
    write_machine_speed(ctx.paths.data_dir)
    ref = ModelRef("smollm2", path=smollm2)
    params = Params(max_tokens=2000)
    tps = speed.predict(speed.shape_of_header(read_header(smollm2)), ctx.hardware,
                        speed.load_cached(ctx.paths.data_dir, ctx.hardware)).decode_tps
    budget = think_seconds(ctx.paths.data_dir, ctx.hardware, ref, params)
    assert budget == pytest.approx(min(THINK_MAX_S, 1000 / tps)) and budget > 0
    assert think_seconds(ctx.paths.data_dir, ctx.hardware, ref,
                         Params(max_tokens=2000, think_budget_s=7.0)) == 7.0
    assert think_seconds(ctx.paths.data_dir, ctx.hardware, ModelRef("qwen3", source="ollama"),
                         params) == 0.0
    sent: list[Params] = []
    backend = ScriptedBackend(["Fine."])
    original = backend.chat

    def spy(messages: list[Message], p: Params) -> AsyncGenerator[Event, None]:
        sent.append(p)
        return original(messages, p)

    backend.chat = spy  # type: ignore[method-assign]
    backend.name = "llama.cpp"  # as the library sees it: a local model
    from app.session.library import ChatLibrary

    session = ChatLibrary(ctx, backend).new()
    session.model = ref
    import asyncio

    async def drain() -> None:
        async with aclosing(session.send("Hi")) as stream:
            async for _ in stream:
                pass
    asyncio.run(drain())
    assert sent and sent[0].think_budget_s == pytest.approx(
        think_seconds(ctx.paths.data_dir, ctx.hardware, ref, session.params))
    ctx.close()
