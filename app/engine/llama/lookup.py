"""Prompt lookup: drafts for speculative decoding from the text the model already has.

A code assistant's answer copies a lot of its prompt: an edit rewrites a range mostly as it
was, an explanation quotes the code. The drafter finds the last few tokens of the sequence
(prompt + what was generated) earlier in it and proposes the tokens that followed there. It then
*follows* that source while the model agrees: after a draft is accepted, the next one continues
from the same place without searching, as a copy would. The big model checks a draft in one
batch and keeps the longest prefix it agrees with (worker.py), so the output is the one it
would have written alone.

The draft length adapts, as llama.cpp's speculative decoding does: it grows while whole drafts
are accepted and shrinks when they are cut short, between MIN_DRAFT and MAX_DRAFT tokens.
Pure Python over token ids: tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NGRAMS = (4, 3, 2)  # the longest match wins: fewer false starts than a 1-gram
MIN_DRAFT, MAX_DRAFT = 4, 32


@dataclass
class PromptLookup:
    """Drafts from n-grams of `history` (the prompt, then each accepted token)."""

    history: list[int] = field(default_factory=list)
    length: int = 12  # the next draft's length
    drafted: int = 0  # totals for the stats
    accepted: int = 0
    _index: dict[tuple[int, ...], int] = field(default_factory=dict)  # n-gram -> its end
    _source: int = -1  # where the last draft was copied from, while the model follows it

    def start(self, tokens: list[int]) -> None:
        self.history = []
        self._index.clear()
        self._source = -1
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
                    self._index[key] = end - 1

    def draft(self, room: int) -> list[int]:
        """Up to `length` tokens (at most `room`) that may come next, or none."""
        limit = min(self.length, room)
        if limit <= 0:
            return []
        h = self.history
        start = self._source
        if start < 0 or start >= len(h):
            start = -1
            for n in NGRAMS:
                if len(h) <= n:
                    continue
                pos = self._index.get(tuple(h[-n:]), -1)
                if pos >= 0:
                    start = pos
                    break
        if start < 0:
            return []
        self._source = start
        return h[start:start + limit]

    def result(self, drafted: int, accepted: int, next_token: int) -> None:
        """The model kept `accepted` of `drafted` tokens, then chose `next_token`: follow the
        source further while it agrees, and adapt the length."""
        self.drafted += drafted
        self.accepted += accepted
        if drafted == 0:
            return
        src = self._source + accepted
        agrees = 0 <= src < len(self.history) and self.history[src] == next_token
        self._source = src + 1 if agrees else -1
        if accepted == drafted:
            self.length = min(MAX_DRAFT, self.length * 2)
        elif accepted < drafted // 2:
            self.length = max(MIN_DRAFT, self.length // 2)

    @property
    def rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0
