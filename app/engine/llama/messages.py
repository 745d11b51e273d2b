"""What the app and the llama.cpp worker say to each other over the pipe: one frozen dataclass
per kind (multiprocessing pickles them), so both ends match on types, never on positions in a
tuple. Every reply to a request carries the request's id: a late reply to a cancelled request
is told apart from the current one's.

To the worker:   Load -> Loaded | LoadFailed;  Generate -> Text* then Finished | Failed;
                 Cancel (no answer if the request already ended);  AskMemory -> MemoryUse;  Exit
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine.backend import Stats

Piece = tuple[str, str, bool]  # a FIM prompt's piece: kind ("special" or text), value, space


@dataclass(frozen=True)
class LoadOptions:
    context_length: int
    threads: int
    gpu_layers: int
    adapt_threads: bool = False  # [params] threads = 0: the decode count is measured (threads.py)
    draft_path: str = ""  # a draft model for speculative decoding, loaded beside (draft.py)


@dataclass(frozen=True)
class GenerateOptions:
    max_tokens: int  # 0: evaluate the prompt only (a warm-up)
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    seed: int  # -1: a random one
    stop: tuple[str, ...] = ()
    add_bos: bool = True
    kind: str = "chat"  # "chat", "completion", "edit": speculation pays differently
    speculative: str = "auto"  # "auto", "lookup", "draft", "off"
    max_time_ms: int = 0  # stop decoding this long after the first token (0: no limit)
    ignore_eos: bool = False  # speed measurements: always generate max_tokens
    json_schema: str = ""  # the reply follows a grammar made from this JSON Schema
    grammar: str = ""  # or this GBNF grammar
    tools: str = ""  # or, with tools offered, a call to one of them (or text, for "auto")
    tool_choice: str = "auto"
    tool_format: str = "hermes"  # how the model writes a call: "hermes" or "mistral"
    think_open: bool = False  # the prompt opened a <think> block (the template did)
    think_budget_s: float = 0.0  # a <think> block is closed after this long (0: half the
    # reply's tokens), so a thinking model always leaves room and time for the answer
    data: tuple[tuple[int, int], ...] = ()  # spans of a chat prompt that are messages' text:
    # tokenized as text, so "<|im_start|>" typed by a user is never a control token


@dataclass(frozen=True)
class Load:
    path: str
    opts: LoadOptions


@dataclass(frozen=True)
class Generate:
    req: int
    text: str | list[Piece]  # a chat prompt, or a FIM prompt piece by piece
    opts: GenerateOptions


@dataclass(frozen=True)
class Cancel:
    req: int


@dataclass(frozen=True)
class AskMemory:
    pass


@dataclass(frozen=True)
class Exit:
    pass


Command = Load | Generate | Cancel | AskMemory | Exit


@dataclass(frozen=True)
class Loaded:
    info: dict[str, Any]  # metadata, n_ctx, n_ctx_train, BOS/EOS text, add_bos, system info


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class Text:
    req: int
    text: str


@dataclass(frozen=True)
class Finished:
    req: int
    stats: Stats  # the worker's counts, decode speed and stop reason


@dataclass(frozen=True)
class Failed:
    req: int
    message: str


@dataclass(frozen=True)
class MemoryUse:
    rss: int
    peak_rss: int


Reply = Loaded | LoadFailed | Text | Finished | Failed | MemoryUse
