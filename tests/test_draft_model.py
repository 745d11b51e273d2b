"""Speculative decoding with a draft model: the Qwen2.5-Coder 0.5B starter drafts for the 1.5B
in the same process, with its own KV cache. Greedy output is the big model's own (but at a
near-tie, as with lookup: llama.cpp's CPU kernels are not batch-invariant), sampled output keeps
the big model's distribution, and a drafted token is kept as often as the big model would pick
it. The vocabulary check reads both GGUF headers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.engine.llama.draft import DraftModel
from app.models.local import LocalModel
from app.session import drafting
from tests.test_speculative import _prompts, agreement, decoded, sampled

pytestmark = pytest.mark.qwen


def _local(path: Path) -> LocalModel:
    return LocalModel(path.stem, path, "path")


def test_the_small_qwen_shares_the_vocabulary_and_smollm2_does_not(
        qwen_file: Path, qwen_small_file: Path, smollm2: Path) -> None:
    big, small = drafting.header(_local(qwen_file)), drafting.header(_local(qwen_small_file))
    assert len(big.tokens) == len(small.tokens) == 151_936
    assert drafting.mismatch(big, small) == ""
    assert drafting.mismatch(big, drafting.header(_local(smollm2))) != ""
    # Qwen 7B pads its vocabulary to 152,064 tokens
    padded = replace(small, tokens=[*small.tokens, *(f"[PAD{i}]" for i in range(151_936, 152_064))])
    assert drafting.mismatch(padded, small) == ""
    padded.tokens[1000] = "other"
    assert "token 1000" in drafting.mismatch(padded, small)


@pytest.fixture(scope="module")
def pair(qwen_file: Path, qwen_small_file: Path) -> tuple[Any, Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    big = llama_cpp.Llama(model_path=str(qwen_file), n_ctx=1024, n_threads=2, verbose=False)
    small = llama_cpp.Llama(model_path=str(qwen_small_file), n_ctx=1024, n_threads=2,
                            verbose=False)
    return big, small


def _run(pair: tuple[Any, Any], prompt: str, draft: bool, n: int, temp: float = 0.0,
         seed: int = 1) -> tuple[list[int], list[float], DraftModel | None]:
    llm, small = pair
    # forced: the point is the check of drafts, not whether they pay on this machine
    model = DraftModel(small, step_cost=0.5, force=True) if draft else None
    out, margins = decoded(llm, prompt, model, n, temp, seed)
    return out, margins, model


def test_greedy_output_with_a_draft_model_is_the_big_models_own(pair: tuple[Any, Any]) -> None:
    same, drafted, accepted = agreement(lambda p, spec: _run(pair, p, spec, n=24), _prompts(24))
    assert accepted >= 200 and accepted < drafted, (drafted, accepted)  # kept and rejected
    assert same >= 14, same


def test_a_drafted_token_is_kept_as_often_as_the_big_model_picks_it(
        pair: tuple[Any, Any]) -> None:
    """Temperature 1: the first token is distributed as without a draft (total variation under
    0.15 over 200 samples each), and the draft's guess is kept in the share of samples the big
    model's own distribution gives it."""
    import numpy as np

    from app.engine.llama.rows import logits

    prompt = next(_prompts(1))
    llm, small = pair
    _run(pair, prompt, draft=False, n=1)
    row = np.array(logits(llm, -1), dtype=np.float64)  # the first token's distribution
    top = np.argsort(row)[-40:]  # the sampler's top-k 40, temperature 1
    probs = np.exp(row[top] - row[top].max())
    p_of = dict(zip(top.tolist(), (probs / probs.sum()).tolist(), strict=True))
    counts, tv, kept = sampled(
        lambda spec, seed: _run(pair, prompt, draft=spec, n=1, temp=1.0, seed=seed), 200, 0)
    assert tv < 0.15, (tv, counts)
    assert kept > 0
    tokens = small.tokenize(prompt.encode(), add_bos=False, special=True)
    small.reset()
    small.eval(tokens)
    guess = int(np.argmax(logits(small, -1)))  # the draft's first guess, every time
    share = counts[True][guess] / 200  # how often it was kept
    assert abs(share - p_of.get(guess, 0.0)) < 0.1, (share, p_of.get(guess))


# -- choosing, fitting and showing it ---------------------------------------------------------


def test_the_draft_model_counts_in_the_fit_verdict(qwen_file: Path,
                                                   qwen_small_file: Path) -> None:
    from app.models.hardware import probe
    from app.session.placement import plan_load

    hw = probe()
    alone = plan_load(_local(qwen_file), 8192, hw)
    small = drafting.header(_local(qwen_small_file))
    both = alone.beside(small, hw)
    assert alone.verdict is not None and both.verdict is not None
    a, b = alone.verdict.estimate, both.verdict.estimate
    assert b.weights == a.weights + small.tensor_bytes
    assert b.kv_cache > a.kv_cache  # its own cache, at the same context
    assert b.draft > small.tensor_bytes and b.total == a.total + b.draft


def test_auto_loads_a_draft_model_only_where_the_speed_model_says_it_pays(
        qwen: Path, qwen_small_file: Path, home: Path) -> None:
    """With this CPU's recorded figures a batch costs about what its tokens do, so no draft is
    loaded; on a machine where a batch is nearly free (prompts 1000x faster), the 0.5B is."""
    from dataclasses import replace as changed

    from app.engine.backend import Params
    from app.session.context import AppContext
    from tests.helpers import RECORDED, link_starter, write_machine_speed

    link_starter(qwen_small_file, home / "data" / "models")
    ctx = AppContext()
    local = ctx.resolve_model("qwen2.5-coder-1.5b-instruct")
    assert ctx.placed(local, Params(speculative="auto")).draft is None
    assert ctx.placed(local, Params(speculative="draft")).draft == \
        home / "data" / "models" / qwen_small_file.name
    assert ctx.placed(local, Params(speculative="lookup")).draft is None
    write_machine_speed(home / "data", changed(RECORDED, prompt_flops=RECORDED.prompt_flops * 1000))
    assert ctx.placed(local, Params(speculative="auto")).draft is not None


def test_a_model_of_another_vocabulary_is_refused_in_one_line(qwen: Path, smollm2: Path) -> None:
    from tests.helpers import tramontane

    done = tramontane("chat", "-m", "qwen2.5-coder-1.5b-instruct", "--draft-model", str(smollm2),
                      "hello")
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot draft for" in err[0] and "start token" in err[0], err


def test_chat_stats_show_the_draft_models_share(qwen: Path, qwen_small_file: Path,
                                               home: Path) -> None:
    from tests.helpers import link_starter, tramontane

    link_starter(qwen_small_file, home / "data" / "models")
    done = tramontane("chat", "-m", "qwen2.5-coder-1.5b-instruct", "--speculative", "draft",
                      "--stats", "--max-tokens", "40", "--temperature", "0",
                      "Write a Python function that reverses a string.")
    assert done.returncode == 0, done.stderr
    assert "by draft model" in done.stderr and "x plain decoding" in done.stderr, done.stderr
