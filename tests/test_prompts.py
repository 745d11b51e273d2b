"""Prompt formats against ground truth: mistral-common for Mistral, SmolLM2's own template."""

import re
from pathlib import Path

import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from app.engine.backend import Message
from app.engine.llama.stops import StopScanner
from app.engine.prompts import chat
from app.models.gguf_file import read_header

CONVERSATIONS = [
    [Message("user", "Hi")],
    [Message("user", "Hi there"), Message("assistant", "Hello!"), Message("user", "A river?")],
    [Message("system", "Be brief."), Message("user", "Name a river.")],
    [Message("system", "Answer in French."), Message("user", "One"), Message("assistant", "Un"),
     Message("user", "Two\nlines")],
]


def _mistral_common(messages: list[Message]) -> str:
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    request = ChatCompletionRequest(messages=[kinds[m.role](content=m.content) for m in messages])
    tok = MistralTokenizer.v3()
    tokens = tok.encode_chat_completion(request).tokens
    pieces = str(tok.decode(tokens, special_token_policy=SpecialTokenPolicy.KEEP))
    return pieces.replace("▁", " ").replace("<0x0A>", "\n")


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_mistral_v3_matches_mistral_common(messages: list[Message]) -> None:
    assert chat.mistral_v3(messages).text == _mistral_common(messages)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_mistral_v3_tokens_match_mistral_common(messages: list[Message]) -> None:
    """Token for token: split our text at control tokens and encode each piece as mistral does."""
    tok = MistralTokenizer.v3()
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    request = ChatCompletionRequest(messages=[kinds[m.role](content=m.content) for m in messages])
    expected = tok.encode_chat_completion(request).tokens
    raw = tok.instruct_tokenizer.tokenizer
    control = {"<s>": raw.bos_id, "</s>": raw.eos_id, "[INST]": raw.get_special_token("[INST]"),
               "[/INST]": raw.get_special_token("[/INST]")}
    text, ours = chat.mistral_v3(messages).text, []
    for part in re.split(r"(<s>|</s>|\[INST\]|\[/INST\])", text):
        if part in control:
            ours.append(control[part])
        elif part:
            ours.extend(raw.encode(part.removeprefix(" "), bos=False, eos=False))
    assert ours == expected


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
