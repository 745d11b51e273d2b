"""SIGKILL `tramontane chat` at random points (loading, prompt evaluation, decoding) against the
Qwen coder starter, and check after each kill: the question was kept, the partial reply saved
is a prefix of what was streamed, SQLite's integrity_check is ok, and no worker is alive one
second after the kill.

Run: .venv/bin/python bench/kill_soak.py [--kills 50] [--model qwen2.5-coder-1.5b-instruct]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRAMONTANE_HOME", tempfile.mkdtemp(prefix="tram-soak-"))

from bench.common import starter_path, table, write  # noqa: E402

QUESTION = "Explain, step by step, how a hash map handles collisions. Question {n}."


def one_kill(n: int, model: str, delay: float) -> dict[str, object]:
    exe = Path(sys.executable).parent / "tramontane"
    app = subprocess.Popen([str(exe), "chat", "-m", model, "--max-tokens", "400",
                            QUESTION.format(n=n)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    parent = psutil.Process(app.pid)
    streamed = b""
    os.set_blocking(app.stdout.fileno(), False)  # type: ignore[union-attr]
    deadline = time.monotonic() + delay
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and app.poll() is None:
        with contextlib.suppress(psutil.Error):
            workers = parent.children(recursive=True) or workers
        chunk = app.stdout.read() if app.stdout else None  # type: ignore[union-attr]
        streamed += chunk or b""
        time.sleep(0.01)
    app.send_signal(signal.SIGKILL)
    app.wait()
    streamed += app.stdout.read() or b"" if app.stdout else b""  # type: ignore[union-attr]
    killed_at = time.monotonic()
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        if time.monotonic() - killed_at > 1.0:
            break
        time.sleep(0.01)
    worker_alive = any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    for w in workers:  # never leave one behind for the next round
        if w.is_running():
            w.kill()
    db = Path(os.environ["TRAMONTANE_HOME"]) / "data" / "history.db"
    question = QUESTION.format(n=n)
    if not db.exists():  # killed before the history was ever created
        return {"kill": n, "delay_s": round(delay, 2), "streamed_chars": len(streamed),
                "question_kept": False, "saved_reply_chars": 0, "reply_is_prefix": True,
                "integrity": "ok", "worker_alive_after_1s": worker_alive}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        # this run's chat, found by its own question (a kill before it existed finds none)
        rows = con.execute("SELECT role, content FROM messages WHERE chat_id = (SELECT chat_id "
                           "FROM messages WHERE role = 'user' AND content = ?) ORDER BY id",
                           (question,)).fetchall()
    kept = any(role == "user" and content == question for role, content in rows)
    reply = next((content for role, content in rows if role == "assistant"), "")
    text = streamed.decode("utf-8", "replace")
    return {"kill": n, "delay_s": round(delay, 2), "streamed_chars": len(text),
            "question_kept": kept, "saved_reply_chars": len(reply),
            "reply_is_prefix": text.startswith(reply), "integrity": integrity,
            "worker_alive_after_1s": worker_alive}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    starter_path(args.model)  # assemble a split starter before the clock matters
    rng = random.Random(args.seed)
    runs = [one_kill(n, args.model, rng.uniform(0.3, 8.0)) for n in range(args.kills)]
    # a question is kept from the moment the chat exists; a kill during start-up is before it
    started = [r for r in runs if r["question_kept"] or r["streamed_chars"]]
    summary = {
        "kills": len(runs), "killed_after_the_question_was_saved": len(started),
        "questions_lost": sum(1 for r in runs if r["streamed_chars"] and not r["question_kept"]),
        "replies_not_a_prefix": sum(1 for r in runs if not r["reply_is_prefix"]),
        "integrity_failures": sum(1 for r in runs if r["integrity"] != "ok"),
        "workers_alive_after_1s": sum(1 for r in runs if r["worker_alive_after_1s"]),
    }
    print(table([summary]))
    clear = not (summary["questions_lost"] or summary["replies_not_a_prefix"]
                 or summary["integrity_failures"] or summary["workers_alive_after_1s"])
    print("all clear" if clear else "NOT all clear")
    print(f"wrote {write('kill_soak', summary | {'runs': runs, 'all_clear': clear})}")


if __name__ == "__main__":
    main()
