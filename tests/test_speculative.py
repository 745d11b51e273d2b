"""Speculative decoding with prompt lookup: the drafter on token ids, the payoff rule, and on a
real model (SmolLM2 through llama.cpp, in this process) that the output is the model's own:
greedy output equal to plain decoding wherever the model's choice is not a near-tie, and
sampled output with the same distribution."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from app.engine.llama.lookup import LENGTHS, PromptLookup, expected_kept
from app.engine.llama.messages import GenerateOptions
from app.engine.llama.speculative import RETRY_EVERY, Meter, Payoff

SOURCE = list(range(100, 160))  # a range of 60 tokens, copied by the answer


def test_lookup_drafts_a_long_copy_but_not_a_guess() -> None:
    lk = PromptLookup()
    lk.start([1, *SOURCE, 2, *SOURCE[:20]])  # the answer has copied 20 tokens so far
    draft = lk.draft(1000)
    assert draft[:8] == SOURCE[20:28] and len(draft) in LENGTHS
    guess = PromptLookup()
    guess.start([5, 6, 7, 8, 9, 1, 2, 7, 8])  # a 2-token match: not worth a pass's price
    assert guess.draft(1000) == []
    assert lk.draft(3) == []  # never past the room left in the context


def test_lookup_follows_its_source_and_learns_acceptance() -> None:
    lk = PromptLookup()
    lk.start([1, *SOURCE, 2, *SOURCE[:20]])
    first = lk.draft(1000)
    lk.extend([*first, SOURCE[20 + len(first)]])
    lk.result(len(first), len(first), SOURCE[20 + len(first)])  # kept, and on it goes
    follow = lk.draft(1000)
    assert follow[0] == SOURCE[21 + len(first)]  # no search: the copy goes on
    before = lk.p("follow")
    lk.extend([follow[0], 999])
    lk.result(len(follow), 1, 999)  # the output diverges (a changed line)
    assert lk.p("follow") < before
    assert lk.draft(1000) == []  # nothing ever followed ...999
    assert lk.drafted == len(first) + len(follow) and lk.accepted == len(first) + 1


def test_lookup_resyncs_past_the_changed_line() -> None:
    lk = PromptLookup()
    lk.start([1, *SOURCE, 2, *SOURCE[:20]])
    draft = lk.draft(1000)
    lk.extend([*draft[:5], 777])  # a changed token
    lk.result(len(draft), 5, 777)
    lk.extend(SOURCE[26:40])  # then the answer goes on as the source did
    again = lk.draft(1000)
    assert again[:4] == SOURCE[40:44]  # found again, past where the copy got to


def test_draft_length_follows_the_price_of_a_pass() -> None:
    cheap = PromptLookup(costs=lambda n: 1.0 + 0.05 * (n - 1))  # a GPU: batches nearly free
    dear = PromptLookup(costs=lambda n: float(n))  # a pass costs as much as n single ones
    for lk in (cheap, dear):
        lk.start([1, *SOURCE, 2, *SOURCE[:20]])
    assert len(cheap.draft(1000)) >= 15
    assert dear.draft(1000) == []
    assert expected_kept(0.5, 8) < 1 < expected_kept(0.9, 8) < 8


def test_payoff_turns_lookup_off_where_it_does_not_pay_and_retries() -> None:
    pays = Payoff()

    def wants_lookup(mode: str, kind: str) -> bool:
        return pays.drafters(mode, kind, has_model=False)[0]

    assert wants_lookup("auto", "chat") and not wants_lookup("off", "chat")
    assert wants_lookup("lookup", "edit")
    pays.record("chat", Meter(single_s=1.0, single_n=10))  # 10 tok/s alone
    pays.record("chat", Meter(single_s=1.0, single_n=10, spec_s={"lookup": 2.0},
                              spec_tokens={"lookup": 12}))
    assert pays.gains["chat", "lookup"] == pytest.approx(0.6)
    assert not wants_lookup("auto", "chat")
    pays.record("edit", Meter(spec_s={"lookup": 1.0}, spec_tokens={"lookup": 40}))  # 4x
    assert wants_lookup("auto", "edit")
    tries = [wants_lookup("auto", "chat") for _ in range(RETRY_EVERY - 1)]
    assert tries[-1] and not any(tries[:-1])  # measured again after a while


def test_payoff_weighs_the_draft_model_apart_from_lookup() -> None:
    pays = Payoff()
    assert pays.drafters("auto", "chat", has_model=True) == (True, True)
    assert pays.drafters("auto", "chat", has_model=False) == (True, False)
    assert pays.drafters("draft", "chat", has_model=True) == (False, True)
    assert pays.drafters("lookup", "chat", has_model=True) == (True, False)
    pays.record("chat", Meter(single_s=1.0, single_n=10, spec_s={"lookup": 1.0, "model": 2.0},
                              spec_tokens={"lookup": 20, "model": 10}))
    assert pays.gains["chat", "model"] == pytest.approx(0.5)
    assert pays.drafters("auto", "chat", has_model=True) == (True, False)  # lookup pays (2x)
    assert pays.speedup(25.0) == pytest.approx(2.5)


def test_the_draft_model_drafts_only_where_its_price_pays() -> None:
    """A draft of k tokens costs k draft steps and a pass over k + 1: where a step of the draft
    model costs half a pass of the big one and batches cost what their tokens do (this CPU), no
    length pays; where batches are nearly free (a GPU) long drafts do. Forced, it drafts."""
    from app.engine.llama.draft import DraftModel

    cpu = DraftModel(llm=None, costs=lambda n: 1.0 + 0.3 * (n - 1), step_cost=0.55)
    gpu = DraftModel(llm=None, costs=lambda n: 1.0 + 0.02 * (n - 1), step_cost=0.1)
    assert cpu.length(100) == 0
    assert gpu.length(100) >= 4
    assert gpu.length(3) <= 3
    assert DraftModel(llm=None, costs=cpu.costs, step_cost=0.55, force=True).length(100) >= 1


# -- on a real model ------------------------------------------------------------------------

PROMPTS_SOURCE = """def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()
"""


def _prompts(n: int) -> Iterator[str]:
    lines = PROMPTS_SOURCE.splitlines()
    asks = ["Rewrite this code with type hints", "Rename the variables in this code",
            "Repeat this code exactly", "Explain this code"]
    for i in range(n):
        start = i % 8
        piece = "\n".join(lines[start:start + 8])
        yield (f"<|im_start|>user\n{asks[i % len(asks)]} (#{i}):\n```python\n{piece}\n```"
               "<|im_end|>\n<|im_start|>assistant\n```python\n")


def agreement(run: Callable[[str, bool], tuple[list[int], list[float], Any]],
              prompts: Iterable[str]) -> tuple[int, int, int]:
    """Each prompt decoded plainly and with speculation (`run(prompt, speculate)`): how many
    outputs are the same token for token, and the tokens drafted and kept. Where they differ,
    the first difference must be at a near-tie of plain decoding (margin under 1 logit)."""
    same = drafted = accepted = 0
    for prompt in prompts:
        plain, margins, _ = run(prompt, False)
        spec, _, drafter = run(prompt, True)
        assert drafter is not None
        drafted, accepted = drafted + drafter.drafted, accepted + drafter.accepted
        first = next((i for i, (a, b) in enumerate(zip(plain, spec, strict=True)) if a != b),
                     None)
        if first is None:
            same += 1
        else:
            assert margins[first] < 1.0, (prompt, first, margins[first])
    return same, drafted, accepted


def sampled(run: Callable[[bool, int], tuple[list[int], list[float], Any]], samples: int,
            at: int) -> tuple[dict[bool, Counter[int]], float, int]:
    """The token at position `at` over `samples` seeds, plain and with speculation
    (`run(speculate, seed)`): the counts of each, their total variation, and the drafted
    tokens kept."""
    counts: dict[bool, Counter[int]] = {}
    kept = 0
    for speculate in (False, True):
        seen: Counter[int] = Counter()
        for seed in range(samples):
            out, _, drafter = run(speculate, seed + 1)
            seen[out[at]] += 1
            kept += drafter.accepted if drafter is not None else 0
        counts[speculate] = seen
    keys = set(counts[False]) | set(counts[True])
    tv = sum(abs(counts[False][k] - counts[True][k]) for k in keys) / (2 * samples)
    return counts, tv, kept


@pytest.fixture(scope="module")
def llm(smollm2: Any) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(smollm2), n_ctx=1024, n_threads=2, verbose=False,
                           seed=1)


def decoded(llm: Any, prompt: str, drafter: Any, n: int, temp: float = 0.0,
            seed: int = 1) -> tuple[list[int], list[float]]:
    """`n` tokens after `prompt` (its start reused from the cache, as the worker does), with
    `drafter`'s drafts checked, or plainly with None: then also each choice's margin."""
    from app.engine.llama.rows import logits, margin
    from app.engine.llama.speculative import decode
    from app.engine.llama.tokens import common_prefix

    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    cached = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens[:-1])
    llm.n_tokens = cached
    llm._ctx.kv_cache_seq_rm(-1, cached, -1)
    llm.eval(tokens[cached:-1])
    llm.set_seed(seed)
    if drafter is not None:
        drafter.start(tokens)
    opts = GenerateOptions(max_tokens=1024, temperature=temp, top_p=1.0, top_k=40,
                           repeat_penalty=1.0, seed=seed)
    out: list[int] = []
    margins: list[float] = []
    steps = decode(llm, tokens[-1], opts, drafter, 1024)
    for token in steps:
        if drafter is None:  # plain decoding: how clear each choice was
            margins.append(margin(logits(llm, -1), [], 1.0))
        out.append(token)
        if len(out) >= n:
            break
    steps.close()
    return out, margins


def _run(llm: Any, prompt: str, lookup: bool, n: int, temp: float = 0.0,
         seed: int = 1) -> tuple[list[int], list[float], PromptLookup | None]:
    # drafts whatever it finds (as on a machine where a batch costs what one token does): the
    # point here is the check of drafts, not the choice of when to make them
    lk = PromptLookup(costs=lambda n: 1.0) if lookup else None
    out, margins = decoded(llm, prompt, lk, n, temp, seed)
    return out, margins, lk


@pytest.mark.model
def test_greedy_output_is_the_models_own(llm: Any) -> None:
    """100 prompts: speculation drafts and keeps many tokens, and its output equals plain
    decoding token for token, except after a near-tie. llama.cpp's CPU kernels are not
    batch-invariant (a row's logits move by up to ~0.7 between a one-token pass and a batch),
    so where two tokens are within a hair of each other either may come out."""
    same, drafted, accepted = agreement(lambda p, spec: _run(llm, p, spec, n=32), _prompts(100))
    assert accepted >= 500, (drafted, accepted)  # many drafted tokens checked and kept
    assert same >= 60, same


@pytest.mark.model
def test_sampled_output_keeps_the_distribution(llm: Any) -> None:
    """With temperature 1, the second token (checked from a batch row when a draft exists)
    is distributed as without speculation: total variation under 0.15 over 300 samples."""
    prompt = next(_prompts(3))
    counts, tv, kept = sampled(
        lambda spec, seed: _run(llm, prompt, lookup=spec, n=2, temp=1.0, seed=seed), 300, 1)
    assert kept > 0  # drafts were checked and kept
    assert tv < 0.15, (tv, counts)


@pytest.mark.model
def test_the_greedy_pick_is_llama_cpps(llm: Any) -> None:
    """The worker's greedy choice (numpy, repetition penalty included) equals llama.cpp's
    penalties + greedy sampler chain on every row of a real pass."""
    from app.engine.llama.rows import greedy, logits

    tokens = llm.tokenize(PROMPTS_SOURCE.encode(), add_bos=False)
    llm.n_tokens = 0
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.eval(tokens[:-32])
    llm._batch.set_batch(batch=tokens[-32:], n_past=llm.n_tokens, logits_all=True)
    llm._ctx.decode(llm._batch)
    sampler = llm._init_sampler(top_k=40, top_p=0.95, min_p=0.0, temp=0.0, repeat_penalty=1.3)
    recent: list[int] = []
    for j in range(32):
        theirs = sampler.sample(llm._ctx, j - 32)
        assert greedy(logits(llm, j - 32), recent[-64:], 1.3) == theirs, j
        recent.append(theirs)
