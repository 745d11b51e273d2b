"""The one protocol every backend follows, and the small typed events it streams.

The UI and the CLI match on `Token`, `Done` and `Error`; nothing above this layer knows
whether llama.cpp or an Ollama server produced them.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from app.config_defaults import DEFAULTS
from app.engine.tools import ToolCall

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # the calls an assistant turn made
    tool_call_id: str = ""  # the call a "tool" turn answers

    def template_dict(self) -> dict[str, Any]:
        """The message as chat templates read it (OpenAI's shape, arguments as objects)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": c.arguments}} for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


_DEFAULT = DEFAULTS["params"]  # config.toml's defaults are the one source of these


@dataclass(frozen=True)
class Params:
    """Sampling and load settings for one request."""

    temperature: float = _DEFAULT["temperature"]
    top_p: float = _DEFAULT["top_p"]
    top_k: int = _DEFAULT["top_k"]
    repeat_penalty: float = _DEFAULT["repeat_penalty"]
    seed: int = _DEFAULT["seed"]
    max_tokens: int = _DEFAULT["max_tokens"]
    context_length: int = _DEFAULT["context_length"]
    threads: int = _DEFAULT["threads"]
    gpu_layers: int = _DEFAULT["gpu_layers"]  # on the GPU; -1 = as the fit verdict plans (ModelRef)
    max_time_ms: int = 0  # stop decoding this long after the first token (0: no limit), as
    # llama.cpp's t_max_predict_ms (the prompt's own time does not count)
    # speculative decoding in the llama.cpp worker: "auto" (prompt lookup and a draft model
    # where they pay on this machine, measured per kind of work), "lookup", "draft", "off"
    speculative: str = _DEFAULT["speculative"]
    draft_model: str = _DEFAULT["draft_model"]  # a draft model's name or path ("": chosen)
    stop: tuple[str, ...] = ()  # a client's own stop strings, besides the format's
    work: str = "chat"  # the kind of work ("chat", "edit"): speculation pays differently
    json_schema: str = ""  # the reply must be JSON matching this schema (engine/structured.py)
    tools: str = ""  # the tools offered, as OpenAI's JSON list (engine/tools.py)
    think_budget_s: float = 0.0  # a thinking model's <think> time (0: session/think_time.py)
    tool_choice: str = "auto"  # "auto", "none", "required", or a tool's name
    grammar: str = ""  # a GBNF grammar the reply must follow (llama.cpp only)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Params:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "stop" in known:
            known["stop"] = tuple(str(s) for s in known["stop"] or ())
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def thread_count(self) -> int:
        return self.threads if self.threads > 0 else max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelRef:
    """A model a backend can load: a GGUF path for llama.cpp, a tag for Ollama."""

    name: str
    path: Path | None = None
    chat_format: str = "auto"  # "auto" = the template in the GGUF, "plain", "mistral-v3"...
    chat_tuned: bool = True
    fim_format: str = ""
    source: str = ""
    gpu_layers: int = 0  # what the fit verdict plans for this machine (Params can override)
    fit_warning: str = ""  # set when the model does not fit this machine: the faces ask first
    draft: Path | None = None  # a draft model for speculative decoding (llama.cpp), same vocabulary


# why a reply ended: an end token or a stop string; max tokens; the context is full; the time
# cap (max_time_ms); the caller stopped it
StopReason = Literal["stop", "length", "context", "time", "cancelled"]


@dataclass(frozen=True)
class Stats:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    ttft_ms: float = 0.0
    decode_tps: float = 0.0
    total_ms: float = 0.0
    stop_reason: StopReason = "stop"
    drafted_tokens: int = 0  # speculative decoding: tokens drafted, and kept by the model
    accepted_tokens: int = 0
    drafter: str = ""  # who drafted: "lookup", "draft model", "lookup + draft model"
    speedup: float = 0.0  # decode speed against this worker's plain one-token passes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def drafting(self) -> str:
        """Speculative decoding's share: "drafted 118, kept 115 (97%) by lookup · 1.6x plain
        decoding"; "" when nothing was drafted."""
        if not self.drafted_tokens:
            return ""
        return (f"drafted {self.drafted_tokens}, kept {self.accepted_tokens} "
                f"({self.accepted_tokens / self.drafted_tokens:.0%})"
                + (f" by {self.drafter}" if self.drafter else "")
                + (f" · {self.speedup:.2f}x plain decoding" if self.speedup else ""))

    def summary(self) -> str:
        spec = f" · {self.drafting()}" if self.drafted_tokens else ""
        return (
            f"prompt {self.prompt_tokens} tok (cached {self.cached_tokens}) · "
            f"generated {self.generated_tokens} tok · first token {self.ttft_ms:.0f} ms · "
            f"{self.decode_tps:.1f} tok/s" + spec
        )


@dataclass(frozen=True)
class ContextChunk:
    """Lines of another file that a completion may draw on (from a plugin)."""

    path: str
    text: str


# C0 controls but tab and newline, DEL and C1 controls: ESC starts terminal sequences (a title
# change, a screen clear) and, in an editor's keystrokes, commands; CR ends them
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Model text made safe for a terminal, an editor or a file: control characters other
    than newline and tab are dropped (CRLF becomes a newline). Model text is data."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


@dataclass(frozen=True)
class Token:
    """A piece of model text, always `printable`: every backend's text passes here."""

    text: str

    def __post_init__(self) -> None:
        if _CONTROL.search(self.text):
            object.__setattr__(self, "text", printable(self.text))


@dataclass(frozen=True)
class Done:
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class Error:
    message: str


@dataclass(frozen=True)
class Thought:
    """A thinking model's reasoning (`<think>…</think>`, `reasoning_content`, Ollama's
    `thinking`): shown folded, kept apart from the reply, never sent back to the model."""

    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", printable(self.text))


Event = Token | Done | Error | Thought


@dataclass(frozen=True)
class Progress:
    status: str
    completed: int = 0
    total: int = 0


@dataclass(frozen=True)
class BackendInfo:
    name: str
    model: str | None
    details: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What every backend offers. Streams end with exactly one `Done` or `Error`."""

    name: str

    def chat(self, messages: list[Message], params: Params) -> AsyncGenerator[Event, None]: ...

    def complete(self, prefix: str, suffix: str, params: Params,
                 extra: Sequence[ContextChunk] = (), path: str = "") -> AsyncGenerator[Event, None]:
        """Fill in between prefix and suffix; `extra` chunks of other files, and the file's
        `path`, go into the prompt where the model's FIM format has room for them."""
        ...

    async def load(self, model: ModelRef, params: Params | None = None) -> None: ...

    async def unload(self) -> None: ...

    async def fim_prompt(self, prefix: str, suffix: str, params: Params,
                         extra: Sequence[ContextChunk] = (), path: str = "") -> Any:
        """What `complete` would send for these arguments (a `prompts.fim.Sent`)."""
        ...

    async def info(self) -> BackendInfo: ...


@runtime_checkable
class ServerBackend(Backend, Protocol):
    """A backend in front of a server that has its own list of models (Ollama, an
    OpenAI-compatible server); files on disk are the model manager's business."""

    host: str  # the server's address as messages show it: never a password

    async def models(self) -> list[ModelRef]: ...

    async def fim_mode(self) -> str:
        """How the server fills in the middle for the loaded model: "infill" (llama-server's
        /infill), "suffix" (the server's own FIM template) or "prompt" (our FIM prompt, raw)."""
        ...
