"""A reply kept in the history while it streams: at most every SAVE_EVERY_S, and once more at
the end, whatever happens to the disk or the process."""

from __future__ import annotations

import asyncio
import time

from app.engine.backend import Stats
from app.errors import HistoryError
from app.store.history import ChatStore

SAVE_EVERY_S = 0.5
RETRY_S = 5.0  # after a failed save, the next try of a streaming reply


class Autosave:
    """Writes the growing reply at most every SAVE_EVERY_S, and once more at the end. A save
    that fails (a full disk, the history locked by another program) never stops the reply:
    the text stays in memory, and the save is tried again RETRY_S later, then with each later
    message (`ChatSession.retry_unsaved`)."""

    def __init__(self, store: ChatStore, message_id: int) -> None:
        self.store, self.message_id = store, message_id
        self.parts: list[str] = []
        self.thoughts: list[str] = []  # a thinking model's reasoning, saved beside the reply
        self.saved_at = time.monotonic()
        self.dirty = False
        self.task: asyncio.Task[None] | None = None
        self.problem = ""  # why the last save failed ("" when it did not)
        self.final: tuple[str, dict[str, object]] | None = None  # a finish not yet written
        self.saved_chars = 0  # how much of the reply the history holds

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def think(self, piece: str) -> None:
        self.thoughts.append(piece)
        self._changed()

    def append(self, piece: str) -> None:
        self.parts.append(piece)
        self._changed()

    def _changed(self) -> None:
        self.dirty = True
        if time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save()
        elif self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, SAVE_EVERY_S - (time.monotonic() - self.saved_at)))
            if self.dirty and time.monotonic() - self.saved_at >= SAVE_EVERY_S:
                self.save()

    def save(self) -> None:
        if self.problem and time.monotonic() - self.saved_at < RETRY_S:
            return  # each try can wait on a lock for 2 s: not at every token
        self.saved_at = time.monotonic()
        try:
            self.store.update_message(self.message_id, content=self.text,
                                      thinking="".join(self.thoughts))
        except HistoryError as exc:
            self.problem = str(exc)
            return
        self.dirty, self.problem, self.saved_chars = False, "", len(self.text)

    def finish(self, state: str, **fields: object) -> bool:
        """Write the whole reply and its state; False when it could not be (kept to retry)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.final = (state, fields)
        return self.retry()

    def retry(self) -> bool:
        if self.final is None:
            return True
        state, fields = self.final
        try:
            self.store.update_message(self.message_id, content=self.text, state=state,
                                      thinking="".join(self.thoughts), **fields)
        except HistoryError as exc:
            self.problem = str(exc)
            return False
        self.final, self.problem, self.dirty = None, "", False
        self.saved_chars = len(self.text)
        return True


def stat_fields(stats: Stats) -> dict[str, object]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "generated_tokens": stats.generated_tokens,
        "ttft_ms": stats.ttft_ms,
        "decode_tps": stats.decode_tps,
    }
