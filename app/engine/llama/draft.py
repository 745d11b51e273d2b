"""A draft model for speculative decoding: a small model of the same vocabulary guesses the next
few tokens, and the big model checks them in one pass (speculative.py).

The draft model lives in the same worker with its own context and KV cache. Its cache follows
the accepted tokens: before each draft it finds how much of the sequence (prompt, then every
token the big model kept) it has already evaluated, removes the cells past that (the rejected
guesses) and evaluates the rest in one batch, so the prompt is evaluated once and a long chat
only evaluates what is new. Nothing is evaluated until a draft is wanted: a request where
drafting does not pay costs the draft model nothing.

The draft is greedy, and stops early where the draft model itself is unsure (its top token below
`P_MIN`): a deterministic draft, so the big model's accept rule (keep a drafted token exactly
when its own choice equals it) keeps the big model's distribution. Its length is priced like
prompt lookup's: k draft steps (each `step_cost` one-token passes of the big model, measured
here) plus one pass over k + 1 tokens, against the expected tokens kept at the acceptance
measured so far. On a machine where that never beats plain decoding, auto never drafts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.engine.llama.lookup import PromptLookup, default_costs, expected_kept
from app.engine.llama.rows import logits
from app.engine.llama.tokens import PROMPT_CHUNK, common_prefix

P_MIN = 0.6  # the draft stops where the draft model's own top token is less likely than this
LENGTHS = (1, 2, 3, 4, 5, 7, 11, 15)  # draft lengths weighed; with the pending token, the
# batches of 8 and 16 are the sizes llama.cpp's CPU kernels do best
PRIOR = (7.0, 3.0)  # acceptance per drafted token before any is measured: (kept, rejected)
VOCAB_SLACK = 128  # vocabularies may differ by this many trailing tokens (llama.cpp's rule)


class Drafter(Protocol):
    @property
    def drafted(self) -> int: ...
    @property
    def accepted(self) -> int: ...

    def start(self, tokens: list[int]) -> None: ...
    def extend(self, tokens: list[int]) -> None: ...
    def draft(self, room: int) -> list[int]: ...
    def result(self, drafted: int, accepted: int, next_token: int) -> None: ...


def top_choice(row: Any) -> tuple[int, float]:
    """The most likely token of a logits row, and its probability."""
    import numpy as np

    best = int(np.argmax(row))
    top = row[best]
    return best, float(1.0 / np.sum(np.exp(row - top)))


@dataclass
class DraftModel:
    """Greedy drafts from a small model, priced against the big model's passes."""

    llm: Any  # the draft model's llama_cpp.Llama
    costs: Callable[[int], float] = default_costs  # the big model's pass over n tokens
    step_cost: float = 0.5  # a draft step, in the big model's one-token passes (measured)
    force: bool = False  # speculative = "draft": draft even where the prices say it loses
    history: list[int] = field(default_factory=list)
    drafted: int = 0
    accepted: int = 0
    stats: list[float] = field(default_factory=lambda: list(PRIOR))
    step_s: float = 0.0  # seconds per draft step, measured

    @property
    def p(self) -> float:
        kept, missed = self.stats
        return kept / (kept + missed)

    def start(self, tokens: list[int]) -> None:
        self.history = list(tokens)

    def extend(self, tokens: list[int]) -> None:
        self.history.extend(tokens)

    def length(self, room: int) -> int:
        """The draft length that beats plain decoding by the most (0: none does), or, forced,
        the best there is."""
        p, best, best_rate = self.p, 0, 1.05 / self.costs(1)
        if self.force:
            best, best_rate = 1, 0.0
        for k in LENGTHS:
            if k > room:
                break
            rate = (expected_kept(p, k) + 1) / (self.costs(k + 1) + k * self.step_cost)
            if rate > best_rate:
                best, best_rate = k, rate
        return best

    def draft(self, room: int) -> list[int]:
        k = self.length(room)
        if k <= 0 or not self.history:
            return []
        llm = self.llm
        self._catch_up()
        t0 = time.perf_counter()
        out: list[int] = []
        for i in range(k):
            token, prob = top_choice(logits(llm, -1))
            if i and prob < P_MIN:
                break
            out.append(token)
            if i + 1 < k:
                llm.eval([token])
        steps = max(1, len(out) - 1)
        spent = (time.perf_counter() - t0) / steps
        self.step_s = spent if not self.step_s else 0.8 * self.step_s + 0.2 * spent
        return out

    def _catch_up(self) -> None:
        """Evaluate what the draft model has not yet seen of the history (at least its last
        token, for the next logits), after removing the cells of rejected guesses."""
        llm, h = self.llm, self.history
        have = llm.input_ids[: llm.n_tokens].tolist()
        keep = min(common_prefix(have, h), len(h) - 1)
        llm.n_tokens = keep
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        for i in range(keep, len(h), PROMPT_CHUNK):  # as the fit verdict counts
            llm.eval(h[i:i + PROMPT_CHUNK])

    def result(self, drafted: int, accepted: int, next_token: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if drafted:
            kept, missed = self.stats
            decay = 0.95
            self.stats[:] = [kept * decay + accepted,  # in place: the worker keeps it per kind
                             missed * decay + (1.0 if accepted < drafted else 0.0)]


@dataclass
class Both:
    """Prompt lookup where the text copies what came before, else the draft model."""

    lookup: PromptLookup
    model: DraftModel
    last: str = ""  # who drafted last: "lookup", "model" or ""

    @property
    def drafted(self) -> int:
        return self.lookup.drafted + self.model.drafted

    @property
    def accepted(self) -> int:
        return self.lookup.accepted + self.model.accepted

    def start(self, tokens: list[int]) -> None:
        self.lookup.start(tokens)
        self.model.start(tokens)

    def extend(self, tokens: list[int]) -> None:
        self.lookup.extend(tokens)
        self.model.extend(tokens)

    def draft(self, room: int) -> list[int]:
        out = self.lookup.draft(room)
        self.last = "lookup" if out else ""
        if not out:
            out = self.model.draft(room)
            self.last = "model" if out else ""
        return out

    def result(self, drafted: int, accepted: int, next_token: int) -> None:
        by_model = self.last == "model"
        self.lookup.result(0 if by_model else drafted, 0 if by_model else accepted, next_token)
        if by_model:
            self.model.result(drafted, accepted, next_token)


def make_drafter(costs: Callable[[int], float], draft_llm: Any, lookup: bool, step_cost: float,
                 acceptance: list[float], force: bool) -> Drafter | None:
    """Prompt lookup, the draft model (`draft_llm`, when given), both, or none."""
    looks = PromptLookup(costs=costs) if lookup else None
    model = DraftModel(draft_llm, costs, step_cost, force=force, stats=acceptance) \
        if draft_llm is not None else None
    if looks is not None and model is not None:
        return Both(looks, model)
    return looks or model


def model_of(drafter: Drafter | None) -> DraftModel | None:
    if isinstance(drafter, Both):
        return drafter.model
    return drafter if isinstance(drafter, DraftModel) else None


def words(drafter: Drafter | None) -> str:
    """Who drafted, for the stats: "" when nothing was drafted."""
    if drafter is None or not drafter.drafted:
        return ""
    if isinstance(drafter, Both):
        parts = [name for name, d in (("lookup", drafter.lookup), ("draft model", drafter.model))
                 if d.drafted]
        return " + ".join(parts)
    return "draft model" if isinstance(drafter, DraftModel) else "lookup"


def vocab_mismatch(target: Any, draft: Any) -> str:
    """Why `draft` (a loaded Llama) cannot draft for `target`, or "" when it can: the same
    special tokens and the same token texts, within `VOCAB_SLACK` trailing tokens."""
    n_t, n_d = target.n_vocab(), draft.n_vocab()
    if abs(n_t - n_d) > VOCAB_SLACK:
        return f"vocabularies of {n_t:,} and {n_d:,} tokens"
    if (target.token_bos(), target.token_eos()) != (draft.token_bos(), draft.token_eos()):
        return "different start and end tokens"
    for tok in range(5, min(n_t, n_d), 997):  # a sample: the headers were compared in full
        if target.detokenize([tok]) != draft.detokenize([tok]):
            return f"token {tok} differs"
    return ""


def load_draft(path: str, target: Any, threads: int, gpu_layers: int) -> Any:
    """The draft model at `path`, with a context as long as the target's; ValueError with the
    reason when it cannot draft for `target`."""
    import llama_cpp

    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=target.n_ctx(), n_threads=threads,
                              n_gpu_layers=-1 if gpu_layers else 0, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ValueError(f"llama.cpp could not load the draft model {path}: {exc}") from exc
    why = vocab_mismatch(target, llm)
    if why:
        raise ValueError(f"The draft model {path} does not share the model's vocabulary ({why}).")
    return llm
