"""Edit and ask in the code pane, with the pilot on a scripted model: Ctrl+K on the function
at the cursor, the diff, accepting all or change by change, refining, one undo step, lines
outside the range untouched, an answer that is not code never applied; Ctrl+L's answer saved
in the history and its code block applied through the same review."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from app.ui.tui.ask_screen import AskScreen
from app.ui.tui.code_editor import CodeEditor
from app.ui.tui.code_screen import CodeScreen
from app.ui.tui.edit_review import EditReview, hunks, merged, partial_code
from tests.fixtures.scripted import ScriptedBackend
from tests.helpers import BUGGY_MEAN, make_app, settle

SOURCE = BUGGY_MEAN + '''

def half(x):
    return x / 2
'''
FIXED = SOURCE.split("\n\n\n")[1].replace("len(values) - 1", "len(values)") + "\n"
TWO_CHANGES = FIXED.replace("return total /", "return float(total) /")


def _app(tmp_path: Path, reply: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    code = ScriptedBackend(replies=[reply])
    app = make_app(ScriptedBackend())
    app.open_file = path
    app._code_backend = code
    return app, code


async def _edit(pilot, instruction: str) -> EditReview:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                     and bool(app.screen.query(CodeEditor)), what="the code pane")
    app.screen.query_one(CodeEditor).move_cursor((6, 4))  # inside mean()
    await pilot.press("ctrl+k")
    await settle(pilot, lambda: bool(app.screen.query(Input)), what="the instruction box")
    app.screen.query_one(Input).value = instruction
    await pilot.press("enter")
    await settle(pilot, lambda: isinstance(app.screen, EditReview)
                     and app.screen.answer is not None, what="the model's answer")
    return app.screen  # type: ignore[no-any-return]


def _diff(review: EditReview) -> str:
    return str(review.query_one("#review-diff", Static).render())


async def test_ctrl_k_rewrites_the_function_and_accept_is_one_undo_step(tmp_path: Path) -> None:
    app, code = _app(tmp_path, f"```python\n{FIXED}```")
    async with app.run_test(size=(100, 40)) as pilot:
        review = await _edit(pilot, "fix the off-by-one")
        shown = _diff(review)
        assert "-     for i in range(len(values) - 1):" in shown
        assert "+     for i in range(len(values)):" in shown
        asked = code.requests[-1][0][-1].content
        assert "fix the off-by-one" in asked and "def mean(values):" in asked
        await pilot.press("enter")  # accept all
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen), what="the pane")
        editor = app.screen.query_one(CodeEditor)
        assert editor.text == SOURCE.replace("len(values) - 1", "len(values)")
        assert app.screen.dirty  # nothing saved behind the user's back
        editor.undo()
        assert editor.text == SOURCE


async def test_changes_are_accepted_one_by_one(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, f"Sure.\n```python\n{TWO_CHANGES}```")
    async with app.run_test(size=(100, 40)) as pilot:
        review = await _edit(pilot, "fix it and use floats")
        assert len(review.changes) == 2
        await pilot.press("y")  # the fix
        await pilot.press("n")  # not the float
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen), what="the pane")
        text = app.screen.query_one(CodeEditor).text
        assert "return total / len" in text and "range(len(values))" in text
        assert text.endswith("def half(x):\n    return x / 2\n")


async def test_an_answer_that_is_not_code_changes_nothing(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, "I am sorry, but I cannot see any bug in this function.")
    async with app.run_test(size=(100, 40)) as pilot:
        review = await _edit(pilot, "fix the bug")
        assert review.answer is not None and review.answer.code is None
        assert "cannot see any bug" in _diff(review)
        await pilot.press("enter")  # nothing to accept
        assert isinstance(app.screen, EditReview)
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen), what="the pane")
        assert app.screen.query_one(CodeEditor).text == SOURCE


async def test_a_follow_up_refines_the_same_edit(tmp_path: Path) -> None:
    app, code = _app(tmp_path, f"```python\n{FIXED}```")
    code.replies.append(f"```python\n{TWO_CHANGES}```")
    async with app.run_test(size=(100, 40)) as pilot:
        review = await _edit(pilot, "fix the off-by-one")
        await pilot.press("ctrl+k")
        await settle(pilot, lambda: bool(app.screen.query(Input)), what="the refine box")
        app.screen.query_one(Input).value = "also use a float total"
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, EditReview)
                         and len(app.screen.changes) == 2, what="the refined answer")
        second = code.requests[-1][0][-1].content
        assert "fix the off-by-one" in second and "also use a float total" in second
        assert "len(values) - 1" in second  # from the original, not the first answer
        assert review.old == SOURCE.splitlines(keepends=True)[3:9]


async def test_ctrl_l_answers_about_the_code_and_applies_its_block(tmp_path: Path) -> None:
    app, code = _app(tmp_path, f"It averages, but skips the last value:\n\n```python\n{FIXED}```")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen)
                         and bool(app.screen.query(CodeEditor)), what="the code pane")
        app.screen.query_one(CodeEditor).move_cursor((6, 4))
        await pilot.press("ctrl+l")
        await settle(pilot, lambda: isinstance(app.screen, AskScreen), what="the ask pane")
        app.screen.query_one(Input).value = "what does this do?"
        await pilot.press("enter")
        screen = app.screen
        await settle(pilot, lambda: "skips the last value" in screen.answer
                         and not any(w.is_running for w in screen.workers), what="the answer")
        chats = app.library.chats("skips the last value")
        assert [c.title for c in chats] == ["calc.py: what does this do?"]
        await pilot.press("ctrl+t")
        await settle(pilot, lambda: isinstance(app.screen, EditReview)
                         and bool(app.screen.changes), what="the review")
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, CodeScreen), what="the pane")
        assert "range(len(values))" in app.screen.query_one(CodeEditor).text


def test_hunks_merge_and_partial_code() -> None:
    old = ["a\n", "b\n", "c\n", "d\n"]
    new = ["a\n", "B\n", "c\n", "D\n", "e\n"]
    changes = hunks(old, new)
    assert len(changes) == 2
    changes[0].accepted, changes[1].accepted = True, False
    assert merged(old, new, changes) == "a\nB\nc\nd\n"
    assert partial_code("Here:\n```python\ndef f():\n    ret") == "def f():\n"
    assert partial_code("```\nx = 1\n```\nmore") == "x = 1\n"
    assert partial_code("no code") == ""
