"""Tool calls: the tools a request offers, the calls a reply makes, and the grammar that makes
a small model's call always parse.

The model writes a call in its own format; the chat template (or Mistral's builder) tells it
which. The Qwen2.5 and Hermes format, which most GGUF templates with tools use, is
`<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`. In the llama.cpp worker a
grammar built from the offered tools' schemas holds the call to it: it always parses, names an
offered tool, and has arguments valid to that tool's schema. With `tool_choice` "auto" the
model stays free to answer in text instead (any reply that does not open with the call tag).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine import json_grammar

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object",
                                                                 "properties": {}})

    def openai(self) -> dict[str, Any]:
        """The tool as OpenAI's API and chat templates name it."""
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: "".join(  # 9 letters and digits, as Mistral's
        secrets.choice(string.ascii_letters + string.digits) for _ in range(9)))

    def key(self) -> str:
        """The call's identity: its tool and arguments (a repeated call has the same)."""
        return self.name + json.dumps(self.arguments, sort_keys=True)

    def shown(self) -> str:
        """The call as the user reads it: name(arg="value", …)."""
        args = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.arguments.items())
        return f"{self.name}({args})"

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


def to_json(tools: Sequence[Tool]) -> str:
    return json.dumps([t.openai() for t in tools])


def from_json(text: str) -> list[Tool]:
    """Tools as OpenAI's API sends them (`{"type": "function", "function": {…}}`)."""
    out = []
    for item in json.loads(text) if text else []:
        fn = item.get("function", item)
        out.append(Tool(str(fn["name"]), str(fn.get("description", "") or ""),
                        dict(fn.get("parameters") or {"type": "object", "properties": {}})))
    return out


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check(tools: Sequence[Tool]) -> str:
    """Why these tools cannot be offered ('' when they can)."""
    seen = set()
    for t in tools:
        if not _NAME.match(t.name):
            return f"The tool name {t.name!r} must be 1 to 64 letters, digits, _ . or -."
        if t.name in seen:
            return f"Two tools are named {t.name!r}."
        seen.add(t.name)
        if t.parameters.get("type", "object") != "object":
            return f"The parameters of {t.name!r} must be a JSON Schema of an object."
    return ""


def call_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """One call to one of `tools`, as a JSON Schema: {"name": <a tool>, "arguments": {…}}."""
    shapes = [{"type": "object", "additionalProperties": False,
               "required": ["name", "arguments"],
               "properties": {"name": {"const": t.name}, "arguments": _closed(t.parameters)}}
              for t in tools]
    return shapes[0] if len(shapes) == 1 else {"oneOf": shapes}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema that takes no property it does not name (a small model must not
    invent arguments), unless it says otherwise."""
    out = dict(schema) or {"type": "object", "properties": {}}
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    out.setdefault("additionalProperties", False)
    return out


def grammar(tools: Sequence[Tool], choice: str, style: str = "hermes") -> str:
    """GBNF for a reply under `choice`: "auto" (a call, or text that is not one), "required"
    or a tool's name (a call, to that tool for a name). Built in the llama.cpp worker, with
    llama.cpp's own JSON Schema converter."""
    if choice not in ("auto", "required"):
        tools = [t for t in tools if t.name == choice]
    rules = re.sub(r"(?m)^root ::=", "tc-json ::=",
                   json_grammar.gbnf(json.dumps(call_schema(tools))))
    lines = ["root ::= tc-call | tc-text" if choice == "auto" else "root ::= tc-call",
             # the call in the model's format, or as the JSON block a small model writes
             f'tc-call ::= "{CALL_OPEN}\\n" tc-json "\\n{CALL_CLOSE}" '
             '| "```json\\n" tc-json "\\n```" | tc-json'
             # Mistral v3: [TOOL_CALLS] (its control token, matched by its text) and a list
             + (' | "[TOOL_CALLS]" " "? "[" tc-json "]" | "[" tc-json "]"'
                if style == "mistral" else ""),
             # free text: anything that does not open a call (a code fence but ```json is text)
             f"tc-text ::= [^<{{`{'[' if style == 'mistral' else ''}\\x00-\\x20] [^\\x00]* "
             "| \"```\" tc-fence",
             'tc-fence ::= [^j\\x00] [^\\x00]* | "j" [^s\\x00] [^\\x00]* '
             '| "js" [^o\\x00] [^\\x00]* | "jso" [^n\\x00] [^\\x00]*', rules]
    return "\n".join(lines)


OPENERS = (CALL_OPEN, "```json", "{", "[TOOL_CALLS]", "[{")  # the forms the grammar allows


def opening(text: str) -> str:
    """"call" when `text` opens a call, "maybe" while it could still, "text" when it cannot."""
    shown = text.lstrip()
    if any(shown.startswith(o) for o in OPENERS):
        return "call"
    return "maybe" if any(o.startswith(shown) for o in OPENERS) else "text"


def parse(text: str) -> list[ToolCall] | None:
    """The calls a reply makes (None when it is a plain answer): `<tool_call>` blocks, or the
    call as a ```json block or bare JSON. A reply that opens a call and does not complete it,
    or names no tool, is a plain answer."""
    body = text.strip().removeprefix("[TOOL_CALLS]").strip()
    if body.startswith(CALL_OPEN):
        inner = [c.split(CALL_CLOSE, 1)[0] for c in body.split(CALL_OPEN)[1:]]
    elif body.startswith("```json") and body.endswith("```"):
        inner = [body[len("```json"):-3]]
    elif body.startswith(("{", "[")):
        inner = [body]
    else:
        return None
    found: list[Any] = []
    for chunk in inner:
        try:
            data = json.loads(chunk.strip())
        except json.JSONDecodeError:
            return None
        found += data if isinstance(data, list) else [data]
    calls = []
    for data in found:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        args = data.get("arguments", {})
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(ToolCall(data["name"], args))
    return calls or None
