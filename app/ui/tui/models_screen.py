"""The models screen: this machine, the catalog and the models on disk with their fit verdicts;
pull (with progress and cancel), delete (with confirmation), use for chat, use for code."""

from __future__ import annotations

import threading
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar

from app.errors import TramontaneError
from app.session.models import ModelManager, ModelRow, PullProgress
from app.sizes import human_size
from app.ui.tui.dialogs import ConfirmDialog

_COLOURS = {"gpu": "green", "partial": "yellow", "moe": "yellow", "cpu": "cyan", "no": "red"}



class ModelsScreen(Screen[None]):
    CSS_PATH = "models_screen.tcss"
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("p", "pull", "Pull"),
        Binding("x", "cancel_pull", "Cancel pull"),
        Binding("d", "delete", "Delete"),
        Binding("c", "use('chat')", "Use for chat"),
        Binding("k", "use('code')", "Use for code"),
        Binding("r", "reload", "Reload"),
        Binding("slash", "search_hub", "Search the hub"),
    ]

    def __init__(self, manager: ModelManager) -> None:
        super().__init__()
        self.manager = manager
        self.rows: list[ModelRow] = []
        self.cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="models-screen"):
            yield Input(placeholder="Search the Hugging Face hub for GGUF models (Enter); "
                                    "empty: this machine's models", id="hub-search")
            yield Label("Looking at this machine…", id="hardware")
            yield Label("", id="recommend")
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            yield Label("", id="model-detail", markup=False)
            yield ProgressBar(id="pull-progress", show_eta=True)
            yield Label("", id="pull-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Model", "Quant", "Size", "Needs", "Fit", "On disk", "Backends", "From")
        self.query_one(ProgressBar).display = False
        table.focus()  # the keys (p, d, c, k) are the table's; "/" goes to the search box
        self.load()

    def action_search_hub(self) -> None:
        self.query_one("#hub-search", Input).focus()

    @work(thread=True, exclusive=True, group="models-load")
    def load(self) -> None:
        try:
            rows = self.manager.rows()
            picks = self.manager.recommend()
            summary = self.manager.hardware.summary()
        except TramontaneError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self._show, summary, rows, [p.words() for p in picks])

    @on(Input.Submitted, "#hub-search")
    def _search(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.load()
            return
        self.query_one("#recommend", Label).update(f"Searching the hub for {event.value}…")
        self.search(event.value.strip())

    @work(thread=True, exclusive=True, group="models-load")
    def search(self, query: str) -> None:
        """The hub's GGUF files for `query`, ranked for this machine, in the table."""
        from app.session.hub_search import as_model_row, search

        try:
            found = search(self.manager, query)
        except TramontaneError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        why = next((r.why for r in found.rows if r.why), "")
        said = (f"{len(found.rows)} files on the hub for {query!r}, best for this machine "
                f"first; p pulls one." + (f" Lower: {why}." if why else "")
                + (f" {found.note}" if found.note else "")
                + (f" Left out: {'; '.join(found.unread)}." if found.unread else ""))
        summary = self.manager.hardware.summary()
        self.app.call_from_thread(self._show, summary, [as_model_row(r) for r in found.rows],
                                  [], said)

    def _show(self, summary: str, rows: list[ModelRow], picks: list[str],
              said: str = "") -> None:
        self.rows = rows
        self.query_one("#hardware", Label).update(f"This machine: {summary}")
        self.query_one("#recommend", Label).update(said or "Recommended: " + " · ".join(picks))
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            v = row.verdict
            fit = Text(row.words(), style=_COLOURS.get(v.kind, "")) if v else Text("?", style="red")
            table.add_row(row.name, row.quant, human_size(row.size),
                          human_size(v.estimate.total - v.estimate.reclaimable) if v else "?", fit,
                          "yes" if row.installed else "no", ", ".join(row.backends), row.source)

    def _current(self) -> ModelRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_close(self) -> None:
        self.cancel.set()
        self.dismiss(None)

    def action_reload(self) -> None:
        self.load()

    def action_pull(self) -> None:
        row = self._current()
        if row is None or row.installed:
            self.notify("Choose a catalog model that is not on disk yet.", severity="warning")
            return
        if row.verdict and not row.verdict.fits:
            self.notify(f"{row.name} {row.quant} does not fit this machine; pulling anyway.",
                        severity="warning")
        self.cancel = threading.Event()
        bar = self.query_one(ProgressBar)
        bar.display = True
        bar.update(total=row.size, progress=0)
        self.pull(row)

    @work(thread=True, exclusive=True, group="pull")
    def pull(self, row: ModelRow) -> None:
        last = [0.0]

        def report(p: PullProgress) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 or p.status != "downloading":
                last[0] = now
                self.app.call_from_thread(self._progress, p)

        try:
            path = self.manager.pull(row.catalog_id or row.name, row.quant, report, self.cancel)
        except TramontaneError as exc:
            self.app.call_from_thread(self._pull_done, f"Pull stopped: {exc}", True)
            return
        self.app.call_from_thread(self._pull_done, f"Downloaded {path.name}.", False)

    def _progress(self, p: PullProgress) -> None:
        self.query_one(ProgressBar).update(total=p.total or None, progress=p.done)
        self.query_one("#pull-status", Label).update(
            f"{p.status}: {human_size(p.done)} of {human_size(p.total)}")

    def _pull_done(self, message: str, failed: bool) -> None:
        self.query_one(ProgressBar).display = False
        self.query_one("#pull-status", Label).update(message)
        self.notify(message, severity="error" if failed else "information")
        self.load()

    def action_cancel_pull(self) -> None:
        self.cancel.set()

    def action_delete(self) -> None:
        row = self._current()
        if row is None or not row.installed:
            return
        owner = row.owner
        question = f"Delete {row.name} ({human_size(row.size)})?"
        if owner not in ("tramontane", "package"):
            question = f"{row.name} belongs to {owner}. Delete {owner}'s file anyway?"

        def done(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.manager.remove(row.ref_name, owner)
            except TramontaneError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"Deleted {row.name}.")
            self.load()

        self.app.push_screen(ConfirmDialog(question), done)

    def action_use(self, purpose: str) -> None:
        row = self._current()
        if row is None or not row.installed:
            self.notify("Pull the model first.", severity="warning")
            return
        try:
            model = self.manager.use(row.ref_name, purpose)
        except TramontaneError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"{model.name} is now the default {purpose} model.")

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Under the table, the highlighted model in words: a mixture of experts' memory
        against its speed, and what it needs where it does not fit."""
        row = self._current()
        lines = []
        if row is not None and row.moe:
            lines.append(f"Mixture of experts: {row.moe}.")
        if row is not None and row.verdict is not None and not row.verdict.fits:
            lines.append(f"{row.name} {row.quant} {row.verdict.why_not()}.")
        elif row is not None and row.catalog_id in self.manager.catalog and any(
                q.name == row.quant for q in self.manager.catalog[row.catalog_id].quants):
            model = self.manager.catalog[row.catalog_id]
            plan = self.manager.context_plan(model, model.quant(row.quant))
            steps = " · ".join(f"{s.context // 1024}k: KV {human_size(s.kv_cache)}"
                               + ("" if s.kind != "no" else " (too big)") for s in plan)
            lines.append(f"Context: {steps}")
        self.query_one("#model-detail", Label).update("\n".join(lines))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        row = self._current()
        if row is not None and not row.installed:
            self.action_pull()
