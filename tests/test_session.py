"""ChatSession over the real worker and a real history.db."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from app.engine.backend import Backend, Done, Error, ModelRef, Params, Token
from app.engine.llama.backend import LlamaBackend
from app.engine.ollama.backend import OllamaBackend
from app.engine.openai.backend import OpenAIBackend
from app.session.chat import ChatSession
from app.store.history import ChatStore
from tests.fixtures.ollama_server import OllamaFixture
from tests.fixtures.openai_server import LlamaCppServer

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

GREEDY = Params(temperature=0.0, max_tokens=16, context_length=1024, seed=1)


@pytest.fixture(scope="module")
def openai_server(smollm2: Path, tmp_path_factory: pytest.TempPathFactory,
                  ) -> Iterator[LlamaCppServer]:
    with LlamaCppServer({"smollm2": smollm2}, tmp_path_factory.mktemp("openai"),
                        n_ctx=1024) as server:
        yield server


@pytest.fixture(params=["llama.cpp", "ollama", "openai"])
async def backend(request, smollm2: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The same session tests on every backend: llama.cpp here, an Ollama server, and an
    OpenAI-compatible one (llama-cpp-python's server)."""
    if request.param == "openai":
        o = OpenAIBackend(request.getfixturevalue("openai_server").base_url)
        yield o
        await o.close()
        return
    if request.param == "ollama":
        with OllamaFixture({"smollm2:135m": smollm2}) as server:
            b = OllamaBackend(server.host)
            yield b
            await b.unload()
        return
    b = LlamaBackend(log_path=tmp_path / "worker.log")
    yield b
    await b.unload()


def session(store: ChatStore, backend: Backend, smollm2: Path, system: str = "") -> ChatSession:
    chat = store.create_chat("smollm2", backend.name, system)
    ref = {"ollama": ModelRef("smollm2:135m"), "openai": ModelRef("smollm2")}.get(
        backend.name, ModelRef("smollm2", smollm2))
    return ChatSession(store, backend, chat, ref, GREEDY)


async def reply(s: ChatSession, text: str) -> str:
    out = ""
    async with aclosing(s.send(text)) as events:
        async for event in events:
            if isinstance(event, Token):
                out += event.text
    return out


async def test_two_chats_keep_their_own_history(tmp_path: Path, backend: Backend,
                                                smollm2: Path) -> None:
    store = ChatStore(tmp_path / "history.db")
    a = session(store, backend, smollm2)
    b = session(store, backend, smollm2, system="You are a pirate.")
    await a.load()
    ra = await reply(a, "Name a French river.")
    rb = await reply(b, "Say hello.")
    await reply(a, "And another?")
    assert [m.content for m in store.messages(a.chat_id)][:2] == ["Name a French river.", ra]
    assert len(store.messages(a.chat_id)) == 4
    assert [m.content for m in store.messages(b.chat_id)] == ["Say hello.", rb]
    assert b.history()[0].content == "You are a pirate."
    assert store.chat(a.chat_id).title == "Name a French river."
    assert all(m.state == "complete" for m in store.messages(a.chat_id))
    last = store.messages(a.chat_id)[-1]
    assert last.generated_tokens == GREEDY.max_tokens
    # llama-cpp-python's server sends no usage in a stream: no prompt count to keep there
    assert last.prompt_tokens or backend.name == "openai"


async def test_reply_is_saved_while_it_streams(tmp_path: Path, backend: Backend,
                                               smollm2: Path) -> None:
    store = ChatStore(tmp_path / "history.db")
    s = session(store, backend, smollm2)
    s.params = Params(temperature=0.0, max_tokens=300, context_length=1024)
    reader = ChatStore(tmp_path / "history.db")
    seen_mid_stream = ""
    async with aclosing(s.send("Write a long story about a lighthouse.")) as events:
        async for event in events:
            if isinstance(event, Token):
                row = reader.messages(s.chat_id)[-1]
                if row.content and row.state == "partial":
                    seen_mid_stream = row.content
                    break
    assert seen_mid_stream
    final = store.messages(s.chat_id)[-1]
    assert final.state == "partial"
    assert final.content.startswith(seen_mid_stream)


async def test_regenerate_replaces_the_last_reply(tmp_path: Path, backend: Backend,
                                                  smollm2: Path) -> None:
    store = ChatStore(tmp_path / "history.db")
    s = session(store, backend, smollm2)
    first = await reply(s, "Name a colour.")
    again = ""
    async with aclosing(s.regenerate()) as events:
        async for event in events:
            if isinstance(event, Token):
                again += event.text
            last = event
    assert isinstance(last, Done)
    assert first and again
    msgs = store.messages(s.chat_id)
    assert [m.role for m in msgs] == ["user", "assistant"]  # the old reply was replaced
    assert msgs[-1].content == again and msgs[-1].state == "complete"


async def test_error_is_saved_as_error(tmp_path: Path, backend: Backend,
                                       smollm2: Path) -> None:
    if backend.name != "llama.cpp":
        pytest.skip("context overflow is the llama.cpp case; the servers' errors: "
                    "test_ollama.py, test_openai_backend.py")
    store = ChatStore(tmp_path / "history.db")
    s = session(store, backend, smollm2)
    s.params = Params(context_length=64, max_tokens=8)
    events = [e async for e in s.send("river " * 300)]
    assert isinstance(events[-1], Error)
    row = store.messages(s.chat_id)[-1]
    assert row.state == "error" and "context length" in (row.error or "")
    assert store.messages(s.chat_id)[0].content == "river " * 300
