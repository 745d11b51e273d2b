"""Edit by instruction, without a model: the range at the cursor, reading the model's answer
(fences, context it copied, indentation it dropped, answers that are not code), the diff, and
writing the file safely. The CLI runs on a scripted backend and, marked qwen, on the starter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.engine.prompts.edit import edit_messages, extract
from app.errors import TramontaneError
from app.session import edit
from tests.helpers import BUGGY_MEAN, link_starter

SOURCE = BUGGY_MEAN + '''

class Shape:
    def area(self):
        return 0

    @property
    def name(self):
        return "shape"
'''


def test_the_range_at_the_cursor() -> None:
    assert edit.range_at(SOURCE, 7, "calc.py") == (4, 9)  # the function
    assert edit.range_at(SOURCE, 14, "calc.py") == (13, 14)  # the method, not the class
    assert edit.range_at(SOURCE, 18, "calc.py") == (16, 18)  # with its decorator
    assert edit.range_at(SOURCE, 12, "calc.py") == (12, 18)  # the class line: the class
    js = "function f(a) {\n  if (a) {\n    return 1;\n  }\n  return 2;\n}\n\nlet x = 1;\n"
    assert edit.range_at(js, 3, "f.js") == (1, 6)  # tree-sitter: the function
    assert edit.range_at(js, 3, "f.txt") == (2, 4)  # no parser: the indentation block
    assert edit.range_at(js, 8, "f.txt") == (8, 8)
    with pytest.raises(TramontaneError, match="outside"):
        edit.range_at(SOURCE, 99, "calc.py")
    assert edit.parse_lines("4-9") == (4, 9) and edit.parse_lines("7") == (7, 7)
    with pytest.raises(TramontaneError):
        edit.parse_lines("9-4")


def test_an_answer_becomes_the_range_and_nothing_else() -> None:
    where = edit.span(SOURCE, 4, 9)
    fixed = where.code.replace("len(values) - 1", "len(values)")
    answer = f"Here you go:\n```python\n{fixed}```\nThe loop now covers every value."
    got = extract(answer, where.code, where.before, where.after)
    assert got.code == fixed
    new = where.replaced(got.code)
    assert new.splitlines()[:3] == SOURCE.splitlines()[:3]
    assert new.splitlines()[9:] == SOURCE.splitlines()[9:]
    diff = edit.unified(SOURCE, new, "calc.py")
    assert "-    for i in range(len(values) - 1):" in diff and diff.count("\n+") == 2


def test_context_the_model_copied_is_dropped() -> None:
    where = edit.span(SOURCE, 4, 9)
    echoed = "import math\n\n\n" + where.code + "\n\nclass Shape:\n    def area(self):\n"
    got = extract(f"```python\n{echoed}```", where.code, where.before, where.after)
    assert got.code == where.code


def test_dropped_indentation_comes_back() -> None:
    where = edit.span(SOURCE, 13, 14)
    got = extract("```\ndef area(self):\n    return 1\n```", where.code, where.before,
                  where.after)
    assert got.code == "    def area(self):\n        return 1\n"


@pytest.mark.parametrize("answer", [
    "I cannot do that: the function has no bug.",
    "```python\n```",
    "```python\ndef mean(values):\n    return sum(values",  # cut off: never half a file
])
def test_an_answer_that_is_not_code_is_never_applied(answer: str) -> None:
    where = edit.span(SOURCE, 4, 9)
    got = extract(answer, where.code, where.before, where.after)
    assert got.code is None and got.text


def test_the_prompt_holds_the_range_verbatim() -> None:
    where = edit.span(SOURCE, 4, 9)
    messages = edit_messages("fix the off-by-one", where.before, where.code, where.after,
                             "calc.py")
    assert messages[0].role == "system" and "single fenced code block" in messages[0].content
    user = messages[1].content
    assert f"```python\n{where.code}```" in user and user.rstrip().endswith("code block.")
    assert "fix the off-by-one" in user and "import math" in user


def test_apply_writes_through_a_link_keeps_the_mode_and_refuses_a_changed_file(
        tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text(SOURCE)
    real.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to(real)
    new = SOURCE.replace("- 1", "")
    edit.apply(link, new, SOURCE)
    assert link.is_symlink() and real.read_text() == new
    assert real.stat().st_mode & 0o777 == 0o640
    with pytest.raises(TramontaneError, match="changed after it was read"):
        edit.apply(link, SOURCE, SOURCE)  # the file is `new` now, not what was read
    assert real.read_text() == new


@pytest.mark.qwen
def test_tramontane_edit_fixes_the_off_by_one(tmp_path: Path, home: Path, qwen_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI on the Qwen starter: a diff, then --apply, and the file's test passes."""
    from tests.helpers import BIN

    link_starter(qwen_file, home / "data" / "models")
    monkeypatch.delenv("TRAMONTANE_DEFAULT_MODEL")
    source = tmp_path / "calc.py"
    source.write_text(SOURCE)
    run = [str(BIN / "tramontane"), "edit", str(source), "--line", "7", "fix the off-by-one"]
    shown = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "-    for i in range(len(values) - 1):" in shown.stdout
    assert source.read_text() == SOURCE  # a diff only
    applied = subprocess.run([*run, "--apply", "--stats"], capture_output=True, text=True,
                             timeout=300)
    assert applied.returncode == 0, applied.stderr
    assert "by lookup" in applied.stderr and "x plain decoding" in applied.stderr, applied.stderr
    check = subprocess.run(["python3", "-c", "from calc import mean; assert mean([1, 2, 3]) == 2"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, source.read_text()
    assert source.read_text().splitlines()[9:] == SOURCE.splitlines()[9:]
