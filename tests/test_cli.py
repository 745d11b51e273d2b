"""The installed `tramontane` command, end to end, with the real model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.helpers import BIN, db_rows, tramontane, wait_until

pytestmark = pytest.mark.model  # the `make test-quick` lane leaves these out


def test_version() -> None:
    out = tramontane("--version")
    assert out.returncode == 0 and out.stdout.startswith("tramontane 0.")


def test_bad_usage_exits_2() -> None:
    assert tramontane("history", "frobnicate").returncode == 2


def test_chat_from_stdin_with_stats(home: Path) -> None:
    out = tramontane("chat", "--stats", "--max-tokens", "12", "--temperature", "0", "-",
                     input="Name three French rivers.\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    stats = out.stderr.strip().splitlines()[-1]
    assert stats.startswith("prompt ") and "cached" in stats and "tok/s" in stats
    assert "first token" in stats
    rows = db_rows(home / "data" / "history.db", "SELECT role, state FROM messages ORDER BY id")
    assert rows == [("user", "complete"), ("assistant", "complete")]


def test_history_round_trip(home: Path) -> None:
    first = tramontane("chat", "--max-tokens", "8", "Say hello.")
    assert first.returncode == 0, first.stderr
    listing = tramontane("history", "list", "--json")
    chats = json.loads(listing.stdout)
    assert len(chats) == 1 and chats[0]["title"] == "Say hello."
    chat_id = str(chats[0]["id"])
    more = tramontane("chat", "--chat", chat_id, "--max-tokens", "8", "And goodbye.")
    assert more.returncode == 0, more.stderr
    exported = json.loads(tramontane("history", "export", chat_id, "--format", "json").stdout)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2
    md = tramontane("history", "show", chat_id).stdout
    assert "## You\n\nAnd goodbye." in md
    out_file = home / "chat.md"
    assert tramontane("history", "export", chat_id, "-o", str(out_file)).returncode == 0
    assert out_file.read_text() == md
    assert tramontane("history", "delete", chat_id).returncode == 0
    gone = tramontane("history", "show", chat_id)
    assert gone.returncode == 1 and "no chat" in gone.stderr


def test_unknown_model_is_one_clear_line() -> None:
    out = tramontane("chat", "-m", "llama-9000", "hi")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "Unknown model 'llama-9000'" in out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_gguf_is_one_clear_line(tiny_gguf: Path) -> None:
    tiny_gguf.write_bytes(tiny_gguf.read_bytes()[:1_000_000])
    out = tramontane("chat", "-m", str(tiny_gguf), "hi")
    assert out.returncode == 1 and "truncated" in out.stderr and "Traceback" not in out.stderr


def test_broken_config_warns_and_goes_on(home: Path) -> None:
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("[params\n")
    out = tramontane("chat", "--max-tokens", "4", "hi")
    assert out.returncode == 0
    assert "config.toml: line 1" in out.stderr


def _start_long_chat(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "tramontane"), "chat", "--max-tokens", "2000", "--temperature", "0.8",
         "Write a very long story about a lighthouse keeper and the sea."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )


def _reply_saved(db: Path) -> bool:
    try:
        rows = db_rows(db, "SELECT content FROM messages WHERE role = 'assistant'")
    except sqlite3.Error:  # not created yet, or the schema is being written
        return False
    return bool(rows and rows[0][0])


def test_sigkill_mid_reply_keeps_question_and_partial_reply(home: Path) -> None:
    db = home / "data" / "history.db"
    proc = _start_long_chat(home)
    try:
        wait_until(lambda: _reply_saved(db), what="the partial reply in history.db")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    rows = db_rows(db, "SELECT role, state, length(content) FROM messages ORDER BY id")
    assert rows[0][:2] == ("user", "complete")
    assert rows[1][:2] == ("assistant", "partial") and int(str(rows[1][2])) > 0


def _worker_of(proc: subprocess.Popen[str]) -> psutil.Process | None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        if any("spawn_main" in part for part in child.cmdline()):
            return child
    return None


def test_sigsegv_in_worker_is_a_clear_error_and_next_chat_works(home: Path) -> None:
    db = home / "data" / "history.db"
    proc = _start_long_chat(home)
    try:
        wait_until(lambda: _reply_saved(db), what="reply streaming")
        worker = _worker_of(proc)
        assert worker is not None
        worker.send_signal(signal.SIGSEGV)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "SIGSEGV" in err and "Traceback" not in err
    assert db_rows(db, "SELECT state FROM messages WHERE role = 'assistant'") == [("error",)]
    again = tramontane("chat", "--max-tokens", "4", "hello")
    assert again.returncode == 0 and again.stdout.strip()


def test_doctor_json_runs_the_smoke_inference() -> None:
    out = tramontane("doctor", "--json", "--quick")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["smoke"]["ok"] is True
    assert report["smoke"]["llama"]["llama_cpp_python"]
    assert any(m["name"] == "smollm2-135m-instruct" for m in report["models"])
    assert report["ollama"]["answers"] in (True, False)


def test_models_fit_json_gives_the_bytes_behind_the_verdict() -> None:
    out = tramontane("models", "fit", "codestral-22b", "--quant", "Q8_0", "--ctx", "8192", "--json")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["quant"] == "Q8_0" and row["fit"]["kv_cache"] == 8192 * 224 * 1024
    for key in ("weights", "kv_cache", "compute", "total", "verdict"):
        assert key in row["fit"]
    every = json.loads(tramontane("models", "fit", "--json").stdout)
    assert len(every) >= 28


def test_models_list_and_refusals(smollm2: Path) -> None:
    listing = tramontane("models", "list")
    assert listing.returncode == 0 and "Recommended for chat" in listing.stdout
    assert "smollm2-135m-instruct" in listing.stdout
    refused = tramontane("models", "rm", "smollm2")
    assert refused.returncode == 1 and "pip" in refused.stderr
    unknown = tramontane("models", "pull", "no-such-model")
    assert unknown.returncode == 1 and "not in the catalog" in unknown.stderr
    fit_file = json.loads(tramontane("models", "fit", str(smollm2), "--json").stdout)
    assert fit_file[0]["fit"]["verdict"] in ("cpu", "gpu", "partial")


def test_a_file_alone_opens_the_code_pane(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tramontane FILE`, as the desktop entry's `Exec=tramontane %f` calls it."""
    from app.ui.cli import build_parser, file_shortcut

    commands = set(build_parser().get_default("commands"))
    assert {"chat", "code", "complete", "plugins"} <= commands
    path = tmp_path / "calc.py"
    path.write_text("x = 1\n")
    assert file_shortcut([str(path)], commands) == ["code", str(path)]
    assert file_shortcut(["chat"], commands) == ["chat"]
    assert file_shortcut([str(tmp_path / "missing.py")], commands) == [str(tmp_path / "missing.py")]
