"""FIM formats, the budget, the post-processor, and completion sessions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from mistral_common.protocol.fim.request import FIMRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from app.engine.backend import ModelRef, Params
from app.engine.prompts import fim, fim_end
from app.errors import TramontaneError
from app.session.complete import CompletionSession, NotTextError, read_text_file, split_at
from tests.fixtures.scripted import ScriptedBackend

_REPO = Path(__file__).resolve().parents[1]
DATA = next((p for p in (_REPO.parent / "shared" / "data" / "HumanEval-SingleLineInfilling.jsonl.gz",
                         _REPO / "shared" / "data" / "HumanEval-SingleLineInfilling.jsonl.gz")
             if p.is_file()), _REPO.parent / "shared" / "data")
CASES = [("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"),
         ("x = [1, 2", "]\n"), ("", "def f():\n    pass\n"), ("import os\n", "")]


@pytest.mark.parametrize(("prefix", "suffix"), CASES)
def test_codestral_tokens_match_mistral_common(prefix: str, suffix: str) -> None:
    tok = MistralTokenizer.v3()
    expected = tok.encode_fim(FIMRequest(prompt=prefix, suffix=suffix)).tokens
    raw = tok.instruct_tokenizer.tokenizer
    ids = {"<s>": raw.bos_id, "[SUFFIX]": raw.get_special_token("[SUFFIX]"),
           "[PREFIX]": raw.get_special_token("[PREFIX]")}
    ours: list[int] = []
    for piece in fim.FORMATS["codestral"].build(prefix, suffix):
        if piece.kind == "special":
            ours.append(ids[piece.value])
        elif piece.space_prefix:
            ours += raw.encode(piece.value, bos=False, eos=False)
        else:  # what the worker does: encode behind a marker, drop the marker's tokens
            marked = raw.encode("☺" + piece.value, bos=False, eos=False)
            ours += marked[len(raw.encode("☺", bos=False, eos=False)):]
    assert ours == expected


def test_codestral_is_suffix_first_without_a_middle_token() -> None:
    text = fim.render(fim.FORMATS["codestral"].build("def f(", "return 1"))
    assert text == "<s>[SUFFIX]return 1[PREFIX] def f("


@pytest.mark.parametrize(("name", "expected"), [
    ("qwen", "<|fim_prefix|><|fim_suffix|>S<|fim_middle|>P"),  # suffix first (SPM)
    ("qwen-psm", "<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>"),
    ("starcoder2", "<fim_prefix>P<fim_suffix>S<fim_middle>"),
    ("deepseek", "<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>"),
    ("codellama", "<s><PRE> P<SUF> S<MID>"),
    ("codegemma", "<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>"),
    ("continue", "P"),
])
def test_each_family(name: str, expected: str) -> None:
    fmt = fim.FORMATS[name]
    assert fim.render(fmt.build("P", "S")) == expected
    assert name == "continue" or fmt.stops


def test_detect_from_vocabulary() -> None:
    assert fim.detect("", {"[SUFFIX]", "[PREFIX]", "[INST]"}).name == "codestral"
    qwen = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"}
    assert fim.detect("", qwen, "qwen2").name == "qwen"
    assert fim.detect("", {"<|fim_prefix|>", "<|fim_middle|>", "<|file_separator|>"},
                      "gemma").name == "codegemma"
    assert fim.detect("", {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"}).name == "starcoder2"
    assert fim.detect("", set()).name == "continue"
    assert fim.detect("codestral", set()).name == "codestral"


def test_budget_trims_at_line_boundaries_prefix_first() -> None:
    prefix = "".join(f"line {i}\n" for i in range(1000)) + "x = "
    suffix = "".join(f"after {i}\n" for i in range(1000))
    p, s = fim.trim_to_budget(prefix, suffix, 400, fim.approx_tokens)
    assert fim.approx_tokens(p) + fim.approx_tokens(s) <= 400
    assert p.endswith("line 999\nx = ") and p.startswith("line ")
    assert s.startswith("after 0\n") and s.endswith("\n")
    assert fim.approx_tokens(p) > fim.approx_tokens(s)


def test_request_stops_at_newline_mid_line() -> None:
    req = fim.request("qwen", "x = foo(", ")\nprint(x)\n", 4096, Params(max_tokens=32))
    assert "\n" in req.stops
    req = fim.request("qwen", "x = 1\n", "print(x)\n", 4096, Params(max_tokens=32))
    assert "\n" not in req.stops


# -- post-processing, cases from real completions -------------------------------------------


def test_postprocess_cuts_what_repeats_the_suffix() -> None:
    prefix = "def f(xs):\n    total = 0\n"
    suffix = "    return total\n"
    raw = "    for x in xs:\n        total += x\n    return total\n"
    assert fim_end.postprocess(raw, prefix, suffix) == "    for x in xs:\n        total += x\n"


def test_postprocess_whitespace_only_is_dropped() -> None:
    assert fim_end.postprocess("   \n\n  ", "x = ", "\n") == ""


def test_postprocess_one_line_when_text_follows_the_cursor() -> None:
    # SmolLM2 continuing `print(` with the rest of its line and more
    assert fim_end.postprocess('"hello")\nprint("again")\n', "print(", ")\n") == '"hello"'


def test_postprocess_stops_at_a_dedent() -> None:
    prefix = "def add(a, b):\n    return "
    # what SmolLM2 produced: an answer, then a Markdown fence at column 0
    assert fim_end.postprocess("0\n```", prefix, "\n") == "0"
    # Gemma 3: an answer then indented blank lines
    assert fim_end.postprocess("2 \n    \n    \n", prefix, "\n") == "2"


def test_postprocess_balances_brackets() -> None:
    assert fim_end.postprocess("1, 2)", "x = foo(", ")\n") == "1, 2"  # the suffix closes it
    assert fim_end.postprocess("max(a, b", "x = ", "") == "max(a, b)"  # end of file: close it


@pytest.mark.skipif(not DATA.is_file(), reason="HumanEval infilling data (../shared/data) absent")
def test_overshoot_on_humaneval_single_line() -> None:
    with gzip.open(DATA) as fh:
        tasks = [json.loads(line) for line in fh]
    exact = 0
    for t in tasks:
        first = t["suffix"].split("\n", 1)[0] + ("\n" if "\n" in t["suffix"] else "")
        exact += fim_end.postprocess(t["canonical_solution"] + first, t["prompt"], t["suffix"]) \
            == t["canonical_solution"]
    assert exact / len(tasks) >= 0.98


# -- cursor, files, sessions ----------------------------------------------------------------


def test_split_at_uses_vim_columns() -> None:
    text = "abc\nhé llo\n"
    assert split_at(text, 1, 1) == ("", "abc\nhé llo\n")
    assert split_at(text, 1, 4) == ("abc", "\nhé llo\n")
    assert split_at(text, 2, 4) == ("abc\nhé", " llo\n")  # é is two bytes
    with pytest.raises(TramontaneError, match="inside a character"):
        split_at(text, 2, 3)
    with pytest.raises(TramontaneError, match="outside"):
        split_at(text, 9, 1)


def test_binary_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x7fELF\0\0\0")
    (tmp_path / "b.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(NotTextError, match="binary"):
        read_text_file(tmp_path / "a.bin")
    with pytest.raises(NotTextError, match="UTF-8"):
        read_text_file(tmp_path / "b.txt")


async def test_cache_and_typed_ahead_skip_the_model() -> None:
    backend = ScriptedBackend()
    backend.replies = ["unused"]
    session = CompletionSession(backend, ModelRef("m", fim_format="qwen"), Params(max_tokens=16))
    calls: list[str] = []

    async def complete(prefix, suffix, params, extra=(), path=""):  # type: ignore[no-untyped-def]
        calls.append(prefix)
        from app.engine.backend import Done, Stats, Token
        yield Token("total += x\n")
        yield Done(Stats(generated_tokens=4))

    backend.complete = complete  # type: ignore[method-assign]
    prefix, suffix = "for x in xs:\n    ", "\nprint(total)\n"
    first = await session.complete(prefix, suffix)
    assert first.text == "total += x" and first.source == "model"
    again = await session.complete(prefix, suffix)
    assert again.source == "cache" and again.text == "total += x"
    typed = await session.complete(prefix + "tot", suffix)
    assert typed.source == "cache" and typed.text == "al += x"
    assert len(calls) == 1
    other = await session.complete(prefix + "zzz", suffix)
    assert other.source == "model" and len(calls) == 2


def test_context_chunks_take_what_the_budget_leaves() -> None:
    from app.engine.backend import ContextChunk

    chunks = [ContextChunk(f"mod_{i}.py", f"def f_{i}():\n    return {i}\n" * 20) for i in range(6)]
    prefix, suffix = "x = 1\n" * 200, "\ny = 2\n"
    big = fim.request("qwen", prefix, suffix, 8192, Params(max_tokens=16), chunks, "main.py")
    assert big.text.count("<|file_sep|>") == 7  # six chunks and the current file
    assert big.text.index("mod_0.py") > big.text.index("mod_5.py")  # most useful nearest the code
    small = fim.request("qwen", prefix, suffix, 1024, Params(max_tokens=16), chunks, "main.py")
    kept = small.text.count("<|file_sep|>") - 1
    assert 0 < kept < 6 and "mod_0.py" in small.text  # whole chunks, the first ones first
    assert small.prefix.endswith("x = 1\n") and "<|fim_middle|>" in small.text
    none = fim.request("qwen", prefix, suffix, 256, Params(max_tokens=16), chunks, "main.py")
    assert "<|file_sep|>" not in none.text  # no room: no chunks, the prompt still fits


async def test_completion_retries_without_plugin_context_when_it_fails() -> None:
    from app.engine.backend import ContextChunk, Done, Error, Stats, Token

    backend = ScriptedBackend()
    session = CompletionSession(backend, ModelRef("m", fim_format="qwen"), Params(max_tokens=8))
    seen: list[int] = []

    async def complete(prefix, suffix, params, extra=(), path=""):  # type: ignore[no-untyped-def]
        seen.append(len(extra))
        if extra:
            yield Error("The prompt is longer than the context length.")
            return
        yield Token("42")
        yield Done(Stats(generated_tokens=1))

    async def gather(path, prefix, suffix):  # type: ignore[no-untyped-def]
        return [ContextChunk("big.py", "x" * 10)]

    backend.complete = complete  # type: ignore[method-assign]
    session.gather_context = gather  # type: ignore[method-assign]
    result = await session.complete("answer = ", "\n", "a.py")
    assert result.text == "42" and seen == [1, 0] and session.last_extra == []


def test_a_hole_that_ends_a_loop_keeps_its_lower_lines() -> None:
    """The suffix, not the first dedent, says where a multi-line answer ends."""
    prefix = "def total(xs):\n    s = 0\n    for x in xs:\n"
    suffix = "    return s\n"
    answer = "        s += x\n    s *= 2\n"
    assert fim_end.postprocess(answer + suffix, prefix, suffix) == answer
    assert fim_end.postprocess(answer, prefix, suffix) == answer
    # cut by the limit: a line below the suffix's own indentation is past the hole
    assert fim_end.postprocess("        s += x\nprint(s)\n", prefix, suffix, cut=True) \
        == "        s += x\n"


PRIME = "def largest_prime_factor(n):\n    largest = 1\n    for j in range(2, n + 1):\n"
PRIME_MIDDLE = "        if n % j == 0 and is_prime(j):\n            largest = max(largest, j)\n" \
    "    return largest\n"


def test_a_model_that_stops_by_itself_keeps_its_lines_past_the_block() -> None:
    """The issue's case: the hole ends the loop and the function; the suffix is empty."""
    assert fim_end.postprocess(PRIME_MIDDLE, PRIME, "") == PRIME_MIDDLE
    # the suffix starts deeper than the hole's last line: the hole opened the block
    assert fim_end.postprocess("    if x:\n", "def f(x):\n", "        return 1\n") == "    if x:\n"


def test_only_a_repeat_of_the_suffixs_first_lines_is_cut() -> None:
    suffix = "    return largest\n\nprint(largest_prime_factor(15))\n"
    body = PRIME_MIDDLE.replace("    return largest\n", "")
    assert fim_end.postprocess(body + suffix, PRIME, suffix) == body
    # one line equal to the suffix's first, then something else: not a repeat
    other = body + "    return largest\n\nprint(1)\n"
    assert fim_end.postprocess(other, PRIME, suffix) == other.rstrip("\n") + "\n"
    # JavaScript: the closing brace at the suffix's own indentation is the overlap
    js_prefix, js_suffix = "function f(a) {\n  if (a) {\n", "  }\n  return a\n}\n"
    assert fim_end.postprocess("    a += 1\n  }\n  return a\n}\n", js_prefix, js_suffix,
                               path="f.js") == "    a += 1\n"


def test_a_cut_completion_ends_at_what_parses() -> None:
    """At the token limit the unfinished line goes, then the longest run of lines that parses
    best in place is kept (tree-sitter)."""
    raw = PRIME_MIDDLE + "\nprint(larg"
    assert fim_end.postprocess(raw, PRIME, "", cut=True, path="p.py") == PRIME_MIDDLE
    js_prefix = "function f(xs) {\n  let s = 0\n  for (const x of xs) {\n"
    js_suffix = "  return s\n}\n"
    raw = "    s += x\n    if (s > 10) {\n      break"
    assert fim_end.postprocess(raw, js_prefix, js_suffix, cut=True, path="f.js") \
        == "    s += x\n"
    # without a parser, the lines below the hole's block go
    assert fim_end.postprocess("    s += x\nprint(s)\nmore", "for x in xs:\n", "",
                               cut=True, path="f.txt") == "    s += x\n"


def test_a_chat_models_code_fence_ends_the_completion() -> None:
    assert fim_end.postprocess("    return 1\n```\nThis returns one.", "def f():\n", "") \
        == "    return 1\n"


def test_every_shape_of_hole_in_the_stdlib_is_kept() -> None:
    """bench/fim_holes.py's Python holes (six shapes cut from the standard library): the right
    answer comes out whole, and so does the answer followed by the suffix."""
    from bench.fim_holes import PY_MODULES, holes_of, sources

    seen = 0
    for lang, name, text in sources():
        if lang != "python" or name not in PY_MODULES[:6]:
            continue
        for h in holes_of(lang, name, text):
            seen += 1
            assert fim_end.postprocess(h.answer, h.prefix, h.suffix, path="x.py").strip("\n") \
                == h.answer.strip("\n"), h.where
            assert fim_end.postprocess(h.answer + h.suffix, h.prefix, h.suffix,
                                       path="x.py").strip("\n") == h.answer.strip("\n")
        if seen > 150:
            break
    assert seen > 100


def test_trimming_counts_each_line_once() -> None:
    """A multi-MB file is cut in linear time: each line counted about once (the old loop
    joined and counted the whole rest after every dropped line)."""
    calls = 0

    def count(text: str) -> int:
        nonlocal calls
        calls += 1
        return fim.approx_tokens(text)

    lines = [f"value_{i} = compute({i}, other_{i})\n" for i in range(50_000)]
    prefix, suffix = fim.trim_to_budget("".join(lines), "".join(lines), 2000, count)
    assert calls < 2 * len(lines) // 10  # only the lines near the cursor are even looked at
    assert fim.approx_tokens(prefix) <= 2000 and prefix.endswith(lines[-1])
    assert suffix.startswith(lines[0])


def test_token_estimate_counts_digits_alone() -> None:
    """Qwen's and Llama's vocabularies split numbers into single digits."""
    assert fim.approx_tokens("1234567890" * 100) >= 1000


def test_the_blanks_before_the_cursor_are_the_models_to_write() -> None:
    from app.engine.prompts.cursor import heal, realign_piece

    assert heal("    return fib(n - 1) + ") == ("    return fib(n - 1) +", " ")
    assert heal("x =\t") == ("x =", "\t")
    assert heal("def f():\n    ") == ("def f():\n    ", "")  # indentation is not a blank
    assert heal("x = 1\n") == ("x = 1\n", "")

    def shown(pieces: list[str], typed: str) -> str:
        out = ""
        for piece in pieces:
            if typed:
                piece, typed = realign_piece(piece, typed)
            out += piece
        return out

    assert shown([" fib", "onacci(n - 2)"], " ") == "fibonacci(n - 2)"
    assert shown([" ", " ", " x"], "  ") == " x"  # only what was typed goes
    assert shown(["\n", "    y"], " ") == "\n    y"  # text that went its own way stays
