"""Request bodies the server takes, checked field by field: a wrong type or value is a 400
naming the field, never a traceback. Fields a client sends that the server has no use for
(llama.vim's `id_slot`, `samplers`, `cache_prompt`, `t_max_prompt_ms`, ...) are accepted and
ignored, as llama-server does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.engine import tools
from app.engine.backend import ContextChunk, Message, Params

MAX_BODY = 8 * 2**20  # bytes: a 256-line window and a ring of chunks fit many times over
MAX_MESSAGES = 2000  # a conversation longer than any context holds: refused, not saved


class BadRequest(Exception):
    """A request the server refuses: `status`, a message, and the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status

    def body(self) -> dict[str, Any]:
        kind = "authentication_error" if self.status in (401, 403) else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.status}}


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number",
          list: "a list", dict: "an object"}


def get(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """`body[name]` if it has type `kind` (ints pass as floats, bools never as numbers)."""
    value = body.get(name, default)
    if value is None:
        return default
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise BadRequest(f"`{name}` must be {_NAMES[kind]}.", name)
    return value


def number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = float(get(body, name, float, default))
    if not low <= value <= high:
        raise BadRequest(f"`{name}` must be between {low:g} and {high:g}.", name)
    return value


@dataclass
class Sampling:
    """The sampling fields every endpoint shares."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: list[str] = field(default_factory=list)


def sampling(body: dict[str, Any], max_name: str, default_max: int,
             default_temperature: float, base: Params | None = None) -> Sampling:
    """The request's sampling fields; what it leaves out comes from `base` (the server's
    parameters, from config.toml)."""
    base = base or Params()
    max_tokens = int(get(body, max_name, int, default_max))
    if max_tokens < 0:
        max_tokens = default_max  # llama.cpp's -1: "as many as the default"
    if max_tokens > 32768:
        raise BadRequest(f"`{max_name}` must be at most 32768.", max_name)
    stop = body.get("stop", [])
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("`stop` must be a string or a list of strings.", "stop")
    return Sampling(max_tokens, number(body, "temperature", default_temperature, 0, 5),
                    number(body, "top_p", base.top_p, 0, 1),
                    int(get(body, "top_k", int, base.top_k)),
                    int(get(body, "seed", int, base.seed)), stop)


@dataclass
class Infill:
    """llama.cpp's /infill as llama.vim and llama.vscode send it: the text before the
    cursor is `input_prefix` + `prompt` (the start of the current line)."""

    prefix: str
    suffix: str
    extra: list[ContextChunk]
    sampling: Sampling
    max_time_ms: int
    stream: bool
    response_fields: list[str] | None
    path: str = ""  # Tramontane's own field: the file, for its FIM format and plugins


def infill(body: dict[str, Any], default_max: int, base: Params | None = None) -> Infill:
    prefix = get(body, "input_prefix", str, "") + get(body, "prompt", str, "")
    suffix = get(body, "input_suffix", str, "")
    extra = []
    chunks = get(body, "input_extra", list, [])
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text", ""), str) or \
                not isinstance(chunk.get("filename", ""), str):
            raise BadRequest(f"`input_extra[{i}]` must be an object with `text` and "
                             "`filename` strings.", f"input_extra[{i}]")
        extra.append(ContextChunk(str(chunk.get("filename", "")), str(chunk.get("text", ""))))
    fields = get(body, "response_fields", list, None)
    if fields is not None and not all(isinstance(f, str) for f in fields):
        raise BadRequest("`response_fields` must be a list of strings.", "response_fields")
    for name, kind in (("n_indent", int), ("t_max_prompt_ms", int), ("id_slot", int),
                       ("cache_prompt", bool), ("samplers", list)):
        get(body, name, kind, None)  # checked, and llama.cpp's own concerns
    return Infill(prefix, suffix, extra, sampling(body, "n_predict", default_max, 0.0, base),
                  max(0, int(get(body, "t_max_predict_ms", int, 0))),
                  bool(get(body, "stream", bool, False)), fields,
                  get(body, "filename", str, ""))


ROLES = ("system", "user", "assistant", "tool")


def messages(body: dict[str, Any]) -> list[Message]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("`messages` must be a non-empty list.", "messages")
    if len(raw) > MAX_MESSAGES:
        raise BadRequest(f"`messages` holds {len(raw):,} messages; at most {MAX_MESSAGES:,} are "
                         "taken.", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"`messages[{i}].role` must be one of {', '.join(ROLES)}.",
                             f"messages[{i}].role")
        content = m.get("content", "")
        if content is None:  # an assistant turn that only called tools
            content = ""
        if isinstance(content, list):  # OpenAI's content parts: the text ones
            content = "".join(p.get("text", "") for p in content
                              if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise BadRequest(f"`messages[{i}].content` must be a string.",
                             f"messages[{i}].content")
        made = message_calls(m.get("tool_calls"), f"messages[{i}].tool_calls") \
            if m["role"] == "assistant" else ()
        call_id = m.get("tool_call_id", "") if m["role"] == "tool" else ""
        out.append(Message(m["role"], content, made, str(call_id or "")))
    return out


def picked(response: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """llama-server's `response_fields`: only those, nested ones under their "a/b" path."""
    out: dict[str, Any] = {}
    for path in fields:
        value: Any = response
        for part in path.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[path] = value
    return out


def output_format(body: dict[str, Any]) -> tuple[str, str]:
    """(JSON Schema text, GBNF grammar) the reply must follow, from OpenAI's `response_format`
    (`json_object`, `json_schema`) or llama-server's `json_schema` and `grammar`; ('', '') for
    free text. A schema that is not one is a 400 naming the field."""
    from app.engine import structured

    schema: Any = None
    field_name = "response_format"
    shape = get(body, "response_format", dict, None)
    if shape is not None:
        kind = shape.get("type")
        if kind == "json_object":
            schema = shape.get("schema") or json.loads(structured.ANY_OBJECT)
        elif kind == "json_schema":
            inner = shape.get("json_schema")
            if not isinstance(inner, dict) or not isinstance(inner.get("schema", {}), dict):
                raise BadRequest("`response_format.json_schema` must be an object with a "
                                 "`schema`.", "response_format.json_schema")
            schema = inner.get("schema") or json.loads(structured.ANY_OBJECT)
            field_name = "response_format.json_schema.schema"
        elif kind != "text":
            raise BadRequest("`response_format.type` must be text, json_object or json_schema.",
                             "response_format.type")
    if body.get("json_schema") is not None:
        schema, field_name = get(body, "json_schema", dict, {}), "json_schema"
    grammar = get(body, "grammar", str, "")
    if schema is not None and grammar:
        raise BadRequest("Give `grammar` or a JSON schema, not both.", "grammar")
    try:
        text = structured.dump_schema(schema) if schema is not None else ""
    except structured.SchemaProblem as exc:
        raise BadRequest(str(exc), field_name) from None
    return text, grammar


def message_calls(raw: Any, where: str) -> tuple[tools.ToolCall, ...]:
    """An assistant message's `tool_calls`, as a client sends them back."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadRequest(f"`{where}` must be a list.", where)
    out = []
    for i, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        try:
            args = fn["arguments"] if isinstance(fn, dict) else None
            args = json.loads(args) if isinstance(args, str) else args
            assert isinstance(fn, dict) and isinstance(fn["name"], str) and isinstance(args, dict)
        except (KeyError, AssertionError, json.JSONDecodeError, TypeError):
            raise BadRequest(f"`{where}[{i}]` must have a function with a name and JSON "
                             "arguments.", f"{where}[{i}]") from None
        out.append(tools.ToolCall(fn["name"], args, str(call.get("id") or f"call_{i}")))
    return tuple(out)
