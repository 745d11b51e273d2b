"""Finished Markdown as one widget of pre-rendered lines.

Textual re-arranges every widget on each layout pass, and its Markdown widget is a widget per
block, so a long reply (or a long history) made of Markdown widgets gets slower with every
line. This widget renders finished text once with Rich into lines (Strips) and appends only
what is new; it re-renders only when its width changes.
"""

from __future__ import annotations

from rich.markdown import Markdown as RichMarkdown
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

CODE_THEME = "monokai"


class RenderedMarkdown(Widget):
    DEFAULT_CSS = """
    RenderedMarkdown {
        height: auto;
    }
    """

    def __init__(self, sources: list[str] | None = None, classes: str = "") -> None:
        super().__init__(classes=classes)
        self.sources: list[str] = [s for s in sources or [] if s.strip()]
        self._lines: list[Strip] = []
        self._width = 0

    @property
    def source(self) -> str:
        return "".join(self.sources)

    def add(self, source: str) -> None:
        """Append a finished stretch of Markdown, rendering only that stretch."""
        if not source.strip():
            self.sources.append(source)
            return
        self.sources.append(source)
        if self._width:
            self._lines.extend(self._render_source(source, self._width, gap=bool(self._lines)))
        self.refresh(layout=True)

    def _render_source(self, source: str, width: int, gap: bool) -> list[Strip]:
        console = self.app.console
        options = console.options.update_width(width)
        lines = console.render_lines(RichMarkdown(source, code_theme=CODE_THEME), options,
                                     pad=False)
        strips = [Strip(line) for line in lines]
        return ([Strip.blank(width)] if gap else []) + strips

    def _ensure(self, width: int) -> None:
        if width == self._width:
            return
        self._width = width
        self._lines = []
        for source in self.sources:
            if source.strip():
                self._lines.extend(self._render_source(source, width, gap=bool(self._lines)))

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self._ensure(width)
        return len(self._lines)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        self._ensure(width)
        if y >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        return self._lines[y].crop_extend(0, width, self.rich_style).apply_style(self.rich_style)
