"""The Ollama backend through the real `ollama` client against the protocol fixture, and every
way a server can fail, each ending in a clear message with the history intact."""

from __future__ import annotations

import json
import socket
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from app.engine.backend import Done, Error, Event, Message, ModelRef, Params, Token
from app.engine.ollama.backend import OllamaBackend, is_remote, options
from app.errors import BackendError
from app.session.chat import ChatSession
from app.store.history import ChatStore
from tests.fixtures.ollama_server import OllamaFixture
from tests.helpers import tramontane

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

GREEDY = Params(temperature=0.0, max_tokens=12, context_length=1024, seed=1)
ASK = [Message("user", "Name three French rivers.")]


@pytest.fixture
def server(smollm2: Path):  # type: ignore[no-untyped-def]
    with OllamaFixture({"smollm2:135m": smollm2}) as fixture:
        yield fixture


async def run(stream) -> list[Event]:  # type: ignore[no-untyped-def]
    async with aclosing(stream) as events:
        return [e async for e in events]


async def backend_for(server: OllamaFixture, **kw) -> OllamaBackend:  # type: ignore[no-untyped-def]
    b = OllamaBackend(server.host, **kw)
    await b.load(ModelRef("smollm2:135m"))
    return b


def test_options_are_mapped_to_ollama_names() -> None:
    o = options(Params(temperature=0.2, top_p=0.5, top_k=7, repeat_penalty=1.3, seed=9,
                       max_tokens=33, context_length=2048))
    assert o == {"num_ctx": 2048, "temperature": 0.2, "top_p": 0.5, "top_k": 7,
                 "repeat_penalty": 1.3, "seed": 9, "num_predict": 33}
    assert "seed" not in options(Params(seed=-1))


def test_remote_host_is_recognised() -> None:
    assert not is_remote("http://127.0.0.1:11434") and not is_remote("http://localhost:1")
    assert is_remote("http://gpu-box:11434")


async def test_a_remote_server_is_named_in_the_app_and_never_with_its_password(
        home: Path) -> None:
    from app.engine.openai.backend import OpenAIBackend
    from app.session.context import remote_server
    from tests.helpers import make_app

    remote = OllamaBackend("http://me:secret@gpu-box:11434")
    assert remote_server(remote) == "Ollama at http://gpu-box:11434"
    assert remote_server(OllamaBackend("http://127.0.0.1:11434")) == ""
    assert remote_server(OpenAIBackend("http://10.0.0.7:8000/v1")) == \
        "the OpenAI-compatible server at http://10.0.0.7:8000/v1"
    app = make_app(remote)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.sub_title == "Ollama at http://gpu-box:11434 (remote)"


async def test_chat_streams_real_text_with_stats(server: OllamaFixture) -> None:
    b = await backend_for(server)
    events = await run(b.chat(ASK, GREEDY))
    assert sum(isinstance(e, Token) for e in events) > 3
    done = events[-1]
    assert isinstance(done, Done) and done.stats.generated_tokens == GREEDY.max_tokens
    assert done.stats.decode_tps > 0 and done.stats.stop_reason == "length"
    path, body = next(r for r in server.requests if r[0] == "/api/chat")
    assert body["options"]["num_predict"] == 12 and body["options"]["num_ctx"] == 1024
    assert body["keep_alive"] == "5m" and body["stream"] is True


async def test_complete_without_suffix_template_sends_our_prompt_raw(server: OllamaFixture) -> None:
    b = await backend_for(server)
    events = await run(b.complete("def add(a, b):\n    return", "\n", GREEDY))
    assert isinstance(events[-1], Done)
    _, body = [r for r in server.requests if r[0] == "/api/generate"][-1]
    assert body["raw"] is True and body["prompt"] == "def add(a, b):\n    return"


async def test_models_details_loaded_pull_delete_unload(server: OllamaFixture) -> None:
    b = await backend_for(server)
    assert [m.name for m in await b.models()] == ["smollm2:135m"]
    details = await b.details("smollm2:135m")
    assert details["model_info"]["llama.block_count"] == 30
    await run(b.chat(ASK, GREEDY))
    [loaded] = await b.loaded()
    assert loaded["name"] == "smollm2:135m" and loaded["split"] == "100% CPU"
    statuses = [p async for p in b.pull("mistral:7b")]
    assert statuses[0].status == "pulling manifest" and statuses[-1].status == "success"
    assert any(p.total and p.completed == p.total for p in statuses)
    assert "mistral:7b" in [m.name for m in await b.models()]
    await b.delete("mistral:7b")
    with pytest.raises(BackendError, match="no model 'mistral:7b'"):
        await b.delete("mistral:7b")
    await b.unload()
    assert server.loaded == set()
    info = await b.info()
    assert info.details["remote"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_not_running_says_how_to_start_it() -> None:
    b = OllamaBackend(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(BackendError, match="ollama serve"):
        await b.load(ModelRef("mistral:7b"))


async def test_model_not_pulled_offers_to_pull(server: OllamaFixture) -> None:
    b = OllamaBackend(server.host)
    with pytest.raises(BackendError, match="models pull --backend ollama mistral:7b"):
        await b.load(ModelRef("mistral:7b"))


@pytest.mark.parametrize(("mode", "words"), [
    ("error_mid", "GGML_ASSERT"), ("die", "broke mid-reply"), ("bad_line", "not JSON"),
    ("stall", "sent nothing in time"), ("bad_shape", "shape Tramontane cannot read"),
    ("stall_mid", "raise [ollama] read_timeout"),
])
async def test_failures_mid_stream_keep_the_partial_reply(server: OllamaFixture, tmp_path: Path,
                                                        mode: str, words: str) -> None:
    wait = 1.0 if mode.startswith("stall") else 15.0  # short only where a stall is the test
    b = await backend_for(server, first_token_timeout=wait, read_timeout=wait)
    server.mode = mode
    store = ChatStore(tmp_path / "history.db")
    chat = store.create_chat("smollm2:135m", "ollama")
    session = ChatSession(store, b, chat, ModelRef("smollm2:135m"),
                          Params(temperature=0.0, max_tokens=40, context_length=1024))
    events = await run(session.send("Name three French rivers."))
    assert isinstance(events[-1], Error) and words in events[-1].message
    user, reply = store.messages(chat.id)
    assert user.content == "Name three French rivers." and reply.state == "error"
    streamed = "".join(e.text for e in events if isinstance(e, Token))
    assert reply.content == streamed
    if mode != "stall":
        assert streamed  # two tokens arrived before the failure, and they are kept


async def test_unload_at_exit_does_not_wait_on_a_hung_server(server: OllamaFixture) -> None:
    b = await backend_for(server)
    server.mode = "hang_unload"
    t0 = time.perf_counter()
    await b.unload()
    assert time.perf_counter() - t0 < 3.0  # not the 60 s read timeout


def test_cli_chat_through_ollama(server: OllamaFixture, home: Path) -> None:
    out = tramontane("chat", "--backend", "ollama", "-m", "smollm2:135m", "--max-tokens", "8",
                     "--temperature", "0", "--stats", "Say hello.",
                     env={"OLLAMA_HOST": server.host})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "tok/s" in out.stderr
    chats = json.loads(tramontane("history", "list", "--json").stdout)
    assert chats[0]["backend"] == "ollama" and chats[0]["model"] == "smollm2:135m"


def test_a_chat_saved_on_ollama_continues_on_ollama_from_the_cli(server: OllamaFixture,
                                                                 home: Path) -> None:
    """`chat --chat ID` with no --backend goes on where the chat was saved (config.toml still
    says llama.cpp): the Ollama model never reaches the llama.cpp worker."""
    env = {"OLLAMA_HOST": server.host}
    first = tramontane("chat", "--backend", "ollama", "-m", "smollm2:135m", "--max-tokens", "6",
                       "Say hello.", env=env)
    assert first.returncode == 0, first.stderr
    (chat,) = json.loads(tramontane("history", "list", "--json").stdout)
    again = tramontane("chat", "--chat", str(chat["id"]), "--max-tokens", "6", "--temperature",
                       "0", "And again.", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip()
    shown = json.loads(tramontane("history", "export", str(chat["id"]), "--format", "json").stdout)
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant"] * 2
    assert shown["chat"]["backend"] == "ollama" and shown["chat"]["model"] == "smollm2:135m"


async def test_a_chat_saved_on_ollama_continues_on_ollama_in_the_app(server: OllamaFixture,
                                                                    home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    ) -> None:
    from app.session.front import Tramontane
    from app.ui.tui.app import TramontaneApp
    from tests.helpers import send, settle, views

    monkeypatch.setenv("OLLAMA_HOST", server.host)
    door = Tramontane.open("ollama")
    saved = door.chats.new("smollm2:135m", overrides={"max_tokens": 6})
    async with aclosing(saved.send("Say hello.")) as stream:
        assert [e async for e in stream]
    await door.unload()
    door.close()
    app = TramontaneApp(Tramontane.open(), saved.chat_id)  # config.toml: llama.cpp
    async with app.run_test() as pilot:
        await settle(pilot, lambda: app.chat.session is not None and len(views(app)) == 2)
        await send(pilot, "And again.")
        await settle(pilot, lambda: len(views(app)) == 4 and views(app)[-1].state != "streaming",
                         what="a reply from Ollama")
        assert views(app)[-1].state == "complete" and views(app)[-1].text.strip()
        assert app.chat.session is not None and app.chat.session.backend.name == "ollama"


def test_cli_ollama_down_is_one_line(home: Path) -> None:
    out = tramontane("chat", "--backend", "ollama", "-m", "mistral:7b", "hi",
                     env={"OLLAMA_HOST": f"127.0.0.1:{_free_port()}"})
    assert out.returncode == 1 and "ollama serve" in out.stderr and "Traceback" not in out.stderr


def test_cli_models_and_complete_through_ollama(server: OllamaFixture, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": server.host}
    listed = json.loads(tramontane("models", "list", "--backend", "ollama", "--json", env=env).stdout)
    assert [m["name"] for m in listed] == ["smollm2:135m"]
    pulled = tramontane("models", "pull", "--backend", "ollama", "qwen2.5-coder:1.5b", env=env)
    assert pulled.returncode == 0, pulled.stderr
    info = tramontane("models", "info", "--backend", "ollama", "smollm2:135m", env=env)
    assert "llama.block_count: 30" in info.stdout
    assert tramontane("models", "rm", "--backend", "ollama", "qwen2.5-coder:1.5b",
                      env=env).returncode == 0
    missing = tramontane("models", "rm", "--backend", "ollama", "qwen2.5-coder:1.5b", env=env)
    assert missing.returncode == 1 and "no model" in missing.stderr
    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    return \n")
    done = tramontane("complete", str(src), "--line", "2", "--col", "12", "--backend", "ollama",
                      "-m", "smollm2:135m", "--json", "--max-tokens", "6", env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["generated_tokens"] >= 1
    assert answer["fim"] == "prompt"  # SmolLM2's template has no suffix: our own FIM prompt


JSON_KEYS = {"text", "raw", "model", "format", "backend", "fim", "server", "context_files",
             "prompt_tokens", "cached_tokens", "generated_tokens", "timings"}


def test_show_prompt_is_exactly_what_is_sent(server: OllamaFixture, tmp_path: Path) -> None:
    """`complete --show-prompt` asks the backend what it will send; the server got that."""
    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    return \n")
    out = tramontane("complete", str(src), "--line", "2", "--col", "12", "--backend", "ollama",
                     "-m", "smollm2:135m", "--show-prompt", "--json", "--max-tokens", "4",
                     env={"OLLAMA_HOST": server.host})
    assert out.returncode == 0, out.stderr
    shown = out.stderr.split("\n---\n")[0]
    (sent,) = [body for path, body in server.requests
               if path == "/api/generate" and body.get("prompt")]  # not the load or unload
    assert sent["prompt"] == shown and sent["raw"] is True
    answer = json.loads(out.stdout)
    assert set(answer) == JSON_KEYS and answer["fim"] == "prompt"  # one shape (test_serve.py)


async def test_complete_with_suffix_template_puts_fitting_chunks_before_the_prefix(
        server: OllamaFixture) -> None:
    from app.engine.backend import ContextChunk

    b = await backend_for(server)
    await b.load(ModelRef("smollm2:135m", source="ollama"))
    b._template = "{{ .Prompt }}{{ .Suffix }}"  # as a FIM model's template reads
    small = ContextChunk("helpers.py", "def double(x):\n    return 2 * x\n")
    huge = ContextChunk("huge.py", "x = 1\n" * 5000)  # more than the whole context
    events = await run(b.complete("y = ", "\n", GREEDY, [small, huge], "main.py"))
    assert isinstance(events[-1], Done)
    _, body = [r for r in server.requests if r[0] == "/api/generate"][-1]
    assert body["prompt"] == "# helpers.py\n# def double(x):\n#     return 2 * x\n\ny = "
    assert body["suffix"] == "\n" and not body.get("raw")
