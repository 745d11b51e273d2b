"""The README's Vim function, in real Vim: a completion is put into the buffer as text. Even
text holding ESC, `:!` and CR (a hostile server's answer) never runs as keystrokes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.terminal

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```vim\n(function! TramontaneComplete.*?)```", text, re.S)
    assert block, "the README lost its Vim function"
    return block.group(1)


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
@pytest.mark.parametrize("answer, expected", [
    # the cursor after "return " as in Insert mode (past the last character)
    ("a + b", ["def add(a, b):", "    return a + b", "", "print(add(1, 2))"]),
    ("a +\nb", ["def add(a, b):", "    return a +", "b", "", "print(add(1, 2))"]),
    ("\x1b:!touch PWNED\r", ["def add(a, b):", "    return \x1b:!touch PWNED\r", "",
                             "print(add(1, 2))"]),
])
def test_the_readme_vim_function_inserts_text(tmp_path: Path, answer: str,
                                              expected: list[str]) -> None:
    shim = tmp_path / "bin" / "tramontane"
    shim.parent.mkdir()
    (tmp_path / "answer").write_bytes(answer.encode())
    shim.write_text(f"#!/bin/sh\ncat > /dev/null\ncat '{tmp_path / 'answer'}'\n")
    shim.chmod(0o755)
    (tmp_path / "snippet.vim").write_text(snippet())
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    done = subprocess.run(
        ["vim", "-Nu", "NONE", "-i", "NONE", "-Es", "-c", f"source {tmp_path / 'snippet.vim'}",
         "-c", "set virtualedit=onemore", "-c", "call cursor(2, 12)",
         "-c", "call TramontaneComplete()", "-c", "wq", str(source)],
        cwd=tmp_path, env={**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"},
        capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "PWNED").exists()
    assert source.read_bytes().decode().split("\n")[:-1] == expected
