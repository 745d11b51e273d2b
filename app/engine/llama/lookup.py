"""Prompt lookup: drafts for speculative decoding from the text the model already has.

A code assistant's answer copies a lot of its prompt: an edit rewrites a range mostly as it
was, an explanation quotes the code. The drafter finds the last few tokens of the sequence
(prompt + what was generated) earlier in it and proposes the tokens that followed there. It then
*follows* that source while the model agrees: after a draft is accepted, the next one continues
from the same place without searching, as a copy would; after a changed line it finds the
source again past where the copy had got to. The big model checks a draft in one batch and
keeps the longest prefix it agrees with (speculative.py), so the output is the model's own.

Whether to draft, and how long, is decided by what it costs and what it is likely to gain:
a pass over k drafted tokens costs `costs(k)` one-token passes (measured by the worker on this
machine: on 2 CPU cores a pass over 16 tokens costs ~5.2 one-token passes, one over 2 tokens
already ~1.9), and a draft of k tokens is expected to keep p(1-p^k)/(1-p) of them, p being the
acceptance learned so far for that kind of draft: following a source that agreed, or a fresh
match, by the length of the match (a long match is a copy; a 2-token one is a guess). A draft
is made only when its expected tokens per unit of cost beat plain decoding. Pure Python over
token ids: tested without a model.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

NGRAMS = (4, 3, 2)  # the longest match wins: fewer false starts than a 1-gram
# draft lengths tried: with the pending token, batches of 8, 16, 32 and 48, the sizes llama.cpp's
# CPU kernels do best (a batch of 16 took 156 ms here, one of 17 took 185 ms)
LENGTHS = (7, 15, 31, 47)
MAX_DRAFT = LENGTHS[-1]
MAX_MATCH = 64  # how far back a match is measured
# relative cost of a pass over 1 + k tokens, until the worker has measured its own (2 cores)
DEFAULT_COSTS = {1: 1.0, 8: 4.9, 16: 6.3, 32: 11.3, 48: 15.3}  # 2 cores, 1k-token context
# prior acceptance per kind of draft: (kept, rejected) pseudo-counts
PRIORS = {"follow": (9.0, 1.0), "long": (19.0, 1.0), "mid": (9.0, 1.0), "short": (1.0, 3.0)}


def default_costs(batch: int) -> float:
    return DEFAULT_COSTS.get(batch, 1.0 + 0.3 * (batch - 1))


def expected_kept(p: float, k: int) -> float:
    """Expected drafted tokens kept when each is kept with probability p, until the first
    that is not."""
    if p >= 1.0:
        return float(k)
    return p * (1 - p ** k) / (1 - p)


def _bucket(match: int) -> str:
    return "long" if match >= 12 else "mid" if match >= 6 else "short"


@dataclass
class PromptLookup:
    """Drafts from n-grams of `history` (the prompt, then each accepted token)."""

    history: list[int] = field(default_factory=list)
    costs: Callable[[int], float] = default_costs  # relative cost of a pass over n tokens
    drafted: int = 0  # totals for the stats
    accepted: int = 0
    stats: dict[str, list[float]] = field(
        default_factory=lambda: {k: list(v) for k, v in PRIORS.items()})
    _index: dict[tuple[int, ...], list[int]] = field(default_factory=dict)  # n-gram -> ends
    _source: int = -1  # where the next draft copies from, while the model follows a source
    _anchor: int = -1  # how far the copying got in the source, kept across a divergence
    _kind: str = ""  # the kind of the last draft, for learning its acceptance

    def start(self, tokens: list[int]) -> None:
        self.history = []
        self._index.clear()
        self._source = self._anchor = -1
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append tokens to the history, indexing the n-grams that end at each new one."""
        for tok in tokens:
            self.history.append(tok)
            end = len(self.history)
            for n in NGRAMS:
                if end > n:  # the n-gram ending just before `end`'s token, not the last one
                    key = tuple(self.history[end - n - 1:end - 1])
                    self._index.setdefault(key, []).append(end - 1)

    def p(self, kind: str) -> float:
        kept, missed = self.stats[kind]
        return kept / (kept + missed)

    def _length(self, kind: str, room: int) -> int:
        """The draft length that beats plain decoding by the most, or 0."""
        p, single = self.p(kind), self.costs(1)
        best, best_rate = 0, 1.05 / single  # plain decoding: one token a pass
        for k in LENGTHS:
            if k > room:
                break
            rate = (expected_kept(p, k) + 1) / self.costs(k + 1)
            if rate > best_rate:
                best, best_rate = k, rate
        return best

    def _match(self, start: int) -> int:
        """How many tokens before `start` equal the tokens before the end of the history."""
        h, n = self.history, 0
        while n < MAX_MATCH and start - 1 - n >= 0 and h[start - 1 - n] == h[-1 - n]:
            n += 1
        return n

    def draft(self, room: int) -> list[int]:
        """The tokens that may come next, if drafting them is expected to pay, or none."""
        h = self.history
        if 0 <= self._source < len(h):
            start, kind = self._source, "follow"
        else:
            start = -1
            for n in NGRAMS:
                if len(h) <= n:
                    continue
                places = self._index.get(tuple(h[-n:]))
                if places:
                    start = self._nearest(places)
                    break
            if start < 0:
                return []
            kind = _bucket(self._match(start))
        k = self._length(kind, min(room, len(h) - start))
        if k == 0:
            self._source = -1
            return []
        self._source, self._kind = start, kind
        return h[start:start + k]

    def _nearest(self, places: list[int]) -> int:
        """Where to copy from: after a divergence, the first place past where the copy had
        got to (an edit goes on copying its range after the changed line); else the latest."""
        if self._anchor >= 0:
            at = bisect_left(places, self._anchor)  # places are appended in order
            if at < len(places):
                return places[at]
        return places[-1]

    def result(self, drafted: int, accepted: int, next_token: int) -> None:
        """The model kept `accepted` of `drafted` tokens, then chose `next_token`: learn the
        acceptance of that kind of draft, and follow the source further while it agrees."""
        self.drafted += drafted
        self.accepted += accepted
        if drafted == 0:
            return
        kept, missed = self.stats[self._kind]
        decay = 0.9  # recent drafts count more: the text changes character as it goes
        self.stats[self._kind] = [kept * decay + accepted,
                                  missed * decay + (1.0 if accepted < drafted else 0.0)]
        src = self._source + accepted
        agrees = 0 <= src < len(self.history) and self.history[src] == next_token
        self._source = src + 1 if agrees else -1
        self._anchor = src + 1 if agrees else src
