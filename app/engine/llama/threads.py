"""How many threads decode a token, chosen by measuring, request by request.

llama.cpp's threads meet at every layer of every token, so one thread held up by other work on
the machine holds up all of them: on a busy 2-core machine, two decode threads ran at half the
speed of one (7 against 15-17 tok/s on SmolLM2). A prompt's batches are compute-bound and keep
every thread (llama.cpp's n_threads_batch); only the one-token steps are tuned here.

With [params] threads = 0 (auto), a request decodes WINDOW tokens with the count that won
last time. While that count keeps its speed, the request goes on with it. When it is slower
than it was (under SLOWER of its known rate), and every RECHECK requests in any case (the
other count may have become faster: the load went away), the request decodes WINDOW more
with the other count and keeps the faster (the full count unless the other is faster by
MARGIN). A request too short to compare keeps the count it started with. Comparing costs a
window at the slower count, so it is done only when something may have changed: measured
with bench/threads.py, comparing on every 64-token reply cost 6-13% against the best fixed
count.
"""

from __future__ import annotations

from typing import Any

WINDOW = 6  # tokens timed with each count
MARGIN = 0.9  # fewer threads must take under this share of the full count's time
SLOWER = 0.85  # a window under this share of the winner's known speed: compare again
RECHECK = 8  # requests between comparisons while the winner keeps its speed


class ThreadTuner:
    def __init__(self, llm: Any, full: int, adapt: bool) -> None:
        self.llm, self.full = llm, max(1, full)
        self.fewer = max(1, self.full // 2)
        self.enabled = adapt and self.full > 1
        self.best = self.full  # the count that won last
        self.choices: list[int] = []  # the count each comparison kept (for stats and tests)
        self.known = 0.0  # seconds the winner took for a window, last measured
        self.since = 0  # requests since the last comparison
        self._state = "done"
        self._mark = 0.0
        self._first = 0.0
        self._trying = self.full

    def begin(self) -> None:
        """A request starts: decode with the last winner, then try the other count."""
        if not self.enabled:
            return
        self._set(self.best)
        self._state = "first"

    def saw(self, generated: int, now: float) -> None:
        """A token came (`generated` so far): time the windows and switch between them."""
        if self._state == "done":
            return
        if generated == 2:  # the first token carries the prompt: the clock starts after it
            self._mark = now
        elif generated == 2 + WINDOW and self._state == "first":
            self._first = now - self._mark
            self.since += 1
            if self.known and self._first <= self.known / SLOWER and self.since < RECHECK:
                self.known = 0.7 * self.known + 0.3 * self._first  # as fast as it was
                self._state = "done"
                return
            self._trying = self.fewer if self.best == self.full else self.full
            self._set(self._trying)
            self._mark, self._state = now, "second"
        elif generated == 2 + 2 * WINDOW and self._state == "second":
            second = now - self._mark
            on_full = self._first if self.best == self.full else second
            on_fewer = second if self.best == self.full else self._first
            self.best = self.fewer if on_fewer < MARGIN * on_full else self.full
            self.known = on_fewer if self.best == self.fewer else on_full
            self.since = 0
            self._set(self.best)
            self.choices.append(self.best)
            self._state = "done"

    def end(self) -> None:
        """A request ended, compared or not: the next one starts from the last winner."""
        if self.enabled and self._state != "done":
            self._set(self.best)
            self._state = "done"

    def _set(self, threads: int) -> None:
        import llama_cpp

        llama_cpp.llama_set_n_threads(self.llm._ctx.ctx, threads, self.full)
