"""Modal dialogs: confirm, a line of text, chat parameters, and the model picker."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, OptionList, TextArea
from textual.widgets.option_list import Option

R = TypeVar("R")


class Dialog(ModalScreen[R]):
    """A dialog over the screen below; Esc cancels it. Its look is in dialogs.tcss."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]


class ConfirmDialog(Dialog[bool]):
    def __init__(self, question: str, yes: str = "Delete") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ChoiceDialog(Dialog[str]):
    """A question with a few answers (buttons); Esc answers "cancel"."""

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            with Horizontal(classes="buttons"):
                for i, (answer, label) in enumerate(self.choices):
                    yield Button(label, id=answer, variant="primary" if i == 0 else "default")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_cancel(self) -> None:
        self.dismiss("cancel")


def unsaved_question(name: str) -> ChoiceDialog:
    return ChoiceDialog(f"{name} has unsaved changes.",
                        [("save", "Save"), ("discard", "Discard"), ("cancel", "Cancel")])


class TextDialog(Dialog[str | None]):
    def __init__(self, title: str, value: str) -> None:
        super().__init__()
        self.title_text, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, markup=False)
            yield Input(self.value, id="value")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


_FIELDS = [("temperature", "Temperature", float), ("top_p", "Top p", float),
           ("max_tokens", "Max tokens", int), ("context_length", "Context length", int)]


class ParamsDialog(Dialog[dict[str, Any] | None]):
    """The chat's system prompt and sampling parameters, saved with the chat."""

    BINDINGS = [Binding("ctrl+s", "save", "Save")]

    def __init__(self, system_prompt: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.system_prompt, self.params = system_prompt, params

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="params-dialog"):
            yield Label("System prompt")
            yield TextArea(self.system_prompt, id="system", soft_wrap=True)
            with Grid(id="param-grid"):
                for key, label, _ in _FIELDS:
                    yield Label(label)
                    yield Input(str(self.params.get(key, "")), id=key)
            yield Label("", id="param-error", classes="error-text")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        values: dict[str, Any] = {}
        for key, label, kind in _FIELDS:
            raw = self.query_one(f"#{key}", Input).value.strip()
            try:
                values[key] = kind(raw)
            except ValueError:
                self.query_one("#param-error", Label).update(f"{label}: '{raw}' is not a number.")
                return
        if values["context_length"] < 64 or values["max_tokens"] < 1:
            self.query_one("#param-error", Label).update("Context must be ≥ 64, max tokens ≥ 1.")
            return
        values["system_prompt"] = self.query_one("#system", TextArea).text
        self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ModelPicker(Dialog[int | None]):
    """The models to choose from; returns the index of the chosen one."""

    def __init__(self, rows: list[str], current: int | None) -> None:
        super().__init__()
        self.rows, self.current = rows, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Model for this chat")
            yield OptionList(*[Option(r, id=str(i)) for i, r in enumerate(self.rows)], id="models")

    def on_mount(self) -> None:
        if self.current is not None:
            self.query_one(OptionList).highlighted = self.current

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilePicker(Dialog[Path | None]):
    """Choose a file to open in the code pane."""


    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="file-picker"):
            yield Label(f"Open a file from {self.root}", markup=False)
            yield DirectoryTree(self.root, id="files")

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)
