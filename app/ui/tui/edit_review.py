"""The edit review (Ctrl+K in the code pane): the model's rewrite of a range streams in as a
diff against the original (removed lines marked -, added +, the rest plain), then each change
is accepted or rejected, or all at once. A follow-up instruction (Ctrl+K again) refines the
same edit from the original. The screen returns the range's new text, or None: the code pane
puts it in as one undo step, and lines outside the range never change.

Model text is shown as text (Rich `Text`), never as markup.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from app.engine.prompts.edit import Answer
from app.errors import TramontaneError
from app.session import edit
from app.session.complete import CompletionSession
from app.ui.tui.dialogs import TextDialog


@dataclass
class Hunk:
    """One change: original lines [a0, a1) become new lines [b0, b1); None until decided."""

    a0: int
    a1: int
    b0: int
    b1: int
    accepted: bool | None = None


def hunks(old: list[str], new: list[str]) -> list[Hunk]:
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [Hunk(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes()
            if tag != "equal"]


def merged(old: list[str], new: list[str], changes: list[Hunk]) -> str:
    """The original with the accepted hunks applied."""
    out: list[str] = []
    at = 0
    for h in changes:
        out += old[at:h.a0]
        out += new[h.b0:h.b1] if h.accepted else old[h.a0:h.a1]
        at = h.a1
    out += old[at:]
    return "".join(out)


def render(old: list[str], new: list[str], changes: list[Hunk], current: int) -> Text:
    """The range as a diff: plain lines, then each hunk's removed and added lines."""
    text = Text()
    at = 0
    for n, h in enumerate(changes):
        for line in old[at:h.a0]:
            text.append("  " + line.rstrip("\n") + "\n")
        mark = "▶ " if n == current and h.accepted is None else "  "
        state = {True: " (accepted)", False: " (rejected)", None: ""}[h.accepted]
        text.append(f"{mark}change {n + 1}/{len(changes)}{state}\n", style="bold")
        for line in old[h.a0:h.a1]:
            text.append("- " + line.rstrip("\n") + "\n",
                        style="red" if h.accepted is not False else "dim red")
        for line in new[h.b0:h.b1]:
            text.append("+ " + line.rstrip("\n") + "\n",
                        style="green" if h.accepted is not False else "dim green")
        at = h.a1
    for line in old[at:]:
        text.append("  " + line.rstrip("\n") + "\n")
    return text


def partial_code(answer: str) -> str:
    """The code so far of an answer still streaming: what follows its first fence."""
    start = answer.find("```")
    if start < 0:
        return ""
    body = answer[answer.find("\n", start) + 1:] if "\n" in answer[start:] else ""
    end = body.find("```")
    return body[:end] if end >= 0 else body[: body.rfind("\n") + 1]


class EditReview(Screen[str | None]):
    CSS_PATH = "edit_review.tcss"
    BINDINGS = [
        Binding("y", "accept_one", "Accept change"),
        Binding("n", "reject_one", "Reject change"),
        Binding("enter", "accept_all", "Accept all"),
        Binding("escape", "reject_all", "Reject all"),
        Binding("ctrl+k", "refine", "Refine"),
    ]

    def __init__(self, session: CompletionSession, where: edit.Span, path: str,
                 instruction: str, code: str | None = None) -> None:
        super().__init__()
        self.session, self.where, self.path = session, where, path
        self.instructions = [instruction]
        self.old = where.code.splitlines(keepends=True)
        self.new: list[str] = []
        self.changes: list[Hunk] = []
        self.current = 0
        self.answer: Answer | None = None
        self.given = code  # a code block from an answer (Ctrl+L): no model run
        self.status_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="review"):
            yield Label("", id="review-title", markup=False)
            with VerticalScroll(id="review-body"):
                yield Static(id="review-diff")
            yield Label("", id="review-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._title()
        if self.given is not None:
            self._show_answer(Answer(self.given, self.given))
        else:
            self.run_edit()

    def _title(self) -> None:
        said = " · then ".join(self.instructions)
        self.query_one("#review-title", Label).update(Text(
            f"Edit lines {self.where.start}-{self.where.end} of {self.path}: {said}"))

    def status(self, text: str) -> None:
        self.status_text = text
        self.query_one("#review-status", Label).update(Text(text))

    @work(exclusive=True, group="edit")
    async def run_edit(self) -> None:
        self.answer, self.changes, self.new = None, [], []
        self.status(f"{self.session.model.name} is rewriting the range…")

        def streamed(text: str) -> None:  # the diff so far, as the code comes
            code = partial_code(text)
            if code:
                self.new = code.splitlines(keepends=True)
                self._draw(hunks(self.old, self.new))

        try:
            result = await edit.run(self.session, self.instructions[-1], self.where, self.path,
                                    history=self.instructions[:-1], on_text=streamed)
        except TramontaneError as exc:
            self.status(f"The edit failed: {exc} (Esc closes)")
            return
        self._show_answer(result.answer)
        stats = result.stats
        if stats.drafted_tokens:
            self.status(f"{self.status_text} · {stats.decode_tps:.0f} tok/s, {stats.drafting()}")

    def _show_answer(self, answer: Answer) -> None:
        self.answer = answer
        if answer.code is None:
            self.query_one("#review-diff", Static).update(Text(answer.text))
            self.status("The answer is not code, so nothing will change. Esc closes; Ctrl+K "
                        "asks again.")
            return
        self.new = answer.code.splitlines(keepends=True)
        self.changes = hunks(self.old, self.new)
        self.current = 0
        self._draw(self.changes)
        self.status(f"{len(self.changes)} change(s): y accepts, n rejects, Enter accepts all, "
                    "Esc rejects all" if self.changes else "The model changed nothing. Esc "
                    "closes; Ctrl+K asks again.")

    def _draw(self, changes: list[Hunk]) -> None:
        self.query_one("#review-diff", Static).update(
            render(self.old, self.new, changes, self.current))

    def _decide(self, accepted: bool) -> None:
        if not self.changes or self.answer is None or self.answer.code is None:
            return
        self.changes[self.current].accepted = accepted
        undecided = [i for i, h in enumerate(self.changes) if h.accepted is None]
        if not undecided:
            self._finish()
            return
        self.current = undecided[0]
        self._draw(self.changes)

    def _finish(self) -> None:
        if any(h.accepted for h in self.changes):
            self.dismiss(merged(self.old, self.new, self.changes))
        else:
            self.dismiss(None)

    def action_accept_one(self) -> None:
        self._decide(True)

    def action_reject_one(self) -> None:
        self._decide(False)

    def action_accept_all(self) -> None:
        if self.answer is None or self.answer.code is None or not self.changes:
            return
        for h in self.changes:
            if h.accepted is None:
                h.accepted = True
        self._finish()

    def action_reject_all(self) -> None:
        self.workers.cancel_group(self, "edit")
        self.dismiss(None)

    def action_refine(self) -> None:
        """A follow-up instruction: the same range, from the original, with what was said."""
        def given(text: str | None) -> None:
            if text and text.strip():
                self.instructions.append(text.strip())
                self.given = None
                self._title()
                self.run_edit()

        self.app.push_screen(TextDialog("Refine the edit (e.g. also handle None):", ""), given)
