"""A call whose arguments the user never gave is a guess, not a call.

Offered tools, a small model calls one for questions none of them fits: asked how many legs a
spider has, Qwen 1.5B asks for the weather in New York, and asked who wrote Hamlet it emails
shakespeare@example.com. What those calls share is that their arguments come from nowhere: no
word of them is in the conversation. Under `tool_choice="auto"` a reply that is a call is held
back until it is checked: a call stands when it takes no arguments, or when at least one of its
values is grounded in what was said (a number as written, a text or a word of it, 4 letters of
a word being enough: "EUR" for "euros"). Else the reply is asked for again without the tools.

Asking the model itself was tried first and dropped: Qwen 1.5B answered "yes" to every call put
to it as a question, and "no" to every call put to it as a turn of the conversation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from typing import Any

from app.engine import tools
from app.engine.backend import Event, Message, Token
from app.engine.held_calls import HeldCall, hold_calls
from app.engine.tools import ToolCall

COMMON = frozenset({
    "the", "and", "for", "you", "are", "with", "this", "that", "from", "what", "how", "who",
    "why", "when", "where", "which", "not", "but", "all", "any", "can", "has", "have", "was",
    "were", "will", "your", "our", "its", "into", "about",
})


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    if isinstance(value, list):
        return [v for item in value for v in _values(item)]
    return [] if isinstance(value, bool) or value is None else [value]


def _said(value: Any, text: str) -> bool:
    if isinstance(value, int | float):
        return re.search(rf"(?<![\d.]){re.escape(f'{value:g}')}(?!\d)", text) is not None
    shown = str(value).lower().strip()
    if not shown:
        return False
    if shown in text:
        return True
    return any(re.search(rf"\b{re.escape(word[:4])}", text)
               for word in re.findall(r"\w+", shown) if len(word) >= 3 and word not in COMMON)


def grounded(call: ToolCall, messages: Sequence[Message]) -> bool:
    """Whether the call takes no values, or one of them was said in the conversation."""
    values = _values(call.arguments)
    text = "\n".join(m.content for m in messages).lower()
    return not values or any(_said(v, text) for v in values)


async def confirmed(events: AsyncGenerator[Event, None], messages: Sequence[Message],
                    again: Callable[[], AsyncGenerator[Event, None]],
                    ) -> AsyncGenerator[Event, None]:
    """`events`, but a reply that is a call comes only when each of its calls is grounded in
    `messages`; else the reply `again` gives. Text that is not a call streams as it comes."""
    finished: HeldCall | None = None
    async with aclosing(hold_calls(events)) as stream:
        async for event in stream:
            if isinstance(event, HeldCall):
                finished = event
                break  # the stream closes (and frees the worker) before the check
            yield event
    if finished is None:
        return
    calls = tools.parse(finished.text)
    if not calls or all(grounded(c, messages) for c in calls):
        yield Token(finished.text)
        yield finished.done
        return
    async with aclosing(again()) as text:
        async for event in text:
            yield event
