"""Ask about code (Ctrl+L in the code pane): a chat beside the file, bound to it. The
selection (or the function at the cursor) goes with the first question; answers stream as
Markdown; a follow-up goes on in the same chat, which is kept in the history with the file's
name like any chat. Ctrl+T applies the answer's code block to the range, through the same diff
review as an edit (the screen returns that code)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Markdown

from app.engine.backend import Done, Error, Token
from app.engine.prompts.edit import ask_messages, code_blocks
from app.session import edit
from app.session.chat import ChatSession
from app.session.complete import CompletionSession
from app.session.library import ChatLibrary


class AskScreen(Screen[str | None]):
    CSS_PATH = "ask_screen.tcss"
    BINDINGS = [
        Binding("escape", "close", "Back to the code"),
        Binding("ctrl+t", "apply", "Apply the code block", priority=True),
    ]

    def __init__(self, library: ChatLibrary, code: CompletionSession, where: edit.Span,
                 path: str) -> None:
        super().__init__()
        self.library, self.code, self.where, self.path = library, code, where, path
        self.chat: ChatSession | None = None
        self.answer = ""
        self.shown = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Label(f"Ask about lines {self.where.start}-{self.where.end} of {self.path}",
                        id="ask-title", markup=False)
            with VerticalScroll(id="ask-answer"):
                yield Markdown(id="ask-markdown")
            yield Label("", id="ask-status", markup=False)
            yield Input(placeholder="What does this do? (Enter asks)", id="ask-input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ask-input", Input).focus()

    @on(Input.Submitted, "#ask-input")
    def _asked(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        event.input.value = ""
        self.ask(question)

    @work(exclusive=True, group="ask")
    async def ask(self, question: str) -> None:
        status = self.query_one("#ask-status", Label)
        if self.chat is None:
            self.chat = self.library.ask_about(self.code, self.path, question)
            text = ask_messages(question, self.where.before, self.where.code, self.where.after,
                                self.path)[1].content
        else:
            text = question
        markdown = self.query_one("#ask-markdown", Markdown)
        self.shown += f"\n\n**You:** {question}\n\n"
        await markdown.update(self.shown)
        status.update(f"{self.code.model.name} is answering…")
        self.answer = ""
        stream = Markdown.get_stream(markdown)
        try:
            async for event in self.chat.send(text):
                if isinstance(event, Token):
                    self.answer += event.text
                    await stream.write(event.text)
                elif isinstance(event, Done):
                    status.update("Ctrl+T applies the answer's code block to the range; Esc "
                                  "goes back to the code." if code_blocks(self.answer) else "")
                elif isinstance(event, Error):
                    status.update(f"No answer: {event.message}")
        finally:
            await stream.stop()
        self.shown += self.answer
        await markdown.update(self.shown)

    def action_apply(self) -> None:
        blocks = code_blocks(self.answer)
        if not blocks:
            self.notify("The answer has no code block to apply.", severity="warning")
            return
        self.dismiss(blocks[0])

    def action_close(self) -> None:
        self.workers.cancel_group(self, "ask")
        self.dismiss(None)
