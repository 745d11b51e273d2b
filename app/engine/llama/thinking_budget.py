"""A thinking model's `<think>` block, held to a budget: past it the block is closed for the
model (its closing tag evaluated as if it had written it), so the answer always gets its turn.
The budget is the request's think_budget_s (seconds: session/think_time.py sets it from the speed
model), or half the reply's tokens when it is 0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OPEN, CLOSE = "<think>", "</think>"
CLOSING = "\n" + CLOSE + "\n\n"


class ThinkBudget:
    def __init__(self, opened: bool, budget_s: float, max_tokens: int) -> None:
        self.state = "inside" if opened else "start"  # start -> inside -> done
        self.text = ""
        self.budget_s = budget_s
        self.budget_tokens = max(1, max_tokens // 2)
        self.due = False  # the budget is spent: close the block after this token
        self._forced = ""

    def saw(self, piece: str, generated: int, seconds: float) -> None:
        """The model's text so far (to know whether a block is open, and when it closes)."""
        if self.state == "done":
            return
        self.text += piece
        shown = self.text.lstrip()
        if self.state == "start":
            if OPEN.startswith(shown):
                return
            if not shown.startswith(OPEN):
                self.state = "done"  # no thinking block: nothing to hold
                return
            self.state = "inside"
        if CLOSE in self.text:
            self.state = "done"
            return
        over = seconds > self.budget_s if self.budget_s > 0 else generated >= self.budget_tokens
        self.due = over

    def inject(self, llm: Any) -> Callable[[int], list[int]]:
        """The decode loop's hook: the closing tokens once the budget is spent, else none."""
        def after(token: int) -> list[int]:
            if not self.due or self.state != "inside":
                return []
            self.state, self.due = "done", False
            self._forced = CLOSING
            return list(llm.tokenize(CLOSING.encode(), add_bos=False, special=True))
        return after

    def forced(self) -> str:
        """The text put in for the model since last asked (shown as if it wrote it)."""
        text, self._forced = self._forced, ""
        return text
