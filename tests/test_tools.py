"""Tool calls: the offered tools, the grammar's forms, reading a reply's calls, the requests'
shapes in `serve`, and the chat template's own tool format (the real model: test_serve.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from app.engine import tools
from app.engine.backend import Done, Event, Message, Params, Stats, Token
from app.engine.prompts import chat as chat_prompts
from app.models.gguf_file import read_header
from app.ui.serve import calls
from app.ui.serve.bodies import BadRequest, messages

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_a_reply_call_is_read_in_every_form_the_grammar_allows() -> None:
    for text in ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n'
                 "</tool_call>",
                 '```json\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n```',
                 '{"name": "get_weather", "arguments": "{\\"city\\": \\"Lyon\\"}"}'):
        (call,) = tools.parse(text) or []
        assert (call.name, call.arguments) == ("get_weather", {"city": "Lyon"})
        assert json.loads(call.openai()["function"]["arguments"]) == {"city": "Lyon"}
    for text in ("It is sunny in Lyon.", "<tool_call>\n{\"name\": ", '{"city": "Lyon"}',
                 "```python\nprint(1)\n```"):
        assert tools.parse(text) is None
    assert [tools.opening(t) for t in ("", "<tool", "```js", "```json", "{", "Sure")] == \
        ["maybe", "maybe", "maybe", "call", "call", "text"]


def test_the_grammar_offers_the_tools_and_leaves_text_free() -> None:
    offered = tools.from_json(json.dumps([WEATHER]))
    schema = tools.call_schema(offered)
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"]["additionalProperties"] is False
    assert tools.check(offered) == ""
    assert "Two tools" in tools.check([*offered, *offered])
    assert "letters" in tools.check([tools.Tool("no spaces allowed")])


def test_serve_reads_tools_tool_choice_and_tool_messages() -> None:
    offered, choice = calls.offered({"tools": [WEATHER]})
    assert choice == "auto" and json.loads(offered)[0]["function"]["name"] == "get_weather"
    assert calls.offered({"tools": [WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}})[1] == "get_weather"
    assert calls.offered({}) == ("", "none")
    for body, param in (({"tools": [WEATHER], "tool_choice": "get_time"}, "tool_choice"),
                        ({"tools": [{"type": "function"}]}, "tools"),
                        ({"tool_choice": "required"}, "tool_choice"),
                        ({"tools": "all"}, "tools")):
        with pytest.raises(BadRequest) as refused:
            calls.offered(body)
        assert refused.value.param == param
    said = messages({"messages": [
        {"role": "user", "content": "Weather in Lyon?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 14}'}]})
    assert said[1].tool_calls[0].arguments == {"city": "Lyon"} and said[1].content == ""
    assert said[2].role == "tool" and said[2].tool_call_id == "call_1"
    with pytest.raises(BadRequest) as bad:
        messages({"messages": [{"role": "assistant", "tool_calls": [{"function": {
            "name": "x", "arguments": "{not json"}}]}]})
    assert bad.value.param == "messages[0].tool_calls[0]"


async def _reply(text: str) -> AsyncGenerator[Event, None]:
    for i in range(0, len(text), 3):
        yield Token(text[i:i + 3])
    yield Done(Stats())


async def test_a_call_is_held_and_text_streams() -> None:
    got = [e async for e in calls.split(_reply(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'))]
    assert isinstance(got[0], calls.Called) and isinstance(got[1], Done) and len(got) == 2
    text = [e async for e in calls.split(_reply("Sunny and mild today."))]
    assert "".join(e.text for e in text if isinstance(e, Token)) == "Sunny and mild today."
    assert len(text) > 3  # streamed, not held to the end


async def test_a_call_repeated_after_its_result_is_asked_again_in_text() -> None:
    asked: list[str] = []

    def make(params: Params) -> AsyncGenerator[Event, None]:
        asked.append(params.tool_choice)
        return _reply('{"name": "get_weather", "arguments": {"city": "Lyon"}}'
                      if params.tool_choice != "none" else "It is 14 °C in Lyon.")

    history = [Message("user", "Weather?"),
               Message("assistant", "", (tools.ToolCall("get_weather", {"city": "Lyon"}, "c1"),)),
               Message("tool", '{"temp_c": 14}', tool_call_id="c1")]
    got = [e async for e in calls.reply(make, history, Params(tool_choice="auto"))]
    assert asked == ["auto", "none"]
    assert "".join(e.text for e in got if isinstance(e, Token)) == "It is 14 °C in Lyon."


@pytest.mark.qwen
def test_qwen_template_gets_the_tools_calls_and_results(qwen: Path) -> None:
    """Qwen2.5's own template (from the GGUF) places the tools, a call and its result."""
    head = read_header(qwen)
    meta = {"tokenizer.chat_template": head.chat_template, "eos_token_text": "<|im_end|>"}
    turns = [Message("user", "Weather in Lyon?"),
             Message("assistant", "", (tools.ToolCall("get_weather", {"city": "Lyon"}, "c1"),)),
             Message("tool", '{"temp_c": 14}', tool_call_id="c1")]
    text = chat_prompts.build("auto", turns, meta, tools.from_json(json.dumps([WEATHER]))).text
    assert "<tools>" in text and '"name": "get_weather"' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}' in text
    assert "<tool_response>\n{\"temp_c\": 14}\n</tool_response>" in text


def test_a_template_without_tools_gets_them_in_the_system_prompt() -> None:
    meta = {"tokenizer.chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                                       "{% endfor %}<assistant>"}
    turns = [Message("user", "Weather?"),
             Message("assistant", "", (tools.ToolCall("get_weather", {"city": "Lyon"}, "c1"),)),
             Message("tool", "14 C", tool_call_id="c1")]
    text = chat_prompts.build("auto", turns, meta, tools.from_json(json.dumps([WEATHER]))).text
    assert text.startswith("<system>You are a helpful assistant. When one of the functions")
    assert "\n\n# Tools" in text and "<tools>" in text
    assert '"arguments": {"city": "Lyon"}' in text and "<tool_response>\n14 C" in text


async def test_a_call_counts_only_when_its_arguments_were_said() -> None:
    """A held call stands when one of its values is in the conversation; a call made of
    nothing said (the weather in New York, asked about spiders) gives way to the reply asked
    again without tools. Text that is not a call streams untouched."""
    from app.engine.llama import call_check

    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    asked = [Message("user", "Is it raining in Oslo?")]
    kept = [e async for e in call_check.confirmed(_reply(call), asked, lambda: _reply("x"))]
    assert "".join(e.text for e in kept if isinstance(e, Token)) == call
    assert isinstance(kept[-1], Done)
    spider = [Message("user", "How many legs does a spider have?")]
    again = [e async for e in call_check.confirmed(_reply(call), spider,
                                                    lambda: _reply("Eight legs."))]
    assert "".join(e.text for e in again if isinstance(e, Token)) == "Eight legs."
    text = [e async for e in call_check.confirmed(_reply("Eight."), spider, lambda: _reply("x"))]
    assert "".join(e.text for e in text if isinstance(e, Token)) == "Eight."


def test_what_grounds_a_call() -> None:
    from app.engine.llama.call_check import grounded

    said = [Message("user", "How much is 20 euros in dollars?")]
    assert grounded(tools.ToolCall("convert", {"amount": 20, "from": "EUR", "to": "USD"}), said)
    assert not grounded(tools.ToolCall("convert", {"amount": 21, "to": "USD"}), said)
    assert grounded(tools.ToolCall("git_status", {}), said)  # nothing to make up
    assert not grounded(tools.ToolCall("send_email", {"to": "the boss"}),
                        [Message("user", "Who wrote the play?")])  # "the" says nothing
    assert grounded(tools.ToolCall("read_file", {"path": "src/app.py"}),
                    [Message("user", "list src"), Message("tool", "src/app.py\nsrc/b.py")])


@pytest.mark.qwen
async def test_qwen_answers_in_text_when_no_offered_tool_fits(qwen: Path) -> None:
    """The issue's no-call case on the real model: offered a timer and the weather, asked how
    many legs a spider has, Qwen 1.5B calls a tool; it then says no to its own call and
    answers; asked for the weather, it calls and confirms."""
    from contextlib import aclosing

    from app.engine.backend import ModelRef
    from app.engine.llama.backend import LlamaBackend

    timer = {"type": "function", "function": {
        "name": "set_timer", "description": "Start a countdown timer",
        "parameters": {"type": "object", "properties": {"minutes": {"type": "integer"}},
                       "required": ["minutes"]}}}
    backend = LlamaBackend()
    params = Params(max_tokens=80, temperature=0.0, tools=json.dumps([WEATHER, timer]),
                    tool_choice="auto", context_length=2048)
    await backend.load(ModelRef("qwen", path=qwen, chat_format="auto"), params)

    async def reply(question: str) -> str:
        async with aclosing(backend.chat([Message("user", question)], params)) as stream:
            return "".join([e.text async for e in stream if isinstance(e, Token)])
    try:
        legs = await reply("How many legs does a spider have?")
        weather = await reply("What is the weather in Lyon right now?")
    finally:
        await backend.unload()
    assert tools.parse(legs) is None and ("8" in legs or "eight" in legs.lower()), legs
    (call,) = tools.parse(weather) or []
    assert call.name == "get_weather" and call.arguments == {"city": "Lyon"}
