"""Who may use the local server, and what model text may do (issue 24's two high defects):
web pages and rebound DNS names are refused before any work, bodies must be JSON, control
characters never leave a model's text, and `complete` trusts only a server that proves it is
the user's own. The routes run in-process (Starlette's test client) on a scripted backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.engine.backend import Token, printable
from app.engine.prompts.fim_end import postprocess
from app.session.context import AppContext
from app.session.serving import ServeSession, ServeSettings, running_server, write_token
from app.ui.serve.routes import Server
from tests.fixtures.scripted import ScriptedBackend

HOSTILE = "x = 1\x1b:!touch /tmp/pwned\r\x1b]0;owned\x07\x9b2J"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def client(home: Path, reply: str = "Hello.", **settings: object) -> TestClient:
    ctx = AppContext()
    serve = ServeSession.start(ctx)
    serve.chat_backend = ScriptedBackend(replies=[reply])
    serve.code.backend = ScriptedBackend(replies=[reply])
    options = ServeSettings("127.0.0.1", 8012, "") if not settings else \
        ServeSettings("127.0.0.1", 8012, "", **settings)  # type: ignore[arg-type]
    return TestClient(Server(serve, options, "secret").app(), base_url="http://127.0.0.1:8012")


def test_a_rebound_host_name_is_refused(home: Path) -> None:
    c = client(home)
    evil = c.get("/v1/models", headers={"Host": "evil.example"})
    assert evil.status_code == 403 and "allowed_hosts" in evil.json()["error"]["message"]
    assert c.get("/v1/models", headers={"Host": "localhost:8012"}).status_code == 200
    assert c.get("/v1/models", headers={"Host": "[::1]:8012"}).status_code == 200
    assert client(home, allowed_hosts=("tram.lan",)).get(
        "/v1/models", headers={"Host": "tram.lan:8012"}).status_code == 200


def test_a_web_page_cannot_drive_the_model(home: Path) -> None:
    c = client(home)
    simple = c.post("/v1/chat/completions", content=json.dumps(CHAT),
                    headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert simple.status_code == 403
    preflighted = c.post("/v1/chat/completions", json=CHAT,
                         headers={"Origin": "http://evil.example"})
    assert preflighted.status_code == 403
    assert "access-control-allow-origin" not in preflighted.headers
    plain = c.post("/v1/chat/completions", content=json.dumps(CHAT),
                   headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    assert c.post("/infill", content=b"{}", headers={"Content-Type": "text/plain"}
                  ).status_code == 415
    sandboxed = c.post("/v1/chat/completions", json=CHAT, headers={"Origin": "null"})
    assert sandboxed.status_code == 403
    # loopback pages and the allowed origins may
    local = c.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://localhost:3000"})
    assert local.status_code == 200
    allowed = client(home, allowed_origins=("https://tool.example",)).post(
        "/v1/chat/completions", json=CHAT, headers={"Origin": "https://tool.example"})
    assert allowed.status_code == 200


def test_saved_chats_are_not_written_by_a_web_page(home: Path) -> None:
    c = client(home)
    server = c.app
    c.post("/v1/chat/completions", content=json.dumps(CHAT),
           headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert server is not None
    assert AppContext().store.chats() == []


def test_model_text_loses_its_control_characters(home: Path) -> None:
    assert printable(HOSTILE) == "x = 1:!touch /tmp/pwned]0;owned2J"
    assert Token(HOSTILE).text == printable(HOSTILE)
    assert printable("a\tb\r\nc\n") == "a\tb\nc\n"
    assert "\x1b" not in postprocess(HOSTILE, "def f():\n    ", "\n")
    answer = client(home, reply=HOSTILE).post("/v1/chat/completions", json=CHAT).json()
    content = answer["choices"][0]["message"]["content"]
    assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in content.replace("\n", ""))


class _Impostor(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(self.path + " " + str(self.headers.get("Authorization")))
        body = json.dumps({"status": "ok", "server": "tramontane", "proof": "0" * 64}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_complete_never_trusts_an_impostor(home: Path, impostor: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that answers /health as Tramontane, on a port where the user once ran serve
    (so a token file exists), gets neither the buffer nor the key."""
    monkeypatch.setenv("TRAMONTANE_SERVER", impostor)
    ctx = AppContext()
    write_token(ctx, int(impostor.rsplit(":", 1)[1]))
    assert running_server(ctx) == ""
    assert _Impostor.seen and all(s.startswith("/health?nonce=") and s.endswith(" None")
                                  for s in _Impostor.seen)  # no key, no buffer
    token = ctx.paths.data_dir / f"serve-{impostor.rsplit(':', 1)[1]}.token"
    assert token.stat().st_mode & 0o777 == 0o600


def test_the_health_answer_proves_the_server(home: Path) -> None:
    from app.session.serving import proof

    c = client(home)
    answer = c.get("/health", params={"nonce": "abc"}).json()
    assert answer["proof"] == proof("secret", "abc") and answer["proof"] != proof("other", "abc")
    assert "proof" not in c.get("/health").json()


class _Odd(BaseHTTPRequestHandler):
    """A server of ours (it knows the secret) whose /infill answers in odd shapes."""

    secret = ""
    answer: object = None

    def do_GET(self) -> None:  # noqa: N802
        from urllib.parse import parse_qs, urlsplit

        from app.session.serving import proof

        nonce = parse_qs(urlsplit(self.path).query).get("nonce", [""])[0]
        self._send({"status": "ok", "server": "tramontane", "models": ["m"],
                    "proof": proof(type(self).secret, nonce)})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(type(self).answer)

    def _send(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("answer", ["text", [1, 2], 42, {"error": "busy"},
                                    {"content": "x", "timings": [1]},
                                    {"content": "\x1b]0;owned\x07ok"}])
def test_complete_through_a_server_answering_odd_shapes(home: Path, tmp_path: Path,
                                                        answer: object) -> None:
    """Medium 6: each shape is one line (or a clean answer), never a traceback."""
    import subprocess

    from tests.helpers import BIN

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        _Odd.secret = write_token(AppContext(), port)
        _Odd.answer = answer
        source = tmp_path / "a.py"
        source.write_text("x = \n")
        import os

        out = subprocess.run([str(BIN / "tramontane"), "complete", str(source), "--line", "1",
                              "--col", "5"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "TRAMONTANE_SERVER": f"http://127.0.0.1:{port}"})
    finally:
        httpd.shutdown()
    assert "Traceback" not in out.stderr
    if isinstance(answer, dict) and "content" in answer:
        assert out.returncode == 0 and "\x1b" not in out.stdout and out.stdout.endswith(("x", "ok"))
    else:
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
