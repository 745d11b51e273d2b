"""Speculative decoding in the worker: check a draft of several tokens in one pass of the model.

On a CPU, decoding one token reads every weight once; a pass over 16 tokens costs little more
(the weights are read once for all of them). So the worker asks `PromptLookup` for a draft,
evaluates the last token and the draft in one batch with logits at every position, and samples
position by position with the request's own sampler chain: while the sampled token equals the
drafted one it is kept, and the first that differs is kept too and ends the pass; the KV cells of
the rejected rest are removed. Greedy output is therefore the model's own, token for token. With
sampling, a drafted token is kept exactly when the model's sample equals it (probability p(x)),
and otherwise the sample itself is used, drawn from p without x: the standard accept/reject rule
for a deterministic draft, which keeps the model's distribution.

Only the rows of the batch have logits (llama.cpp's output buffer holds the batch's outputs),
never the whole context: llama-cpp-python's own `draft_model` hook needs `logits_all`, a
context x vocabulary array (2.5 GB for Qwen at 4k tokens), so it is not used.

The drafts come from prompt lookup (lookup.py) or a draft model (draft.py), or both: lookup
where the text copies what came before, else the draft model. `Payoff` decides, per kind of work
(chat, edit, completion) and per drafter, whether drafting pays on this machine: it times every
pass, compares tokens per second with drafts against single-token passes, and turns off what
does not gain (trying again now and then).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.engine.llama.draft import Both, Drafter, DraftModel
from app.engine.llama.grammar import GrammarGate
from app.engine.llama.lookup import default_costs
from app.engine.llama.messages import GenerateOptions
from app.engine.llama.rows import greedy, logits, penalized

MODES = ("auto", "off", "lookup", "draft")
RETRY_EVERY = 8  # requests of a kind run plain before lookup is tried again


@dataclass
class Meter:
    """Time spent in passes with and without a draft, this request."""

    single_s: float = 0.0
    single_n: int = 0
    spec_s: dict[str, float] = field(default_factory=dict)  # per drafter: "lookup", "model"
    spec_tokens: dict[str, int] = field(default_factory=dict)  # made by passes with a draft

    def spec(self, who: str, spent: float, tokens: int) -> None:
        self.spec_s[who] = self.spec_s.get(who, 0.0) + spent
        self.spec_tokens[who] = self.spec_tokens.get(who, 0) + tokens


def who(drafter: Drafter) -> str:
    """Which drafter made the last draft: "lookup" or "model"."""
    if isinstance(drafter, Both):
        return drafter.last
    return "model" if isinstance(drafter, DraftModel) else "lookup"



@dataclass
class CostTable:
    """What a pass over n tokens costs on this machine, measured pass by pass (seconds,
    averaged), as a multiple of a one-token pass: the drafter's price list."""

    seconds: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)

    def record(self, batch: int, spent: float) -> None:
        old = self.seconds.get(batch)
        self.seconds[batch] = spent if old is None else 0.8 * old + 0.2 * spent
        self.counts[batch] = self.counts.get(batch, 0) + 1

    def relative(self, batch: int) -> float:
        if self.counts.get(1, 0) >= 4 and self.counts.get(batch, 0) >= 2:
            return self.seconds[batch] / self.seconds[1]
        return default_costs(batch)


def _eval_all(llm: Any, batch: list[int]) -> None:
    """Evaluate `batch` after the cached tokens, with logits for each of its positions."""
    n_past = llm.n_tokens
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past:n_past + len(batch)] = batch
    llm.n_tokens += len(batch)
    llm._requires_eval = False


def decode(llm: Any, pending: int, opts: GenerateOptions, lookup: Drafter | None,
           n_ctx: int, meter: Meter | None = None,
           costs: CostTable | None = None, grammar: Any = None,
           inject: Callable[[int], list[int]] | None = None, plain: int = 0) -> Iterator[int]:
    """The tokens the model generates after the cached prompt and `pending` (its last token,
    not yet evaluated), checking `lookup`'s drafts when given. With a `grammar` each token is
    the one the grammar allows (greedy: checked through `GrammarGate`, the winner first; else
    the sampler chain holds the grammar); a drafted token is kept only where the grammar
    allows it and the model chose it. The first `plain` passes draft nothing: they measure
    plain decoding, which a reply's speed-up is told against."""
    temp, penalty = opts.temperature, opts.repeat_penalty
    gate = GrammarGate(llm, grammar) if grammar is not None and temp == 0.0 else None
    sampler = llm._init_sampler(top_k=opts.top_k, top_p=opts.top_p, min_p=0.0, temp=temp,
                                repeat_penalty=penalty,
                                grammar=grammar if gate is None else None)
    try:
        yield from _decode(llm, pending, lookup, n_ctx, meter, costs, sampler, gate, temp,
                           penalty, inject, plain)
    finally:
        if gate is not None:
            gate.close()


def _decode(llm: Any, pending: int, lookup: Drafter | None, n_ctx: int,
            meter: Meter | None, costs: CostTable | None, sampler: Any,
            gate: GrammarGate | None, temp: float, penalty: float,
            inject: Callable[[int], list[int]] | None = None, plain: int = 0) -> Iterator[int]:
    window = int(getattr(llm, "last_n_tokens_size", 64))  # the penalty's look-back
    recent: list[int] = []  # the tokens chosen so far: what the penalty sees
    meter = meter if meter is not None else Meter()
    while True:
        room = n_ctx - llm.n_tokens - 2
        t0 = time.perf_counter()  # a draft's own time counts against it (a draft model's)
        draft = lookup.draft(room) if lookup is not None and plain <= 0 else []
        plain -= 1  # the first `plain` passes measure plain decoding, for the speed-up
        batch = [pending, *draft]
        t_pass = time.perf_counter()
        _eval_all(llm, batch)
        kept: list[int] = []
        token = pending
        for j in range(len(batch)):
            if gate is not None:  # greedy, held to the grammar
                token = gate.choose(penalized(logits(llm, j - len(batch)), recent[-window:],
                                              penalty))
            elif temp == 0.0:
                token = greedy(logits(llm, j - len(batch)), recent[-window:], penalty)
            else:
                token = sampler.sample(llm._ctx, j - len(batch))
            recent.append(token)
            if j < len(draft) and token == draft[j]:
                kept.append(token)
                continue
            break
        done = time.perf_counter()
        spent = done - t0
        if costs is not None:
            costs.record(len(batch), done - t_pass)
        if draft and lookup is not None:
            meter.spec(who(lookup), spent, len(kept) + 1)
        else:
            meter.single_s += spent
            meter.single_n += 1
        rejected = len(draft) - len(kept)
        if rejected:
            llm.n_tokens -= rejected
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        if lookup is not None:
            lookup.extend([*kept, token])
            lookup.result(len(draft), len(kept), token)
        yield from kept
        yield token
        pending = token
        forced = inject(token) if inject is not None else []
        if forced:  # tokens the caller puts after this one (a thinking block closed)
            _eval_all(llm, [token, *forced[:-1]])
            recent.extend(forced)
            if lookup is not None:
                lookup.extend(forced)
            pending = forced[-1]


@dataclass
class Payoff:
    """Which drafters pay, per kind of work, from what they gained in this worker so far."""

    gains: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, drafter) -> gain
    costs: CostTable = field(default_factory=CostTable)
    single_tps: float = 0.0  # tokens per second of single-token passes, this model, this machine
    plain_since: dict[tuple[str, str], int] = field(default_factory=dict)  # requests since off

    def drafters(self, mode: str, kind: str, has_model: bool) -> tuple[bool, bool]:
        """(prompt lookup, draft model) for a request of `kind` under `[params] speculative`:
        "lookup" and "draft" force one, "off" neither, "auto" what pays here (or is not yet
        measured: the draft model then drafts only where its prices say it may pay)."""
        if mode in ("lookup", "draft"):
            return mode == "lookup", mode == "draft" and has_model
        if mode != "auto":
            return False, False
        return self._pays(kind, "lookup"), has_model and self._pays(kind, "model")

    def _pays(self, kind: str, drafter: str) -> bool:
        key = (kind, drafter)
        gain = self.gains.get(key)
        if gain is None or gain >= 0.97:
            return True
        waited = self.plain_since.get(key, 0) + 1
        self.plain_since[key] = waited
        if waited >= RETRY_EVERY:  # the work may have changed: measure again
            self.plain_since[key] = 0
            self.gains.pop(key, None)
            return True
        return False

    def record(self, kind: str, meter: Meter) -> None:
        """Fold one request's passes in: the single-pass speed, and each drafter's gain."""
        if meter.single_n >= 4 and meter.single_s > 0:
            tps = meter.single_n / meter.single_s
            self.single_tps = tps if not self.single_tps else 0.7 * self.single_tps + 0.3 * tps
        for drafter, tokens in meter.spec_tokens.items():
            spent = meter.spec_s.get(drafter, 0.0)
            if not (self.single_tps and tokens >= 8 and spent > 0):
                continue
            gain = tokens / spent / self.single_tps
            old = self.gains.get((kind, drafter))
            self.gains[(kind, drafter)] = gain if old is None else 0.5 * old + 0.5 * gain

    def speedup(self, decode_tps: float) -> float:
        """A reply's decode speed against single-token passes (0: not yet measured)."""
        return decode_tps / self.single_tps if self.single_tps and decode_tps else 0.0
