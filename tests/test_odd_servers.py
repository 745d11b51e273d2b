"""The probe's medium defects, each now one clear line or a bounded answer: an OpenAI server
answering in shapes that are not OpenAI's, a stream that ignores max_tokens, the /infill cache
across different requests, dense text in a chat's budget, a flood of API messages, and a
stale partial starter."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import aclosing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.engine.backend import Done, Error, Event, Message, ModelRef, Params, Token
from app.engine.openai.backend import OpenAIBackend
from app.errors import BackendError
from tests.helpers import send_json, start_sse

SHAPES = {  # what /v1/chat/completions streams, per case (after the first line of each)
    "choices a dict": [{"choices": {"index": 0}}],
    "delta a string": [{"choices": [{"index": 0, "delta": "hi", "finish_reason": None}]}],
    "content a number": [{"choices": [{"index": 0, "delta": {"content": 5},
                                       "finish_reason": None}]}],
}


class OddServer:
    def __init__(self) -> None:
        self.case = ""
        odd = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                send_json(self, {"html": b"<html>nope</html>", "ints": b'{"data": [1, 2]}',
                                 "null": b'{"data": null}'}.get(odd.case,
                                                                b'{"data": [{"id": "m"}]}'))

            def do_POST(self) -> None:
                if odd.case == "echo key":  # an error that quotes the request's key
                    send_json(self, {"error": {"message": "key rejected: "
                                               + self.headers.get("Authorization", "")}}, 400)
                    return
                start_sse(self)
                if odd.case == "endless":
                    piece = {"choices": [{"index": 0, "delta": {"content": "la "},
                                          "finish_reason": None}]}
                    try:
                        for _ in range(5000):  # far past max_tokens, and never finished
                            self.wfile.write(f"data: {json.dumps(piece)}\n\n".encode())
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client stopped reading: what this test wants
                    return
                for chunk in SHAPES[odd.case]:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def odd() -> Iterator[OddServer]:
    server = OddServer()
    yield server
    server.httpd.shutdown()


async def _reply(backend: OpenAIBackend, params: Params) -> list[Event]:
    async with aclosing(backend.chat([Message("user", "hi")], params)) as stream:
        return [e async for e in stream]


@pytest.mark.parametrize("case", sorted(SHAPES))
async def test_a_reply_in_no_openai_shape_is_one_line(odd: OddServer, case: str) -> None:
    odd.case = case
    backend = OpenAIBackend(odd.url, "k")
    await backend.load(ModelRef("m", source="openai"))
    events = await _reply(backend, Params(max_tokens=20))
    await backend.close()
    assert isinstance(events[-1], Error) and "not OpenAI's" in events[-1].message


@pytest.mark.parametrize("case", ["html", "ints", "null"])
async def test_a_model_list_in_no_openai_shape_is_one_line(odd: OddServer, case: str) -> None:
    odd.case = case
    backend = OpenAIBackend(odd.url, "k")
    with pytest.raises(BackendError) as refused:
        await backend.models()
    await backend.close()
    assert "\n" not in str(refused.value) and odd.url.split("/v1")[0].split("//")[1] in \
        str(refused.value)


async def test_a_key_the_server_echoes_is_never_shown(odd: OddServer) -> None:
    odd.case = "echo key"
    backend = OpenAIBackend(odd.url, "sk-secret-1234")
    await backend.load(ModelRef("m", source="openai"))
    events = await _reply(backend, Params(max_tokens=20))
    await backend.close()
    assert isinstance(events[-1], Error) and "key rejected" in events[-1].message
    assert "sk-secret-1234" not in events[-1].message and "[api key]" in events[-1].message


async def test_a_stream_that_ignores_max_tokens_is_cut_on_our_side(odd: OddServer) -> None:
    odd.case = "endless"
    backend = OpenAIBackend(odd.url, "k")
    await backend.load(ModelRef("m", source="openai"))
    events = await _reply(backend, Params(max_tokens=50))
    await backend.close()
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) <= 60 and isinstance(events[-1], Done)
    assert events[-1].stats.stop_reason == "length"


def test_dense_text_is_counted_as_dense() -> None:
    from app.session.chat import token_estimate

    assert token_estimate("漢字" * 4500) >= 9000  # a character is a token or more
    assert token_estimate("plain ascii " * 100) < 500


def test_a_flood_of_messages_is_refused_before_anything_is_saved() -> None:
    from app.ui.serve.bodies import MAX_MESSAGES, BadRequest, messages

    with pytest.raises(BadRequest) as refused:
        messages({"messages": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)})
    assert refused.value.param == "messages"


def test_a_stale_partial_starter_is_cleaned_up(tmp_path: Path) -> None:
    from app.models.starters import assemble_file

    chunk = tmp_path / "part1"
    chunk.write_bytes(b"GGUF" + b"\0" * 100)
    target = tmp_path / "models" / "model.gguf"
    target.parent.mkdir()
    stale = target.parent / ".model.gguf.abc123.partial"
    stale.write_bytes(b"x" * 1000)  # a first run killed midway
    assemble_file([chunk], target, "", "the test model")
    assert target.read_bytes() == chunk.read_bytes() and not stale.exists()


async def test_the_infill_cache_answers_only_the_same_request(home: Path) -> None:
    from app.engine.backend import ContextChunk
    from app.session.complete import CompletionSession
    from tests.fixtures.scripted import ScriptedBackend

    backend = ScriptedBackend()
    backend.fim_replies = ["x + 1"]
    session = CompletionSession(backend, ModelRef("m", fim_format="qwen"), Params(), None,
                                (0, 0))
    ask = Params(max_tokens=8)
    first = await session.complete("y = ", "\n", "a.py", ask)
    again = await session.complete("y = ", "\n", "a.py", ask)
    other_limit = await session.complete("y = ", "\n", "a.py", Params(max_tokens=30))
    other_file = await session.complete("y = ", "\n", "b.py", ask)
    other_chunks = await session.complete("y = ", "\n", "a.py", ask,
                                          [ContextChunk("c.py", "Z = 1")])
    assert (first.source, again.source) == ("model", "cache")
    assert {other_limit.source, other_file.source, other_chunks.source} == {"model"}
