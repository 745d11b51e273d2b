"""The installed `tramontane` command in a real terminal (tmux), with the starter model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, db_rows, link_starter, wait_until

pytestmark = [pytest.mark.terminal, pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed here (.ci/run installs it)")]


class Tmux:
    def __init__(self, name: str) -> None:
        self.socket = f"tramontane-test-{os.getpid()}"
        self.name = name

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=10)

    def start(self, command: str) -> None:
        out = self.run("new-session", "-d", "-s", self.name, "-x", "120", "-y", "35", command)
        assert out.returncode == 0, out.stderr

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name).stdout

    def alive(self) -> bool:
        return self.run("has-session", "-t", self.name).returncode == 0

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def kill(self) -> None:
        self.run("kill-server")


def app_command(home: Path, max_tokens: int, cwd: Path | None = None, env: str = "") -> str:
    """The shell line that starts the installed app with greedy, short replies."""
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text(
        f"[params]\nmax_tokens = {max_tokens}\ntemperature = 0.0\n")
    cd = f"cd {cwd} && " if cwd else ""
    return (f"{cd}env -u COLUMNS -u LINES TRAMONTANE_HOME={home} {env} TERM=xterm-256color "
            f"{BIN / 'tramontane'}")


def test_chat_in_a_real_terminal_and_find_it_again(home: Path) -> None:
    command = app_command(home, 48)
    tmux = Tmux("chat")
    db = home / "data" / "history.db"
    try:
        tmux.start(command)
        wait_until(lambda: "Search chats" in tmux.screen(), what="the app on screen")
        tmux.keys("-l", "Name three French rivers.")
        tmux.keys("Enter")
        wait_until(lambda: "Assistant" in tmux.screen(), what="the reply starting")

        def reply_done() -> bool:
            try:
                rows = db_rows(db, "SELECT state, content FROM messages WHERE role='assistant'")
            except Exception:
                return False
            return bool(rows) and rows[0][0] == "complete"

        wait_until(reply_done, timeout=90, what="the reply saved as complete")
        reply = str(db_rows(db, "SELECT content FROM messages WHERE role='assistant'")[0][0])
        # a word of the reply, not markup: Markdown is rendered, list numbers and all
        first_words = max(re.findall(r"[A-Za-z]{4,}", reply)[:8], key=len)
        wait_until(lambda: first_words in tmux.screen(), what="the reply text on screen")
        try:
            wait_until(lambda: "tok/s" in tmux.screen(), what="the speed in the status line")
        except AssertionError:
            print(tmux.screen())
            raise
        tmux.keys("C-q")
        wait_until(lambda: not tmux.alive(), what="the app to quit")

        tmux.start(command)
        wait_until(lambda: "Search chats" in tmux.screen(), what="the app again")
        screen = tmux.screen()
        assert "Name three French rivers." in screen  # in the sidebar and the reopened chat
        wait_until(lambda: first_words in tmux.screen(), what="the saved reply shown")
        tmux.keys("C-q")
        wait_until(lambda: not tmux.alive(), what="the app to quit again")
    finally:
        tmux.kill()


def test_slash_file_in_a_real_terminal(home: Path, tmp_path: Path) -> None:
    """The bundled /file command through the real app: a binary is refused on screen, a text
    file goes to the model with the question and is saved in the chat."""
    pytest.importorskip("tramontane_files", reason="run `make install`")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("The code word is heliotrope.\n")
    (work / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    command = app_command(home, 16, cwd=work, env="TRAMONTANE_PLUGINS=tramontane-files")
    tmux = Tmux("slash")
    db = home / "data" / "history.db"
    try:
        tmux.start(command)
        wait_until(lambda: "Search chats" in tmux.screen(), what="the app on screen")
        tmux.keys("-l", "/file photo.png what is this?")
        tmux.keys("Enter")
        wait_until(lambda: "binary file" in tmux.screen(), what="the refusal on screen")
        wait_until(lambda: "what is this?" in tmux.screen(), what="the refused line back")
        tmux.keys("C-u")  # the line is cleared by hand
        wait_until(lambda: "what is this?" not in tmux.screen(), what="the box cleared")
        tmux.keys("-l", "/file notes.txt What is the code word?")
        tmux.keys("Enter")

        def saved() -> bool:
            try:
                rows = db_rows(db, "SELECT state FROM messages WHERE role='assistant'")
            except Exception:
                return False
            return bool(rows) and rows[0][0] in ("complete", "error")

        wait_until(saved, timeout=90, what="the reply saved")
        question = str(db_rows(db, "SELECT content FROM messages WHERE role='user'")[0][0])
        assert "heliotrope" in question and question.endswith("What is the code word?")
        assert "photo.png" not in question
        title = db_rows(db, "SELECT title FROM chats")[0][0]
        assert title == "What is the code word?"
        tmux.keys("C-q")
        wait_until(lambda: not tmux.alive(), what="the app to quit")
    finally:
        tmux.kill()


def test_code_pane_keeps_typed_edits_in_a_real_terminal(home: Path, tmp_path: Path) -> None:
    """`tramontane code FILE` in tmux: Ctrl+Q and Ctrl+W ask about typed edits with the editor
    focused; losing the terminal keeps a recovery copy, offered back by the next start."""
    src = tmp_path / "calc.py"
    src.write_text("def total(xs):\n    return sum(xs)\n")
    original = src.read_text()
    command = app_command(home, 8) + f" code {src}"
    recovery = home / "data" / "recovery"
    tmux = Tmux("code")
    try:
        tmux.start(command)
        wait_until(lambda: "completion by" in tmux.screen(), what="the code pane")
        tmux.keys("-l", "# typed")
        wait_until(lambda: "# typed" in tmux.screen(), what="the typing on screen")
        tmux.keys("C-q")
        wait_until(lambda: "unsaved changes" in tmux.screen(), what="the quit question")
        tmux.keys("Escape")  # cancel: back to the editor, edits kept
        wait_until(lambda: "unsaved changes" not in tmux.screen(), what="the question gone")
        assert tmux.alive() and "# typed" in tmux.screen()
        tmux.keys("C-w")
        wait_until(lambda: "unsaved changes" in tmux.screen(), what="the close question")
        tmux.keys("Escape")
        wait_until(lambda: any(recovery.glob("*.json")), what="a recovery copy")
        tmux.kill()  # the terminal is gone: SIGHUP, no chance to ask
        wait_until(lambda: not tmux.alive(), what="the terminal gone")
        assert src.read_text() == original
        tmux.start(command)
        wait_until(lambda: "Restore them?" in tmux.screen(), what="the recovery offer")
        tmux.keys("Enter")  # Restore is the first button, focused
        wait_until(lambda: "# typed" in tmux.screen(), what="the restored edits")
        tmux.keys("C-s")
        wait_until(lambda: src.read_text().startswith("# typed"), what="the save")
        tmux.keys("C-q")
        wait_until(lambda: not tmux.alive(), what="the app to quit without a question")
    finally:
        tmux.kill()


@pytest.mark.qwen
def test_edit_by_instruction_in_a_real_terminal(home: Path, tmp_path: Path,
                                                qwen_file: Path) -> None:
    """Issue 26's walk-through: a file with a bug in `tramontane code`, Ctrl+K on the
    function, "fix the off-by-one", the diff on screen, accepted, saved, and the test passes."""
    link_starter(qwen_file, home / "data" / "models")
    src = tmp_path / "calc.py"
    # the function at the top: Ctrl+K where the cursor starts edits it, no keys to move it
    src.write_text("def mean(values):\n    total = 0\n"
                   "    for i in range(len(values) - 1):\n        total += values[i]\n"
                   "    return total / len(values)\n")
    command = app_command(home, 256, env="TRAMONTANE_DEFAULT_MODEL=qwen2.5-coder-1.5b-instruct"
                          ) + f" code {src}"
    tmux = Tmux("edit")
    try:
        tmux.start(command)
        wait_until(lambda: "completion by" in tmux.screen(), what="the code pane")
        # the editor's own keys are in the footer once it has the focus
        wait_until(lambda: "Accept suggestion" in tmux.screen(), what="the editor focused")
        for _ in range(5):  # a key sent while the app is busy starting may be lost: again
            tmux.keys("C-k")
            try:
                wait_until(lambda: "what should change?" in tmux.screen(), timeout=5,
                           what="the instruction box")
                break
            except AssertionError:
                continue
        assert "Edit lines 1-5" in tmux.screen()
        for _ in range(5):  # typed before the box has the focus, the text is lost: again
            tmux.keys("-l", "fix the off-by-one")
            try:
                wait_until(lambda: "fix the off-by-one" in tmux.screen(), timeout=5,
                           what="the instruction typed")
                break
            except AssertionError:
                continue
        tmux.keys("Enter")
        wait_until(lambda: "Enter accepts all" in tmux.screen(), timeout=120,
                   what="the diff, complete")
        screen = tmux.screen()
        assert "- " in screen and "range(len(values) - 1)" in screen and "+ " in screen
        tmux.keys("Enter")
        wait_until(lambda: "edited lines" in tmux.screen(), what="the edit applied")
        tmux.keys("C-s")
        wait_until(lambda: "- 1)" not in src.read_text(), what="the save")
        check = subprocess.run([str(BIN / "python"), "-c",
                                "from calc import mean; assert mean([1, 2, 3]) == 2"],
                               cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0, src.read_text()
        tmux.keys("C-q")
        wait_until(lambda: not tmux.alive(), what="the app to quit")
    finally:
        tmux.kill()
