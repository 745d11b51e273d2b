"""Prompt formats against ground truth: mistral-common for Mistral, SmolLM2's own template."""

import contextlib
import json
import re
import tempfile
from pathlib import Path

import mistral_common
import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from app.engine import tools
from app.engine.backend import Message
from app.engine.llama.stops import StopScanner
from app.engine.prompts import chat
from app.models.catalog import CHAT_FORMATS
from app.models.gguf_file import read_header

CONVERSATIONS = [
    [Message("user", "Hi")],
    [Message("user", "Hi there"), Message("assistant", "Hello!"), Message("user", "A river?")],
    [Message("system", "Be brief."), Message("user", "Name a river.")],
    [Message("system", "Answer in French."), Message("user", "One"), Message("assistant", "Un"),
     Message("user", "Two\nlines")],
]


def _tokenizer(chat_format: str) -> MistralTokenizer:
    """mistral-common's tokenizer for each of our Mistral formats. The v7 Tekken tokenizer
    (Mistral Small 2501) is the shipped Tekken vocabulary with its version set to v7."""
    if chat_format == "mistral-v1":
        return MistralTokenizer.v1()
    if chat_format == "mistral-v3":
        return MistralTokenizer.v3()
    if chat_format == "mistral-v3-tekken":
        return MistralTokenizer.v3(is_tekken=True)
    data = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    tekken = json.loads(data.read_text(encoding="utf-8"))
    tekken["config"]["version"] = "v7"
    path = Path(tempfile.mkdtemp()) / "tekken.json"
    path.write_text(json.dumps(tekken), encoding="utf-8")
    return MistralTokenizer.from_file(path)


def _request(messages: list[Message],
             offered: list[tools.Tool] | None = None) -> ChatCompletionRequest:  # type: ignore[type-arg]
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    out: list[object] = []
    for m in messages:
        if m.role == "tool":
            out.append(ToolMessage(content=m.content, tool_call_id=m.tool_call_id))
        elif m.tool_calls:
            out.append(AssistantMessage(content=None, tool_calls=[ToolCall(
                id=c.id, function=FunctionCall(name=c.name, arguments=json.dumps(c.arguments)))
                for c in m.tool_calls]))
        else:
            out.append(kinds[m.role](content=m.content))
    listed = [Tool(function=Function(name=t.name, description=t.description,
                                     parameters=t.parameters)) for t in offered or []]
    return ChatCompletionRequest(messages=out, tools=listed or None)  # type: ignore[arg-type]


def _mistral_common(messages: list[Message], chat_format: str = "mistral-v3",
                    offered: list[tools.Tool] | None = None) -> str:
    tok = _tokenizer(chat_format)
    tokens = tok.encode_chat_completion(_request(messages, offered)).tokens
    pieces = str(tok.decode(tokens, special_token_policy=SpecialTokenPolicy.KEEP))
    return pieces.replace("▁", " ").replace("<0x0A>", "\n")


@pytest.mark.parametrize("chat_format", chat.MISTRAL_FORMATS)
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_mistral_formats_match_mistral_common(messages: list[Message], chat_format: str) -> None:
    assert chat.mistral(messages, chat_format).text == _mistral_common(messages, chat_format)


@pytest.mark.parametrize("chat_format", chat.MISTRAL_FORMATS)
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_mistral_tokens_match_mistral_common(messages: list[Message], chat_format: str) -> None:
    """Token for token: split our text at control tokens and encode each piece as mistral does."""
    assert _tokens(messages, chat_format) == \
        _tokenizer(chat_format).encode_chat_completion(_request(messages)).tokens


WEATHER = tools.Tool("get_weather", "Weather now", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CALLED = tools.ToolCall("get_weather", {"city": "Lyon"}, "abcdefghi")
TOOL_CONVERSATIONS = [
    [Message("system", "Be brief."), Message("user", "Weather in Lyon?")],
    [Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Lyon?"),
     Message("assistant", "", (CALLED,)), Message("tool", "sunny, 14 C", tool_call_id=CALLED.id),
     Message("assistant", "Sunny."), Message("user", "And Oslo?")],
    [Message("user", "Weather in Lyon?"), Message("assistant", "", (CALLED,)),
     Message("tool", '{"temp_c": 14}', tool_call_id=CALLED.id)],
]


@pytest.mark.parametrize("chat_format", chat.MISTRAL_TOOL_FORMATS)
@pytest.mark.parametrize("messages", TOOL_CONVERSATIONS)
def test_mistral_tool_calls_match_mistral_common(messages: list[Message],
                                                 chat_format: str) -> None:
    """[AVAILABLE_TOOLS], [TOOL_CALLS] and [TOOL_RESULTS], text and tokens, as mistral-common
    (given the same messages: with tools, ours carry the policy of when to call)."""
    text = chat.build(chat_format, messages, {}, [WEATHER]).text
    messages = chat.with_tool_policy(messages)
    assert text == _mistral_common(messages, chat_format, [WEATHER])
    expected = _tokenizer(chat_format).encode_chat_completion(
        _request(messages, [WEATHER])).tokens
    assert _tokens(messages, chat_format, [WEATHER]) == expected


def _tokens(messages: list[Message], chat_format: str,
            offered: list[tools.Tool] | None = None) -> list[int]:
    """Our text split at control tokens, each piece encoded as mistral-common does."""
    tok = _tokenizer(chat_format)
    raw = tok.instruct_tokenizer.tokenizer
    control = {"<s>": raw.bos_id, "</s>": raw.eos_id}
    for name in ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[AVAILABLE_TOOLS]",
                 "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"):
        with contextlib.suppress(Exception):  # v1 writes [INST] as text (unknown: id 0)
            if (found := raw.get_special_token(name)) > 0:
                control[name] = found
    text, ours = chat.mistral(messages, chat_format, offered or ()).text, []
    pattern = "(" + "|".join(re.escape(c) for c in control) + ")"
    for part in re.split(pattern, text):
        if part in control:
            ours.append(control[part])
        elif part:
            ours.extend(raw.encode(part.removeprefix(" "), bos=False, eos=False))
    return ours


def test_catalog_knows_every_mistral_format() -> None:
    assert {"auto", "plain", *chat.MISTRAL_FORMATS} == CHAT_FORMATS


def test_gguf_template_renders_chatml(smollm2: Path) -> None:
    meta = read_header(smollm2).metadata
    prompt = chat.from_template(meta["tokenizer.chat_template"], CONVERSATIONS[2],
                                eos_token="<|im_end|>")
    assert prompt.text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert prompt.text.endswith("<|im_start|>user\nName a river.<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.stop == ["<|im_end|>"]


def test_template_without_system_gets_models_default(smollm2: Path) -> None:
    meta = read_header(smollm2).metadata
    text = chat.build("auto", CONVERSATIONS[0], meta).text
    assert text.count("<|im_start|>") == 3  # the template's own default system turn


def test_plain_format_for_base_models() -> None:
    prompt = chat.build("auto", CONVERSATIONS[1], {})
    assert prompt.text.endswith("User: A river?\n\nAssistant:")
    assert "\nUser:" in prompt.stop


def test_broken_template_is_a_clear_error() -> None:
    from app.errors import BackendError

    with pytest.raises(BackendError, match="chat template"):
        chat.from_template("{{ raise_exception('roles must alternate') }}", CONVERSATIONS[0])


def test_stop_scanner_holds_back_partial_stop() -> None:
    scan = StopScanner(["\nUser:"])
    assert scan.feed("Hello") == "Hello"
    assert scan.feed(" world\nU") == " world"
    assert scan.feed("s") == ""
    assert scan.feed("er: more") == ""
    assert scan.stopped


def test_stop_scanner_releases_false_alarm() -> None:
    scan = StopScanner(["</s>"])
    assert scan.feed("a </") == "a "
    assert scan.feed("b>") == "</b>"
    assert scan.flush() == ""


@pytest.mark.parametrize(("template", "words"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "ran for over 2 s"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "calls itself without end"),
])
def test_hostile_templates_are_bounded(template: str, words: str) -> None:
    """A chat template is a program from the model file: a loop in a loop and endless
    recursion each end in one clear error, within the time limit."""
    import time

    from app.errors import BackendError

    t0 = time.monotonic()
    with pytest.raises(BackendError, match=words):
        chat.from_template(template, CONVERSATIONS[0])
    assert time.monotonic() - t0 < chat.RENDER_LIMIT_S + 1.5
