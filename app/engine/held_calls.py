"""A reply that may be a tool call, held back until it is known: text that cannot open a call
streams as it comes; one that opens a call is held whole, and given as one `HeldCall` at its
end, in place of its `Done`, for the face or the backend to read it (serve sends OpenAI's
`tool_calls`; the llama.cpp backend checks the call first, llama/call_check.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from app.engine import tools
from app.engine.backend import Done, Event, Token


@dataclass(frozen=True)
class HeldCall:
    """The whole text of a reply that opened a call, and the `Done` it ended with."""

    text: str
    done: Done


async def hold_calls(events: AsyncIterator[Event]) -> AsyncGenerator[Event | HeldCall, None]:
    """`events`, with a reply that opens a call held and given as a `HeldCall` (an error
    before its end gives what came as text, then the error)."""
    held, mode = "", "start"  # start -> text | call
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, Token) and mode != "text":
                held += event.text
                if mode == "start":
                    mode = {"call": "call", "maybe": "start", "text": "text"}[
                        tools.opening(held)]
                    if mode == "text":
                        yield Token(held)
                continue
            if held and mode != "text":
                if isinstance(event, Done):
                    yield HeldCall(held, event)
                    return
                yield Token(held)  # an error before the end: what came is kept
                held, mode = "", "text"
            yield event
