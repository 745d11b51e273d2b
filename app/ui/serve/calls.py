"""Tool calls in OpenAI's shapes: the `tools` a request offers, the calls and tool answers in
its messages, and a reply that is a call, sent as `tool_calls` (streamed or not) instead of
the call's text."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from app.engine import tools
from app.engine.backend import Event, Message, Params, Token
from app.engine.held_calls import HeldCall, hold_calls
from app.ui.serve.bodies import BadRequest, get


@dataclass(frozen=True)
class Called:
    """The reply was these calls (it comes before the reply's `Done`)."""

    calls: list[tools.ToolCall]


def offered(body: dict[str, Any]) -> tuple[str, str]:
    """(the tools as JSON, tool_choice) from a request; ('', 'none') when it offers none."""
    raw = get(body, "tools", list, [])
    choice: Any = body.get("tool_choice", "auto" if raw else "none")
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": …}}
        choice = (choice.get("function") or {}).get("name")
    if not isinstance(choice, str) or not choice:
        raise BadRequest("`tool_choice` must be auto, none, required or a named function.",
                         "tool_choice")
    if not raw:
        if choice not in ("none", "auto"):
            raise BadRequest("`tool_choice` names a tool, but `tools` offers none.",
                             "tool_choice")
        return "", "none"
    try:
        listed = tools.from_json(json.dumps(raw))
    except (KeyError, TypeError, AttributeError, ValueError):
        raise BadRequest("`tools` must be a list of {\"type\": \"function\", \"function\": "
                         "{\"name\", \"description\", \"parameters\"}}.", "tools") from None
    why = tools.check(listed)
    if why:
        raise BadRequest(why, "tools")
    if choice not in ("auto", "none", "required") and choice not in {t.name for t in listed}:
        raise BadRequest(f"`tool_choice` names {choice!r}, which `tools` does not offer.",
                         "tool_choice")
    return tools.to_json(listed), choice


async def split(events: AsyncIterator[Event]) -> AsyncGenerator[Event | Called, None]:
    """The reply's events, but a reply that opens a call is held and given as `Called`
    (before `Done`); text that is not a call streams as it comes."""
    async with aclosing(hold_calls(events)) as stream:
        async for event in stream:
            if isinstance(event, HeldCall):
                calls = tools.parse(event.text)
                yield Called(calls) if calls else Token(event.text)
                yield event.done
            else:
                yield event


def answered(messages: Sequence[Message]) -> set[str]:
    """The calls this conversation has results for (name and arguments)."""
    has_result = {m.tool_call_id for m in messages if m.role == "tool"}
    return {c.key() for m in messages for c in m.tool_calls
            if c.id in has_result or not has_result}


async def reply(make: Callable[[Params], AsyncGenerator[Event, None]],
                messages: Sequence[Message], params: Params,
                ) -> AsyncGenerator[Event | Called, None]:
    """The reply to a request that offers tools. A small model often calls again for a result
    it already has; such a repeat is no call: the reply is asked for again, in text."""
    done = answered(messages)
    repeated = False
    async with aclosing(split(make(params))) as first:  # closed (the model freed) before again
        async for event in first:
            if isinstance(event, Called) and done and all(c.key() in done for c in event.calls):
                repeated = True
                break
            yield event
    if repeated:
        async with aclosing(make(replace(params, tool_choice="none"))) as again:
            async for event in again:
                yield event


def called_chunk(head: dict[str, Any], called: Called) -> dict[str, Any]:
    """The streamed chunk that carries the calls, as OpenAI streams them (one delta)."""
    return head | {"choices": [{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
        {"index": i} | c.openai() for i, c in enumerate(called.calls)]}}]}
