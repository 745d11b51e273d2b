"""Thinking models write their reasoning before the reply: `<think>…</think>` in the text (the
DeepSeek-R1 distills, Qwen3, QwQ), or a field of its own (`reasoning_content` from vLLM and
llama-server, `thinking` from Ollama). `split` turns the first kind into `Thought` events, so
every backend gives the same events, and the reasoning is shown folded, stored apart and never
sent back.

Only a `<think>` that opens the reply counts (a reply about XML may mention the tag), and a
template that opens the block itself (the prompt ends in `<think>`) starts inside it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from app.engine.backend import Event, Thought, Token

OPEN, CLOSE = "<think>", "</think>"


class Splitter:
    """Text in, (thinking, reply) pieces out, across any chunking of the tags."""

    def __init__(self, inside: bool = False) -> None:
        self.state = "inside" if inside else "start"  # start -> inside -> reply
        self.held = ""

    def feed(self, text: str) -> tuple[str, str]:
        self.held += text
        thought = reply = ""
        if self.state == "start":
            stripped = self.held.lstrip()
            if OPEN.startswith(stripped):  # still could be the tag: wait
                return "", ""
            if stripped.startswith(OPEN):
                self.state, self.held = "inside", stripped[len(OPEN):]
            else:
                self.state = "reply"
        if self.state == "inside":
            at = self.held.find(CLOSE)
            if at < 0:
                keep = _partial_tail(self.held, CLOSE)
                thought, self.held = self.held[:len(self.held) - keep], self.held[
                    len(self.held) - keep:]
                return thought, ""
            thought = self.held[:at]
            self.held = self.held[at + len(CLOSE):].lstrip("\n")
            self.state = "reply" if self.held else "after"
            if self.state == "after":
                return thought, ""
        if self.state == "after":  # the blank lines between the block and the reply
            self.held = self.held.lstrip("\n")
            if not self.held:
                return thought, ""
            self.state = "reply"
        reply, self.held = self.held, ""
        return thought, reply

    def flush(self) -> tuple[str, str]:
        """What is held at the end: an unclosed block is thinking; a lone '<thi' is text."""
        held, self.held = self.held, ""
        if self.state == "inside":
            return held, ""
        return "", held


def _partial_tail(text: str, tag: str) -> int:
    """How many of `text`'s last characters could start `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


async def split(events: AsyncGenerator[Event, None],
                inside: bool = False) -> AsyncGenerator[Event, None]:
    """`events` with a leading `<think>` block as `Thought` events and the rest as `Token`s."""
    splitter = Splitter(inside)
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Token):
                thought, reply = splitter.feed(event.text)
            elif isinstance(event, Thought):  # a server that sends it apart already
                yield event
                continue
            else:
                thought, reply = splitter.flush()
            if thought:
                yield Thought(thought)
            if reply:
                yield Token(reply)
            if not isinstance(event, Token):
                yield event
