"""`tramontane serve` as editors and tools use it: requests built as llama.vim and llama.vscode
build them (curl and axios-shaped JSON), the official `openai` package against /v1, a client
that disconnects, two clients at once, the key, bad bodies, and the Ollama backend behind
/infill. The server is the real command, with the real Qwen starter for code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.ollama_server import OllamaFixture
from tests.fixtures.openai_server import free_port
from tests.helpers import BIN, link_starter, tramontane, write_machine_speed

KEY = "serve-test-key-42"
QWEN = "qwen2.5-coder-1.5b-instruct"
CHAT = "smollm2-135m-instruct"
PREFIX_LINES = ["import math", "", "", "def area(r):", "    \"\"\"The area of a circle.\"\"\""]
MIDDLE = "    return "
SUFFIX_LINES = ["", "", "print(area(2.0))"]


@dataclass
class Served:
    url: str
    home: Path
    proc: subprocess.Popen[str]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}

    def health(self) -> dict[str, object]:
        return httpx.get(f"{self.url}/health", timeout=5).json()  # type: ignore[no-any-return]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "TRAMONTANE_HOME": str(home), "TRAMONTANE_PLUGINS": "",
            "TRAMONTANE_SERVER": "off", "OLLAMA_MODELS": str(home / "ollama-store"),
            "HF_HOME": str(home / "hf")}


def start(home: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "tramontane"), "serve", "--port", str(port), *args],
                            env=env or _env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", home, proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the "serving on" line comes once the code model is warm
    assert "Tramontane is serving on" in line, line + proc.stdout.read()
    return served


def stop(served: Served) -> None:
    served.proc.send_signal(signal.SIGINT)
    served.proc.wait(20)


@pytest.fixture(scope="module")
def served(qwen_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("serve-home")
    link_starter(qwen_file, home / "data" / "models")
    write_machine_speed(home / "data")
    s = start(home, "--api-key", KEY, "-m", CHAT, "--code-model", QWEN)
    yield s
    stop(s)


def vim_request(middle: str = MIDDLE) -> dict[str, object]:
    """The body llama.vim's s:fim_send builds (autoload/llama.vim): the lines before the
    cursor's line joined with newlines, the line up to the cursor as `prompt`, the rest."""
    return {
        "id_slot": 0,
        "input_prefix": "\n".join(PREFIX_LINES) + "\n",
        "input_suffix": "\n" + "\n".join(SUFFIX_LINES) + "\n",
        "input_extra": [{"text": "PI = 3.14159\n", "time": 1732000000, "filename": "consts.py"}],
        "prompt": middle,
        "n_predict": 128,
        "stop": [],
        "n_indent": 4,
        "top_k": 40,
        "top_p": 0.90,
        "samplers": ["top_k", "top_p", "infill"],
        "stream": False,
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 3000,
        "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms",
                            "timings/prompt_per_token_ms", "timings/prompt_per_second",
                            "timings/predicted_n", "timings/predicted_ms",
                            "timings/predicted_per_token_ms", "timings/predicted_per_second",
                            "truncated", "tokens_cached"],
    }


def curl(url: str, body: dict[str, object], key: str = KEY) -> dict[str, object]:
    """As llama.vim sends it: curl, the JSON on stdin, a Bearer header."""
    done = subprocess.run(
        ["curl", "--silent", "--no-buffer", "--request", "POST", "--url", url,
         "--header", "Content-Type: application/json", "--header", f"Authorization: Bearer {key}",
         "--data", "@-"], input=json.dumps(body), capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_llama_vim_request(served: Served) -> None:
    answer = curl(f"{served.url}/infill", vim_request())
    assert set(answer) <= set(vim_request()["response_fields"])  # type: ignore[arg-type]
    assert {"content", "timings/prompt_n", "timings/predicted_n", "tokens_cached"} <= set(answer)
    content = str(answer["content"])
    assert "r ** 2" in content or "r * r" in content
    # the input_extra chunk (consts.py) reaches the prompt: it is longer by about its size
    h = served.headers()
    plain = vim_request("    return 2") | {"input_extra": [], "n_predict": 1}
    del plain["response_fields"]
    without = httpx.post(f"{served.url}/infill", json=plain, headers=h, timeout=60).json()
    with_extra = httpx.post(f"{served.url}/infill", json=plain | {
        "prompt": "    return 3", "input_extra": vim_request()["input_extra"]}, headers=h,
        timeout=60).json()
    assert with_extra["tokens_evaluated"] > without["tokens_evaluated"] + 3
    # the warm-up llama.vim sends for its ring chunks: n_predict 0, nothing generated
    warm = curl(f"{served.url}/infill", vim_request() | {"n_predict": 0})
    assert warm["content"] == ""


def test_llama_vscode_request(served: Served) -> None:
    """llama.vscode's createRequestPayload (axios JSON): its defaultRequestParams, n_indent,
    lora, n_cmpl; it reads `content` and `timings`."""
    body = {"input_prefix": "\n".join(PREFIX_LINES) + "\n", "input_suffix": "\n",
            "input_extra": [], "prompt": MIDDLE, "n_predict": 64, "top_k": 40, "top_p": 0.99,
            "stream": False, "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True,
            "n_indent": 4, "t_max_prompt_ms": 500, "t_max_predict_ms": 2500, "n_cmpl": 1,
            "lora": [{"id": 0, "scale": 0.5}], "model": QWEN}
    r = httpx.post(f"{served.url}/infill", json=body, headers=served.headers(), timeout=120)
    assert r.status_code == 200
    data = r.json()
    assert data["content"].strip() and data["timings"]["predicted_n"] > 0
    assert {"prompt_ms", "predicted_ms", "predicted_per_second"} <= set(data["timings"])


def test_openai_package_chat_completions_and_fim(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY)
    assert [m.id for m in client.models.list().data] == [CHAT, QWEN]
    reply = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0)
    assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
        temperature=0, stream=True) if c.choices]
    assert "".join(pieces).strip()
    fim = client.completions.create(model=QWEN, prompt="def add(a, b):\n    return ",
                                    suffix="\n\nprint(add(1, 2))\n", max_tokens=8,
                                    temperature=0)
    assert fim.choices[0].text.strip().startswith("a + b")
    history = served.home / "data" / "history.db"
    assert not history.exists() or "Name a colour" not in history.read_bytes().decode(
        errors="ignore")  # API chats stay out of the history by default


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120}}}


def test_openai_package_gets_json_it_asked_for(served: Served) -> None:
    """`response_format` through the official client: a schema, JSON mode, streamed and not;
    the reply is the JSON asked for (a grammar in the worker), or an error, never prose."""
    import jsonschema

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY)
    ask = [{"role": "user", "content": "Invent a person."}]
    shaped = client.chat.completions.create(
        model=CHAT, messages=ask, max_tokens=60, temperature=0,  # type: ignore[arg-type]
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON}})
    jsonschema.validate(json.loads(shaped.choices[0].message.content or ""), PERSON)
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=CHAT, messages=ask, max_tokens=150, temperature=0, seed=3, stream=True,  # type: ignore[arg-type]
        response_format={"type": "json_object"}) if c.choices]
    assert isinstance(json.loads("".join(pieces)), dict)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=CHAT, messages=ask, max_tokens=8,  # type: ignore[arg-type]
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": {"type": 5}}})
    assert bad.value.body["param"] == "response_format.json_schema.schema"  # type: ignore[index]


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown",
        "parameters": {"type": "object", "required": ["minutes"],
                       "properties": {"minutes": {"type": "integer", "minimum": 1}}}}}]


def test_openai_package_tool_calls(served: Served) -> None:
    """`tools` and `tool_choice` through the official client, streamed and not: a call is
    always an offered tool with arguments valid to its schema (SmolLM2 135M, held to it by
    the grammar), a tool's result goes back as a `tool` message, and `none` is text."""
    import jsonschema

    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY)
    ask = [{"role": "user", "content": "What is the weather in Lyon?"}]
    forced = client.chat.completions.create(
        model=CHAT, messages=ask, tools=TOOLS, tool_choice="required",  # type: ignore[arg-type]
        max_tokens=60, temperature=0)
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    schema = next(t["function"]["parameters"] for t in TOOLS  # type: ignore[index]
                  if t["function"]["name"] == call.function.name)  # type: ignore[index, union-attr]
    jsonschema.validate(json.loads(call.function.arguments), schema)  # type: ignore[union-attr]
    named = client.chat.completions.create(
        model=CHAT, messages=ask, tools=TOOLS, max_tokens=60, temperature=0,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "set_timer"}})
    assert named.choices[0].message.tool_calls[0].function.name == "set_timer"  # type: ignore[index, union-attr]
    streamed = list(client.chat.completions.create(
        model=CHAT, messages=ask, tools=TOOLS, tool_choice="required", stream=True,  # type: ignore[arg-type]
        max_tokens=60, temperature=0))
    deltas = [c.choices[0].delta.tool_calls for c in streamed
              if c.choices and c.choices[0].delta.tool_calls]
    assert deltas and deltas[0][0].function.name in ("get_weather", "set_timer")  # type: ignore[union-attr]
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    answered = client.chat.completions.create(
        model=CHAT, tools=TOOLS, max_tokens=30, temperature=0,  # type: ignore[arg-type]
        messages=[*ask, choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
                  {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 14}'}])
    assert answered.choices[0].finish_reason in ("stop", "length")  # no call repeated
    assert answered.choices[0].message.content
    text = client.chat.completions.create(
        model=CHAT, messages=ask, tools=TOOLS, tool_choice="none",  # type: ignore[arg-type]
        max_tokens=12, temperature=0)
    assert text.choices[0].message.content and not text.choices[0].message.tool_calls
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=CHAT, messages=ask, tools=TOOLS,  # type: ignore[arg-type]
                                       tool_choice={"type": "function",
                                                    "function": {"name": "fly"}})
    assert bad.value.body["param"] == "tool_choice"  # type: ignore[index]


def test_llama_server_grammar_and_json_schema_fields(served: Served) -> None:
    """llama-server's own fields: `grammar` (GBNF) and `json_schema`, as curl sends them."""
    h = served.headers()
    yes_no = httpx.post(f"{served.url}/v1/chat/completions", headers=h, timeout=60, json={
        "messages": [{"role": "user", "content": "Is the sky green?"}], "max_tokens": 4,
        "grammar": 'root ::= "yes" | "no"'})
    assert yes_no.json()["choices"][0]["message"]["content"] in ("yes", "no")
    cut = httpx.post(f"{served.url}/v1/chat/completions", headers=h, timeout=60, json={
        "messages": [{"role": "user", "content": "Invent a person."}], "max_tokens": 3,
        "json_schema": PERSON})
    assert cut.status_code == 503 and "length limit" in cut.json()["error"]["message"]
    broken = httpx.post(f"{served.url}/v1/chat/completions", headers=h, timeout=60, json={
        "messages": [{"role": "user", "content": "Hi"}], "grammar": "root ::= (("})
    assert broken.status_code == 503 and "grammar" in broken.json()["error"]["message"]


def test_disconnect_frees_the_worker_at_once(served: Served) -> None:
    """A client that goes mid-generation (llama.vim kills curl on each keystroke): the next
    request runs at once, not after the abandoned one's 400 tokens."""
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 400, "stream": True, "temperature": 0}
    with httpx.Client(timeout=60, headers=served.headers()) as client:
        with client.stream("POST", f"{served.url}/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break  # generating now
        gone = time.perf_counter()
        quick = client.post(f"{served.url}/v1/chat/completions", json={
            "model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
            "temperature": 0})
        waited = time.perf_counter() - gone
    assert quick.status_code == 200
    t = quick.json()["timings"]
    own = (t["prompt_ms"] + t["predicted_ms"]) / 1000
    left = 400 / t["predicted_per_second"]  # what the abandoned reply would still take
    # the quick one's own work plus the cancel: a small part of 400 tokens (~3 s for SmolLM2)
    assert waited - own < 0.2 * left, (waited, own, left)


def test_two_clients_at_once(served: Served) -> None:
    results: list[str] = []

    def ask(word: str) -> None:
        client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY)
        r = client.chat.completions.create(model=CHAT, max_tokens=6, temperature=0,
                                           messages=[{"role": "user", "content": word}])
        results.append(r.choices[0].message.content or "")

    threads = [threading.Thread(target=ask, args=(w,)) for w in ("Hello", "Bonjour")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(results)


def test_key_size_and_bad_bodies(served: Served) -> None:
    url = f"{served.url}/v1/chat/completions"
    assert httpx.get(f"{served.url}/health").json()["server"] == "tramontane"  # no key needed
    none = httpx.post(url, json={"messages": []})
    assert none.status_code == 401 and none.json()["error"]["type"] == "authentication_error"
    assert httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    h = served.headers() | {"Content-Type": "application/json"}
    big = httpx.post(f"{served.url}/infill", content=b"{" + b" " * (9 * 2**20) + b"}",
                     headers=h)
    assert big.status_code == 413
    bad = httpx.post(url, content=b"{not json", headers=h)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
    wrong = httpx.post(f"{served.url}/infill", json={"input_prefix": 5}, headers=h)
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "input_prefix"
    roles = httpx.post(url, json={"messages": [{"role": "robot", "content": "x"}]}, headers=h)
    assert roles.json()["error"]["param"] == "messages[0].role"
    temp = httpx.post(url, json={"messages": [{"role": "user", "content": "x"}],
                                 "temperature": "hot"}, headers=h)
    assert temp.status_code == 400 and temp.json()["error"]["param"] == "temperature"
    assert served.health()["status"] == "ok"  # and the server is still there


def test_complete_uses_the_warm_server(served: Served, home: Path, tmp_path: Path) -> None:
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return \n\n\nprint(add(1, 2))\n", encoding="utf-8")
    # the same user's home: the server proves itself with the secret it wrote there
    env = {"TRAMONTANE_SERVER": served.url, "TRAMONTANE_SERVE_API_KEY": KEY,
           "TRAMONTANE_HOME": str(served.home)}
    t0 = time.perf_counter()
    out = tramontane("complete", str(source), "--line", "2", "--col", "12", "--json", env=env)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["server"] == served.url and data["text"].strip().startswith("a + b")
    from tests.test_ollama import JSON_KEYS

    assert set(data) == JSON_KEYS  # the same shape as completing in this process
    assert elapsed < 10  # the figure (<= 1 s) is bench/serve_latency.py's


def test_stop_and_n_predict_are_honoured(served: Served) -> None:
    """`stop` ends a reply (it was parsed and dropped); llama-server's `n_predict` limits a
    chat; `n_predict: 0` is llama.vim's warm-up of an instruction edit: answered at once,
    nothing generated."""
    h = served.headers()
    counted = httpx.post(f"{served.url}/v1/completions", headers=h, timeout=120, json={
        "prompt": "1, 2, 3, 4,", "stop": [","], "max_tokens": 16, "temperature": 0}).json()
    assert "," not in counted["choices"][0]["text"]
    assert counted["choices"][0]["text"].strip() == "5"
    chat = {"messages": [{"role": "user", "content": "Count from 1 to 50."}], "temperature": 0}
    short = httpx.post(f"{served.url}/v1/chat/completions", headers=h, timeout=120,
                       json=chat | {"n_predict": 3}).json()
    assert short["usage"]["completion_tokens"] == 3
    warm = {"id_slot": 0, "messages": [{"role": "system", "content": "You edit text."},
                                       {"role": "user", "content": ""}],
            "samplers": [], "n_predict": 0, "stream": False, "cache_prompt": True,
            "response_fields": [""]}
    warmed = httpx.post(f"{served.url}/v1/chat/completions", headers=h, timeout=120, json=warm)
    assert warmed.status_code == 200 and warmed.json()["usage"]["completion_tokens"] == 0


def test_edit_uses_the_warm_server(served: Served, tmp_path: Path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def mean(values):\n    total = 0\n    for i in range(len(values) - 1):\n"
                      "        total += values[i]\n    return total / len(values)\n")
    env = {"TRAMONTANE_SERVER": served.url, "TRAMONTANE_SERVE_API_KEY": KEY,
           "TRAMONTANE_HOME": str(served.home)}
    out = tramontane("edit", str(source), "--line", "3", "--json", "fix the off-by-one",
                     env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["server"] == served.url and data["lines"] == [1, 5]
    assert "range(len(values) - 1)" not in data["new_text"]


def test_non_loopback_needs_a_key(home: Path) -> None:
    out = tramontane("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 2 and "--api-key" in out.stderr and "Traceback" not in out.stderr


def test_ollama_backend_behind_infill(smollm2: Path, home: Path) -> None:
    """/infill on `--backend ollama`: the request goes to the Ollama server's /api/generate
    (raw, our FIM prompt, as its template has no suffix)."""
    with OllamaFixture({"smollm2:135m": smollm2}) as ollama:
        env = _env(home) | {"OLLAMA_HOST": ollama.host}
        write_machine_speed(home / "data")
        s = start(home, "--backend", "ollama", "-m", "smollm2:135m", "--code-model",
                  "smollm2:135m", env=env)
        try:
            r = httpx.post(f"{s.url}/infill", json=vim_request() | {"n_predict": 8}, timeout=60)
            assert r.status_code == 200, r.text
            assert "content" in r.json()
            assert any(path == "/api/generate" for path, _ in ollama.requests)
        finally:
            stop(s)


def test_infill_client_killed_mid_generation(served: Served) -> None:
    """llama.vim's curl killed while /infill generates: the worker is free for the next one."""
    h = served.headers()
    long = vim_request() | {"n_predict": 400, "t_max_predict_ms": 60000, "input_extra": [],
                            "input_prefix": "# the first 100 primes\nPRIMES = [\n    2,\n    3,\n",
                            "prompt": "    5,",  # about 14 s of numbers to write
                            "input_suffix": "\n]\n\n\nassert len(PRIMES) == 100\n"}
    ran = 1.5  # seconds the long request generates before its client goes
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{served.url}/infill", json=long, headers=h, timeout=ran)
    gone = time.perf_counter()
    quick = httpx.post(f"{served.url}/infill", json=vim_request() | {"n_predict": 1},
                       headers=h, timeout=60)
    waited = time.perf_counter() - gone
    assert quick.status_code == 200
    own = (quick.json()["timings/prompt_ms"] + quick.json()["timings/predicted_ms"]) / 1000
    # the killed request had ~12 s of numbers left: had it run on, the wait would be many
    # times its 1.5 s; stopped, the wait is the quick request's own work and a fraction of that
    assert waited - own < 0.5 * ran, (waited, own)


async def test_app_starts_and_stops_the_server(home: Path) -> None:
    """F9 in the app: the server answers at the address the status line shows; F9 again
    stops it."""
    from app.ui.tui.app import TramontaneApp
    from tests.fixtures.scripted import ScriptedBackend
    from tests.helpers import make_app, settle

    port = free_port()
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[serve]\nport = {port}\n", encoding="utf-8")
    app: TramontaneApp = make_app(ScriptedBackend())
    async with app.run_test() as pilot:
        await pilot.press("f9")
        await settle(pilot, lambda: app.server.running)
        url = f"http://127.0.0.1:{port}"
        assert f"serving {url}" in str(app.query_one("#status").render())
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # until uvicorn has bound the socket
                try:
                    health = (await client.get(f"{url}/health")).json()
                    break
                except httpx.ConnectError:
                    await pilot.pause(0.02)
            assert health["server"] == "tramontane"
        from app.session.context import AppContext
        from app.session.serving import running_server

        os.environ["TRAMONTANE_SERVER"] = url
        try:  # the app's server proves it is the user's own, as `complete` asks
            assert await asyncio.to_thread(running_server, AppContext()) == url
        finally:
            del os.environ["TRAMONTANE_SERVER"]
        await pilot.press("f9")
        await settle(pilot, lambda: not app.server.running)
        assert "serving" not in str(app.query_one("#status").render())
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{url}/health")


async def test_api_chats_saved_only_when_asked(home: Path) -> None:
    from app.engine.backend import Message, Params
    from app.session.context import AppContext
    from app.session.serving import ServeSession
    from tests.fixtures.scripted import ScriptedBackend

    ctx = AppContext()
    serve = ServeSession.start(ctx)
    serve.chat_backend = ScriptedBackend(replies=["Blue."])
    question = [Message("system", "Be brief."), Message("user", "Name a colour.")]
    assert [e async for e in serve.chat(question, Params())]
    assert ctx.store.chats() == []  # the default: nothing kept
    serve.save_chats = True
    assert [e async for e in serve.chat(question, Params(temperature=0.3, max_tokens=9))]
    (chat,) = ctx.store.chats()
    assert chat.title == "Name a colour." and chat.system_prompt == "Be brief."
    assert chat.params["temperature"] == 0.3 and chat.params["max_tokens"] == 9  # the client's
    assert [(m.role, m.content, m.state) for m in ctx.store.messages(chat.id)] == [
        ("user", "Name a colour.", "complete"), ("assistant", "Blue.", "complete")]
    ctx.close()


def test_llama_vim_instruction_edit(served: Served) -> None:
    """llama.vim's `<leader>lli` as it sends it (autoload/llama.vim, inst_build/inst_send): a
    warm-up with the selection and an empty instruction, then the instruction, streamed, with
    min_p and its samplers list; the reply streams back as OpenAI chunks."""
    rule = "-" * 40
    system = ("You are a text-editing assistant. Respond ONLY with the result of applying "
              "INSTRUCTION to SELECTION given the CONTEXT. Maintain the existing text "
              "indentation. Do not add extra code blocks. Respond only with the modified block."
              f"\n\n--- CONTEXT     {rule}\n\n--- PREFIX      {rule}\nimport math\n"
              f"--- SELECTION   {rule}\ndef area(r):\n    return 3.14 * r\n"
              f"--- SUFFIX      {rule}\n\n")
    messages = [{"role": "system", "content": system}]
    warm = httpx.post(f"{served.url}/v1/chat/completions", headers=served.headers(), json={
        "id_slot": 0, "messages": [*messages, {"role": "user", "content": ""}],
        "samplers": [], "n_predict": 0, "stream": False, "cache_prompt": True,
        "response_fields": [""]}, timeout=120)
    assert warm.status_code == 200
    body = {"id_slot": 0, "messages": [*messages, {"role": "user", "content":
            "INSTRUCTION: use math.pi and square r"}], "min_p": 0.1, "temperature": 0.1,
            "samplers": ["min_p", "temperature"], "stream": True, "cache_prompt": True,
            "n_predict": 64}
    text = ""
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body,
                      headers=served.headers() | {"Content-Type": "application/json"},
                      timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text += (choice.get("delta") or {}).get("content") or ""
    assert text.strip()  # the reply streamed as chunks (what it says is the model's business)


def test_edit_on_an_ollama_server(smollm2: Path, home: Path, tmp_path: Path) -> None:
    """`tramontane edit --backend ollama`: the edit prompt goes to Ollama's chat API."""
    source = tmp_path / "half.py"
    source.write_text("def half(x):\n    return x / 3\n")
    with OllamaFixture({"smollm2:135m": smollm2}) as ollama:
        out = tramontane("edit", str(source), "--backend", "ollama", "-m", "smollm2:135m",
                         "--json", "divide by 2", env={"OLLAMA_HOST": ollama.host}, timeout=120)
    assert out.returncode in (0, 1), out.stderr  # a 135M model may answer with prose
    data = json.loads(out.stdout)
    assert data["lines"] == [1, 2] and "answer" in data
    assert any(path == "/api/chat" for path, _ in ollama.requests)
    assert source.read_text() == "def half(x):\n    return x / 3\n"  # no --apply: unchanged


def test_a_space_typed_before_the_cursor_is_not_doubled(served: Served) -> None:
    """llama.vim after `return fibonacci(n - 1) + ` (a space, then a pause): the completion
    starts where the typed text ends, and is the one it gives without the space."""
    def body(middle: str) -> dict[str, object]:
        return vim_request(middle) | {
            "input_prefix": "def fibonacci(n):\n    if n < 2:\n        return n\n",
            "input_suffix": "\n\n\nprint(fibonacci(10))\n", "input_extra": [],
            "n_predict": 12, "t_max_predict_ms": 0}

    h = served.headers()
    spaced = httpx.post(f"{served.url}/infill", headers=h, timeout=60,
                        json=body("    return fibonacci(n - 1) + ")).json()["content"]
    tight = httpx.post(f"{served.url}/infill", headers=h, timeout=60,
                       json=body("    return fibonacci(n - 1) +")).json()["content"]
    assert spaced.startswith("fibonacci(n - 2)"), spaced
    assert tight == " " + spaced
