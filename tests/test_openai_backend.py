"""The OpenAI-compatible backend against a real server: llama-cpp-python's own
(`llama_cpp.server`) serving the starters on 127.0.0.1, through the `openai` client; and the
failures (down, wrong key, unknown model, stopped mid-stream, stall, malformed event, cut)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from app.engine.backend import Done, Error, Message, ModelRef, Params, Token
from app.engine.openai.backend import OpenAIBackend
from app.errors import BackendError
from app.session.chat import ChatSession
from app.store.history import ChatStore
from tests.fixtures.openai_server import BrokenServer, LlamaCppServer, free_port
from tests.helpers import db_rows, tramontane

KEY = "sekrit-test-key-123"
QWEN = "qwen2.5-coder-1.5b-instruct"  # served under its catalog id: its FIM format is known
GREEDY = Params(temperature=0.0, max_tokens=12, context_length=1024, seed=1)


@pytest.fixture(scope="module")
def server(smollm2: Path, qwen_file: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[LlamaCppServer]:
    with LlamaCppServer({"smollm2": smollm2, QWEN: qwen_file},
                        tmp_path_factory.mktemp("openai"), api_key=KEY) as s:
        yield s


def _configure(home: Path, server: LlamaCppServer) -> dict[str, str]:
    """config.toml names the server; the key comes from the environment, as users keep it."""
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[openai]\nbase_url = "{server.base_url}"\n', encoding="utf-8")
    return {**os.environ, "TRAMONTANE_OPENAI_API_KEY": KEY}


async def _events(gen) -> list:  # type: ignore[no-untyped-def, type-arg]
    async with aclosing(gen) as events:
        return [e async for e in events]


async def test_chat_streams_with_stats(server: LlamaCppServer) -> None:
    b = OpenAIBackend(server.base_url, KEY)
    await b.load(ModelRef("smollm2"))
    events = await _events(b.chat([Message("user", "Name a colour.")], GREEDY))
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens and isinstance(events[-1], Done)
    stats = events[-1].stats
    assert stats.generated_tokens == len(tokens) and stats.ttft_ms > 0
    assert stats.stop_reason == "length"  # 12 tokens asked, 12 given
    await b.close()


def test_cli_chat_models_and_history(home: Path, server: LlamaCppServer) -> None:
    env = _configure(home, server)
    out = tramontane("chat", "--backend", "openai", "-m", "smollm2", "--stats",
                     "--max-tokens", "8", "--temperature", "0", "Name a colour.", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "generated" in out.stderr
    assert KEY not in out.stdout + out.stderr
    rows = db_rows(home / "data" / "history.db", "SELECT backend, model FROM chats")
    assert rows == [("openai", "smollm2")]
    listed = json.loads(tramontane("models", "list", "--backend", "openai", "--json",
                                   env=env).stdout)
    assert {m["name"] for m in listed} == {"smollm2", QWEN}


@pytest.mark.qwen
def test_complete_fills_the_middle_with_suffix(home: Path, server: LlamaCppServer,
                                               tmp_path: Path) -> None:
    env = _configure(home, server)
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return \n\n\nprint(add(1, 2))\n", encoding="utf-8")
    out = tramontane("complete", str(source), "--line", "2", "--col", "12", "--backend",
                     "openai", "-m", QWEN, "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # the catalog knows Qwen's FIM format: our prompt, not the server's broken `suffix`
    assert data["fim"] == "prompt" and data["backend"] == "openai"
    assert data["text"].strip().startswith("a + b")


@pytest.mark.qwen
async def test_suffix_mode_sends_the_suffix(server: LlamaCppServer) -> None:
    """With `fim = "suffix"` (a model we have no format for), the server's own FIM path is
    used: the request carries `suffix` and the reply streams to its end. (llama-cpp-python's
    server then uses token 0 for the FIM tokens, so the text itself is not checked.)"""
    b = OpenAIBackend(server.base_url, KEY, fim="suffix")
    await b.load(ModelRef(QWEN))
    assert await b.fim_mode() == "suffix"
    events = await _events(b.complete("def add(a, b):\n    return ", "\n", GREEDY))
    assert isinstance(events[-1], Done) and events[-1].stats.generated_tokens > 0
    assert any(isinstance(e, Token) for e in events)
    await b.close()


async def test_wrong_key_is_one_line_without_the_key(server: LlamaCppServer) -> None:
    b = OpenAIBackend(server.base_url, "wrong-key-value")
    with pytest.raises(BackendError, match=r"refused the API key \(401\)") as caught:
        await b.models()
    assert "wrong-key-value" not in str(caught.value)
    await b.close()


async def test_unknown_model_names_what_the_server_has(server: LlamaCppServer) -> None:
    b = OpenAIBackend(server.base_url, KEY)
    with pytest.raises(BackendError, match=f"has no model 'nope'; it serves: smollm2, {QWEN}"):
        await b.load(ModelRef("nope"))
    await b.close()


async def test_server_down_is_one_line() -> None:
    b = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", KEY)
    with pytest.raises(BackendError, match="No OpenAI-compatible server is answering"):
        await b.models()
    await b.close()


async def test_server_stopped_mid_stream_keeps_the_partial_reply(
        smollm2: Path, tmp_path: Path) -> None:
    with LlamaCppServer({"smollm2": smollm2}, tmp_path) as server:
        b = OpenAIBackend(server.base_url)
        store = ChatStore(tmp_path / "history.db")
        chat = store.create_chat("smollm2", b.name, "")
        s = ChatSession(store, b, chat, ModelRef("smollm2"),
                        Params(temperature=0.0, max_tokens=400, context_length=1024))
        await s.load()
        streamed, last = "", None
        async with aclosing(s.send("Write a long story about a lighthouse.")) as events:
            async for event in events:
                if isinstance(event, Token):
                    streamed += event.text
                    if len(streamed) > 20 and server.proc and server.proc.poll() is None:
                        server.stop()
                last = event
        assert isinstance(last, Error)
        assert "broke" in last.message or "ended before" in last.message
        row = store.messages(s.chat_id)[-1]
        assert row.content and streamed.startswith(row.content)
        await b.close()


@pytest.mark.parametrize(("mode", "expected"), [
    ("stall", "stopped sending"),
    ("bad_event", "not valid JSON"),
    ("cut", "ended before the reply was finished"),
])
async def test_broken_servers(mode: str, expected: str) -> None:
    with BrokenServer(mode) as broken:
        b = OpenAIBackend(broken.base_url, first_token_timeout=1.0, read_timeout=1.0)
        await b.load(ModelRef("m"))
        events = await _events(b.chat([Message("user", "Hi")], GREEDY))
        assert isinstance(events[-1], Error) and expected in events[-1].message
        if mode != "stall":
            assert "".join(e.text for e in events if isinstance(e, Token)) == "HelHel"
        await b.close()


async def test_doctor_names_the_server_and_its_fim(home: Path, server: LlamaCppServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from app.session.context import AppContext
    from app.session.doctor import check_openai

    _configure(home, server)
    config = home / "config" / "config.toml"
    config.write_text(config.read_text() + f'code_model = "{QWEN}"\n', encoding="utf-8")
    monkeypatch.setenv("TRAMONTANE_OPENAI_API_KEY", KEY)
    found = await check_openai(AppContext())
    assert found["answers"] and found["remote"] is False
    assert found["fim"] == "prompt" and found["code_model"] == QWEN
    assert KEY not in json.dumps(found)


async def test_app_chats_through_the_server_and_picks_its_models(
        home: Path, server: LlamaCppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app on `--backend openai`: F4 lists the server's /v1/models, and a reply streams."""
    from app.session.front import Tramontane
    from app.ui.tui.app import TramontaneApp
    from app.ui.tui.dialogs import ModelPicker
    from tests.helpers import send, settle

    _configure(home, server)
    monkeypatch.setenv("TRAMONTANE_OPENAI_API_KEY", KEY)
    app = TramontaneApp(Tramontane.open("openai"))
    async with app.run_test() as pilot:
        await pilot.press("f4")
        await settle(pilot, lambda: isinstance(app.screen, ModelPicker))
        rows = app.screen.rows  # type: ignore[attr-defined]
        assert [r.split()[0] for r in rows] == ["smollm2", QWEN]
        app.screen.query_one("#models").highlighted = 0
        await pilot.press("enter")
        await settle(pilot, lambda: app.chat.session is not None)
        assert app.chat.session is not None and app.chat.session.model.name == "smollm2"
        await send(pilot, "Name a colour.")
        store = app.library.store
        await settle(pilot, lambda: any(
            m.role == "assistant" and m.state == "complete" and m.content
            for m in store.messages(app.chat.session.chat_id)), timeout=60)  # type: ignore[union-attr]
        assert store.chat(app.chat.session.chat_id).backend == "openai"
