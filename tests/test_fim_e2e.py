"""Completion end to end: the worker with the real starter model, and the CLI for editors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine.llama.backend import LlamaBackend
from app.session.complete import CompletionSession
from app.session.context import AppContext
from tests.helpers import tramontane

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out

SOURCE = 'def add(a, b):\n    """Add two numbers."""\n    return \n\n\nprint(add(1, 2))\n'


@pytest.fixture
def code_file(tmp_path: Path) -> Path:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    return path


def test_pieces_become_the_tokens_a_format_asks_for(smollm2: Path) -> None:
    import llama_cpp

    from app.engine.llama.tokens import tokenize_pieces as _tokenize_pieces

    llm = llama_cpp.Llama(str(smollm2), vocab_only=True, verbose=False)
    special = llm.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(special) == 1
    tokens = _tokenize_pieces(llm, [("special", "<|im_start|>", False), ("text", "x = 1", False)])
    assert tokens == special + llm.tokenize(b"x = 1", add_bos=False, special=False)
    # written as text, a special token's characters are not the special token
    as_text = _tokenize_pieces(llm, [("text", "<|im_start|>", False)])
    assert as_text != special


async def test_completion_through_the_worker_reuses_the_prompt(home: Path) -> None:
    ctx = AppContext()
    backend = LlamaBackend(log_path=home / "w.log")
    session = CompletionSession.for_context(ctx, backend, None, max_tokens=16)
    assert session.model.fim_format == "continue"  # SmolLM2 has no FIM tokens
    prefix, suffix = SOURCE.split("return ")[0] + "return ", "\n\n\nprint(add(1, 2))\n"
    try:
        first = await session.complete(prefix, suffix)
        second = await session.complete(prefix + "a", suffix)
    finally:
        await backend.unload()
    assert first.source == "model" and first.stats.prompt_tokens > 10
    if second.source == "model":  # not served from the typed-ahead cache
        assert second.stats.cached_tokens >= first.stats.prompt_tokens - 1


def test_cli_dry_run_prints_the_exact_prompt(code_file: Path) -> None:
    out = tramontane("complete", str(code_file), "--line", "3", "--col", "12", "--show-prompt",
                     "--dry-run")
    assert out.returncode == 0, out.stderr
    # no FIM tokens: the prefix, without the blank typed after `return` (the model writes it)
    assert out.stdout == SOURCE.split("return ")[0] + "return"


def test_cli_json_completion(code_file: Path) -> None:
    out = tramontane("complete", str(code_file), "--line", "3", "--col", "12", "--json",
                     "--max-tokens", "8")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"text", "timings", "prompt_tokens", "cached_tokens", "generated_tokens"}
    assert data["generated_tokens"] >= 1
    assert data["text"] and not data["text"].startswith(" ")  # after the typed space


def test_cli_stdin_buffer_for_a_file_not_saved_yet(tmp_path: Path) -> None:
    out = tramontane("complete", str(tmp_path / "new.py"), "--stdin", "--line", "1", "--col", "5",
                     "--max-tokens", "4", input="x = \n")
    assert out.returncode == 0, out.stderr


def test_cli_refuses_binary_and_bad_columns(tmp_path: Path, code_file: Path) -> None:
    binary = tmp_path / "a.out"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\0\0\0\0")
    out = tramontane("complete", str(binary), "--line", "1", "--col", "1")
    assert out.returncode == 1 and "binary" in out.stderr and "Traceback" not in out.stderr
    out = tramontane("complete", str(code_file), "--line", "3", "--col", "99")
    assert out.returncode == 1 and "Column 99" in out.stderr
