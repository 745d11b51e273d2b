"""Chat prompt formats: Mistral's [INST] format written by hand, the chat template a GGUF
carries (Jinja, sandboxed), and a plain transcript for base models without a template.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engine.backend import Message
from app.engine.tools import Tool
from app.errors import BackendError


@dataclass(frozen=True)
class ChatPrompt:
    """Text to tokenize (special tokens written out) and strings that end the reply."""

    text: str
    stop: list[str] = field(default_factory=list)


# Mistral's [INST] formats, one per tokenizer version mistral-common ships (checked token for
# token against it in tests/test_prompts.py):
# - v1 (Mistral 7B v0.1, Mixtral 8x7B): [INST] is text, spaces round it, the system prompt
#   goes before the first user message;
# - v3 (Mistral 7B v0.3, Mixtral 8x22B, Codestral): control tokens, the system prompt before
#   the last user message;
# - v3 Tekken (Mistral NeMo): as v3, without the space SentencePiece puts before each piece;
# - v7 Tekken (Mistral Small 24B 2501): the system prompt in its own [SYSTEM_PROMPT] block.
MISTRAL_FORMATS = ("mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7-tekken")
# v3's function calling (Mistral 7B v0.3, Codestral): [AVAILABLE_TOOLS] before the last
# [INST], a call as [TOOL_CALLS] [{"name", "arguments", "id"}], a result as
# [TOOL_RESULTS] {"content", "call_id"}[/TOOL_RESULTS] (checked against mistral-common)
MISTRAL_TOOL_FORMATS = ("mistral-v3", "mistral-v3-tekken")


def mistral(messages: Sequence[Message], chat_format: str = "mistral-v3",
            tools: Sequence[Tool] = ()) -> ChatPrompt:
    """`<s>[INST] q[/INST] a</s>[INST] q2[/INST]` and its variants (see MISTRAL_FORMATS).

    As mistral-common does, a user turn and an assistant turn alternate.
    """
    if chat_format not in MISTRAL_FORMATS:
        raise BackendError(f"Unknown Mistral chat format {chat_format!r}.")
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns = [m for m in messages if m.role != "system"]
    users = [i for i, m in enumerate(turns) if m.role == "user"]
    sp = "" if chat_format.endswith("tekken") else " "  # SentencePiece's word-start space
    out = ["<s>"]
    system_at = -1
    if chat_format == "mistral-v7-tekken":
        if system:
            out.append(f"[SYSTEM_PROMPT]{system}[/SYSTEM_PROMPT]")
    elif users:
        system_at = users[0] if chat_format == "mistral-v1" else users[-1]
    for i, msg in enumerate(turns):
        if msg.role == "tool":
            out.append(f"[TOOL_RESULTS]{sp}{_result(msg)}[/TOOL_RESULTS]")
        elif msg.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments, "id": c.id}
                     for c in msg.tool_calls]
            out.append(f"[TOOL_CALLS]{sp}{json.dumps(calls)}</s>")
        elif msg.role == "user":
            content = f"{system}\n\n{msg.content}" if system and i == system_at else msg.content
            if tools and users and i == users[-1]:
                listed = json.dumps([t.openai() for t in tools])
                out.append(f"[AVAILABLE_TOOLS]{sp}{listed}[/AVAILABLE_TOOLS]")
            if chat_format == "mistral-v1":
                out.append(f" [INST] {content} [/INST]")
            else:
                out.append(f"[INST]{sp}{content}[/INST]")
        else:
            out.append(f"{sp}{msg.content}</s>")
    return ChatPrompt("".join(out), stop=["</s>", "[INST]"])


def _result(message: Message) -> str:
    """A tool's result as Mistral's [TOOL_RESULTS] holds it: JSON content as JSON."""
    try:
        content: object = json.loads(message.content)
    except json.JSONDecodeError:
        content = message.content
    return json.dumps({"content": content, "call_id": message.tool_call_id})


def plain(messages: Sequence[Message]) -> ChatPrompt:
    """A transcript for base models that have no chat template."""
    lines = []
    for msg in messages:
        speaker = {"system": "System", "user": "User", "assistant": "Assistant"}[msg.role]
        lines.append(f"{speaker}: {msg.content}")
    lines.append("Assistant:")
    return ChatPrompt("\n\n".join(lines), stop=["\nUser:", "\n\nUser:", "\nSystem:"])


def _raise(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


RENDER_LIMIT_S = 2.0  # a chat template is a program from the model file: it gets this long


class _TooSlow(Exception):
    pass


def _bounded(render: Callable[[], str], limit_s: float = RENDER_LIMIT_S) -> str:
    """`render()`, stopped when it runs past `limit_s`: Jinja compiles a template to Python,
    so a trace function on this thread can end a loop the sandbox allows (range caps each
    loop, not a loop inside a loop)."""
    deadline = time.monotonic() + limit_s

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _TooSlow
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return render()
    finally:
        sys.settrace(previous)


def from_template(
    template: str, messages: Sequence[Message], bos_token: str = "", eos_token: str = "",
    tools: Sequence[Tool] = (),
) -> ChatPrompt:
    """Render a GGUF `tokenizer.chat_template` with a generation prompt at the end, in
    Jinja's sandbox and within RENDER_LIMIT_S; a template that fails, recurses without end or
    runs too long is one clear error."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
    try:
        compiled = env.from_string(template)
        text = _bounded(lambda: compiled.render(
            messages=[m.template_dict() for m in messages],
            tools=[t.openai() for t in tools] or None,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=True,
        ))
    except TemplateError as exc:
        raise BackendError(f"The model's chat template failed: {exc}") from exc
    except RecursionError as exc:
        raise BackendError("The model's chat template calls itself without end; use another "
                           "file of this model.") from exc
    except _TooSlow as exc:
        raise BackendError(f"The model's chat template ran for over {RENDER_LIMIT_S:.0f} s "
                           "and was stopped; use another file of this model.") from exc
    except (OverflowError, MemoryError, ValueError, TypeError, ArithmeticError) as exc:
        # the sandbox's own limits (range(10**9) is an OverflowError) and plain bugs
        raise BackendError(f"The model's chat template failed: {exc!r}; use another file of "
                           "this model.") from exc
    stop = [eos_token] if eos_token else []
    return ChatPrompt(text, stop=stop)


def build(chat_format: str, messages: Sequence[Message], metadata: dict[str, Any],
          tools: Sequence[Tool] = ()) -> ChatPrompt:
    """Pick the format: ours for Mistral's, the GGUF's template, else a plain transcript.
    Offered `tools` go where the template puts them; a format that has no place for them gets
    them in the system prompt, in the Hermes format the call grammar expects."""
    template = str(metadata.get("tokenizer.chat_template") or "")
    if tools:
        messages = with_tool_policy(messages)
    native = chat_format in MISTRAL_TOOL_FORMATS or ("tool_call" in template and chat_format
                                                       not in MISTRAL_FORMATS + ("plain",))
    if not native:
        if tools:
            messages, tools = with_tools_in_system(messages, tools), ()
        messages = [as_text(m) if m.role == "tool" or m.tool_calls else m for m in messages]
    if chat_format in MISTRAL_FORMATS:
        return mistral(messages, chat_format, tools)
    if chat_format == "plain" or not template:
        return plain(messages)
    return from_template(
        template,
        messages,
        bos_token=str(metadata.get("bos_token_text", "")),
        eos_token=str(metadata.get("eos_token_text", "")),
        tools=tools,
    )


TOOL_POLICY = ("When one of the functions can answer the user's request, call it; when none of "
               "them fits, answer the question yourself in plain text.")


def with_tool_policy(messages: Sequence[Message]) -> list[Message]:
    """The system prompt says when to call: small models otherwise call some tool for any
    question (Qwen 1.5B set a timer when asked how many legs a spider has)."""
    if messages and messages[0].role == "system":
        return [Message("system", f"{messages[0].content}\n\n{TOOL_POLICY}"), *messages[1:]]
    return [Message("system", f"You are a helpful assistant. {TOOL_POLICY}"), *messages]


def with_tools_in_system(messages: Sequence[Message], tools: Sequence[Tool]) -> list[Message]:
    """The tools described in the system prompt (the Hermes wording Qwen's template uses)."""
    listed = "\n".join(json.dumps(t.openai()) for t in tools)
    said = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{listed}\n</tools>\n\nFor each function call, return a json object "
            "with function name and arguments within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            "</tool_call>")
    if messages and messages[0].role == "system":
        return [Message("system", f"{messages[0].content}\n\n{said}"), *messages[1:]]
    return [Message("system", said), *messages]


def as_text(message: Message) -> Message:
    """A call or a tool's answer, written out, for formats with no place for them."""
    if message.role == "tool":
        return Message("user", f"<tool_response>\n{message.content}\n</tool_response>")
    calls = "".join(f'\n<tool_call>\n{{"name": "{c.name}", "arguments": '
                    f"{json.dumps(c.arguments)}}}\n</tool_call>" for c in message.tool_calls)
    return Message("assistant", message.content + calls)


def data_spans(text: str, messages: Sequence[Message]) -> tuple[tuple[int, int], ...]:
    """Where each message's text sits in the rendered prompt `text`, in order (a message a
    template changed beyond trimming is not found, and stays as the template wrote it)."""
    spans: list[tuple[int, int]] = []
    at = 0
    for message in messages:
        content = message.content.strip()
        if not content:
            continue
        found = text.find(content, at)
        if found >= 0:
            spans.append((found, found + len(content)))
            at = found + len(content)
    return tuple(spans)
