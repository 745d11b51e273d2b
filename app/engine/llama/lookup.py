"""Prompt lookup: drafts for speculative decoding from the text the model already has.

A code assistant's answer copies a lot of its prompt: an edit rewrites a range mostly as it
was, an explanation quotes the code. The drafter finds the last few tokens of the sequence
(prompt + what was generated) earlier in it and proposes the tokens that followed there. It then
*follows* that source while the model agrees: after a draft is accepted, the next one continues
from the same place without searching, as a copy would. The big model checks a draft in one
batch and keeps the longest prefix it agrees with (worker.py), so the output is the one it
would have written alone.

The draft length adapts: a draft from a fresh search is a short probe (PROBE tokens), and it
doubles while the model keeps following the same source, up to MAX_DRAFT; a probe the model
rejects outright makes the drafter wait before the next search (1, 2, 4 ... up to MAX_WAIT
tokens), so text that copies nothing (an explanation in the model's own words) costs little
more than plain decoding. Pure Python over token ids: tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NGRAMS = (4, 3, 2)  # the longest match wins: fewer false starts than a 1-gram
PROBE, MAX_DRAFT = 3, 32
MAX_WAIT = 16


@dataclass
class PromptLookup:
    """Drafts from n-grams of `history` (the prompt, then each accepted token)."""

    history: list[int] = field(default_factory=list)
    length: int = PROBE  # the next draft's length
    drafted: int = 0  # totals for the stats
    accepted: int = 0
    _index: dict[tuple[int, ...], list[int]] = field(default_factory=dict)  # n-gram -> ends
    _source: int = -1  # where the last draft was copied from, while the model follows it
    _anchor: int = -1  # how far the copying got in the source, kept across a divergence
    _misses: int = 0  # probes rejected in a row
    _wait: int = 0  # tokens to go before the next search

    def start(self, tokens: list[int]) -> None:
        self.history = []
        self._index.clear()
        self._source = self._anchor = -1
        self.length, self._misses, self._wait = PROBE, 0, 0
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append tokens to the history, indexing the n-grams that end at each new one
        (the index keeps the latest place an n-gram ended)."""
        for tok in tokens:
            self.history.append(tok)
            end = len(self.history)
            for n in NGRAMS:
                if end > n:  # the n-gram ending just before `end`'s token, not the last one
                    key = tuple(self.history[end - n - 1:end - 1])
                    self._index.setdefault(key, []).append(end - 1)

    def draft(self, room: int) -> list[int]:
        """Up to `length` tokens (at most `room`) that may come next, or none."""
        limit = min(self.length, room)
        if limit <= 0:
            return []
        h = self.history
        start = self._source
        if start < 0 or start >= len(h):
            if self._wait > 0:
                self._wait -= 1
                return []
            start = -1
            self.length = PROBE
            for n in NGRAMS:
                if len(h) <= n:
                    continue
                places = self._index.get(tuple(h[-n:]))
                if places:
                    start = self._nearest(places)
                    break
        if start < 0:
            return []
        self._source = start
        return h[start:start + limit]

    def _nearest(self, places: list[int]) -> int:
        """Where to copy from: after a divergence, the first place past where the copy had
        got to (an edit goes on copying its range after the changed line); else the latest."""
        if self._anchor >= 0:
            ahead = [p for p in places if p >= self._anchor]
            if ahead:
                return ahead[0]
        return places[-1]

    def result(self, drafted: int, accepted: int, next_token: int) -> None:
        """The model kept `accepted` of `drafted` tokens, then chose `next_token`: follow the
        source further while it agrees (longer drafts), wait after a rejected probe."""
        self.drafted += drafted
        self.accepted += accepted
        if drafted == 0:
            return
        src = self._source + accepted
        agrees = 0 <= src < len(self.history) and self.history[src] == next_token
        self._source = src + 1 if agrees else -1
        self._anchor = src + 1 if agrees else src
        if accepted == 0:
            self._misses += 1
            self._wait = min(MAX_WAIT, 2 ** (self._misses - 1))
        else:
            self._misses = 0
        if agrees and accepted == drafted:
            self.length = min(MAX_DRAFT, self.length * 2)
        elif agrees:
            self.length = max(PROBE, self.length)

    @property
    def rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0
