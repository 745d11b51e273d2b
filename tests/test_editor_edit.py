"""llama.vim's instruction edit (`<leader>lli`) as the server reads it: its own prompt (the
sections of autoload/llama.vim's inst_build) parsed into the code pane's edit, and the model's
fenced answer sent back as the rewritten selection alone."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from app.engine.backend import Done, Error, Event, Message, Stats, Token
from app.session import editor_edit

RULE = "-" * 40
SYSTEM = ("You are a text-editing assistant. Respond ONLY with the result of applying "
          "INSTRUCTION to SELECTION given the CONTEXT. Maintain the existing text indentation. "
          "Do not add extra code blocks. Respond only with the modified block. If the "
          "INSTRUCTION is a question, answer it directly. Do not output any extra separators. "
          "Consider the local context before (PREFIX) and after (SUFFIX) the SELECTION.\n"
          f"\n--- CONTEXT     {RULE}\nfrom other import thing\n"
          f"--- PREFIX      {RULE}\nimport math\n\n"
          f"--- SELECTION   {RULE}\n    def area(self, r):\n        return 3.14 * r\n"
          f"--- SUFFIX      {RULE}\n\nprint(area(2))\n")


def test_llama_vims_prompt_becomes_an_edit() -> None:
    asked = editor_edit.parse([Message("system", SYSTEM),
                               Message("user", "INSTRUCTION: use math.pi")])
    assert asked is not None
    assert asked.instruction == "use math.pi"
    assert asked.code == "    def area(self, r):\n        return 3.14 * r\n"
    assert asked.before == "import math\n\n" and asked.after == "\nprint(area(2))\n"
    assert asked.context == "from other import thing"
    ours = editor_edit.messages_for(asked)
    assert "Instruction: use math.pi" in ours[-1].content
    assert "return 3.14 * r" in ours[-1].content and "from other import thing" in ours[-1].content


def test_a_rerun_edits_the_last_result_and_other_chats_are_left_alone() -> None:
    again = editor_edit.parse([
        Message("system", SYSTEM), Message("user", "INSTRUCTION: use math.pi"),
        Message("assistant", "    def area(self, r):\n        return math.pi * r"),
        Message("user", "INSTRUCTION: square r")])
    assert again is not None and again.instruction == "square r"
    assert again.code == "    def area(self, r):\n        return math.pi * r\n"
    assert editor_edit.parse([Message("system", "Be brief."), Message("user", "hi")]) is None
    assert editor_edit.parse([Message("user", "INSTRUCTION: x")]) is None


async def _events(*items: Event) -> AsyncGenerator[Event, None]:
    for item in items:
        yield item


async def _collect(stream: AsyncGenerator[Event, None]) -> list[Event]:
    return [e async for e in stream]


async def test_the_fenced_answer_goes_back_as_the_selection_alone() -> None:
    asked = editor_edit.parse([Message("system", SYSTEM), Message("user", "INSTRUCTION: pi")])
    assert asked is not None
    answer = "Here it is:\n```python\ndef area(self, r):\n    return math.pi * r\n```\n"
    out = await _collect(editor_edit.answered(
        asked, _events(Token(answer[:20]), Token(answer[20:]), Done(Stats()))))
    assert out[0] == Token("    def area(self, r):\n        return math.pi * r")  # indented back
    assert isinstance(out[-1], Done)


async def test_an_answer_that_is_not_code_comes_as_it_is_and_errors_pass() -> None:
    asked = editor_edit.parse([Message("system", SYSTEM),
                               Message("user", "INSTRUCTION: what does this do?")])
    assert asked is not None
    out = await _collect(editor_edit.answered(
        asked, _events(Token("It returns the area."), Done(Stats()))))
    assert out[0] == Token("It returns the area.")
    failed = await _collect(editor_edit.answered(asked, _events(Error("worker died"))))
    assert failed == [Error("worker died")]
    warm = await _collect(editor_edit.answered(asked, _events(Done(Stats()))))
    assert len(warm) == 1 and isinstance(warm[0], Done)  # a warm-up: nothing to insert
