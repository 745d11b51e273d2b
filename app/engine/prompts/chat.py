"""Chat prompt formats: Mistral's [INST] format written by hand, the chat template a GGUF
carries (Jinja, sandboxed), and a plain transcript for base models without a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engine.backend import Message
from app.errors import BackendError


@dataclass(frozen=True)
class ChatPrompt:
    """Text to tokenize (special tokens written out) and strings that end the reply."""

    text: str
    stop: list[str] = field(default_factory=list)


def mistral_v3(messages: Sequence[Message]) -> ChatPrompt:
    """Mistral Instruct v0.3 / Codestral: `<s>[INST] q[/INST] a</s>[INST] q2[/INST]`.

    As mistral-common does, the system prompt goes before the last user message, and a user
    turn and an assistant turn must alternate.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns = [m for m in messages if m.role != "system"]
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=-1)
    out = ["<s>"]
    for i, msg in enumerate(turns):
        if msg.role == "user":
            content = f"{system}\n\n{msg.content}" if system and i == last_user else msg.content
            out.append(f"[INST] {content}[/INST]")
        else:
            out.append(f" {msg.content}</s>")
    return ChatPrompt("".join(out), stop=["</s>", "[INST]"])


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


def from_template(
    template: str, messages: Sequence[Message], bos_token: str = "", eos_token: str = ""
) -> ChatPrompt:
    """Render a GGUF `tokenizer.chat_template` with a generation prompt at the end."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
    try:
        text = env.from_string(template).render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=True,
        )
    except TemplateError as exc:
        raise BackendError(f"The model's chat template failed: {exc}") from exc
    stop = [eos_token] if eos_token else []
    return ChatPrompt(text, stop=stop)


def build(chat_format: str, messages: Sequence[Message], metadata: dict[str, Any]) -> ChatPrompt:
    """Pick the format: ours for Mistral, the GGUF's template, else a plain transcript."""
    if chat_format == "mistral-v3":
        return mistral_v3(messages)
    template = str(metadata.get("tokenizer.chat_template") or "")
    if chat_format == "plain" or not template:
        return plain(messages)
    return from_template(
        template,
        messages,
        bos_token=str(metadata.get("bos_token_text", "")),
        eos_token=str(metadata.get("eos_token_text", "")),
    )
