"""An editor's instruction edit through `tramontane serve`: llama.vim's `<leader>lli` sends its
own prompt to /v1/chat/completions (a system message with the CONTEXT, PREFIX, SELECTION and
SUFFIX sections, then "INSTRUCTION: ..."), and inserts whatever comes back in place of the
selection. A 1.5B model answers that prompt with a fenced block, fences and all, so the server
runs the same edit as the code pane instead: our edit prompt (engine/prompts/edit.py) on the
code model, speculative decoding for edits, and the rewritten range extracted from the answer
(fences stripped, indentation kept, copied context dropped). An answer that is not code (a
question's answer) is sent as it came. Its warm-up (an empty instruction, `n_predict` 0)
evaluates our prompt up to the instruction, so the edit itself finds it cached.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from app.engine.backend import ContextChunk, Done, Event, Message, Token, printable
from app.engine.prompts import edit as prompts

OPENING = "You are a text-editing assistant."
_SECTION = re.compile(r"^--- (CONTEXT|PREFIX|SELECTION|SUFFIX) +-+\n", re.MULTILINE)


@dataclass(frozen=True)
class EditorEdit:
    instruction: str
    before: str
    code: str
    after: str
    context: str = ""


def parse(messages: list[Message]) -> EditorEdit | None:
    """llama.vim's instruction request, or None for any other chat. A rerun or continue
    carries the earlier result as an assistant message: that is the code to change then."""
    if not messages or messages[0].role != "system" or \
            not messages[0].content.startswith(OPENING):
        return None
    parts = _SECTION.split(messages[0].content)
    sections = dict(zip(parts[1::2], parts[2::2], strict=False))
    if "SELECTION" not in sections or messages[-1].role != "user":
        return None
    code = sections["SELECTION"]
    earlier = [m.content for m in messages[1:-1] if m.role == "assistant"]
    if earlier:
        code = earlier[-1] if earlier[-1].endswith("\n") else earlier[-1] + "\n"
    asked = messages[-1].content
    instruction = asked.split("INSTRUCTION:", 1)[1] if "INSTRUCTION:" in asked else asked
    return EditorEdit(instruction.strip(), sections.get("PREFIX", ""), code,
                      sections.get("SUFFIX", ""), sections.get("CONTEXT", "").strip())


def messages_for(edit: EditorEdit) -> list[Message]:
    extra = [ContextChunk("other buffers", edit.context)] if edit.context else []
    return prompts.edit_messages(edit.instruction, edit.before, edit.code, edit.after,
                                 extra=extra)


async def answered(edit: EditorEdit, events: AsyncGenerator[Event, None]
                   ) -> AsyncGenerator[Event, None]:
    """The model's answer to our edit prompt, as the editor wants it: the rewritten range
    alone (without its last newline: the editor splits it into the selection's lines), or the
    answer as it came when it is not code. Errors pass through."""
    text = ""
    async for event in events:
        if isinstance(event, Token):
            text += event.text
        elif isinstance(event, Done):
            found = prompts.extract(printable(text), edit.code, edit.before, edit.after)
            out = found.code[:-1] if found.code and found.code.endswith("\n") else found.code
            reply = out if out is not None else found.text
            if reply:
                yield Token(reply)
            yield event
        else:
            yield event
