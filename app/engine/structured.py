"""Structured output: a reply that must be JSON, any object or one matching a JSON Schema.

A request names it in `Params.json_schema` (the schema's JSON text; `ANY_OBJECT` for JSON mode).
Each backend enforces it its own way: the llama.cpp worker with a grammar built from the schema
(llama.cpp's own converter), Ollama with `format`, an OpenAI-compatible server with
`response_format`. Whatever enforced it, the reply is checked here with `jsonschema` before it
counts as done: a reply cut at the token limit, or a server that ignored the format, is an error
naming the problem, never prose passed off as JSON.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError

from app.engine.backend import Done, Error, Event, Token
from app.errors import TramontaneError

ANY_OBJECT = '{"type": "object"}'  # JSON mode: any JSON object


class SchemaProblem(TramontaneError):
    """A schema that is not one, or a reply that does not match it."""


def load_schema(text_or_path: str) -> str:
    """A JSON Schema given inline or as a file's path, checked, as compact JSON text."""
    text = text_or_path
    if not text_or_path.lstrip().startswith("{"):
        path = Path(text_or_path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SchemaProblem(f"Cannot read the schema {path}: "
                                f"{getattr(exc, 'strerror', None) or exc}.") from None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaProblem(f"The schema is not JSON: {exc.msg} (line {exc.lineno}, "
                            f"column {exc.colno}).") from None
    return dump_schema(schema)


def dump_schema(schema: Any) -> str:
    """`schema` checked against its metaschema, as compact JSON text."""
    if not isinstance(schema, dict):
        raise SchemaProblem("The schema must be a JSON object.")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise SchemaProblem(f"The schema is not a valid JSON Schema: {exc.message}.") from None
    return json.dumps(schema, separators=(",", ":"))


def problem(text: str, schema_text: str) -> str:
    """Why `text` is not a JSON value matching the schema ('' when it is)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"The reply is not JSON ({exc.msg}; character {exc.pos})."
    try:
        jsonschema.validate(value, json.loads(schema_text))
    except ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"The reply does not match the schema{f' at {where}' if where else ''}: " \
               f"{exc.message}."
    return ""


async def checked(events: AsyncGenerator[Event, None],
                  schema_text: str) -> AsyncGenerator[Event, None]:
    """`events` as they come, but a finished reply that is not valid against the schema ends
    in an `Error` saying why (and how to fix it when it was cut) instead of `Done`."""
    text = ""
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Token):
                text += event.text
            elif isinstance(event, Done) and event.stats.stop_reason != "cancelled":
                why = problem(text, schema_text)
                if why:
                    if event.stats.stop_reason in ("length", "context", "time"):
                        why += f" It was cut at the {event.stats.stop_reason} limit: allow " \
                               "more tokens."
                    yield Error(why)
                    return
            yield event

