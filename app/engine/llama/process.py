"""A handle on one spawned worker process: its pipe, read without blocking the event loop,
and a plain-words account of how it ended when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Iterator

from app.engine.llama.messages import Command, Exit, Reply
from app.engine.llama.worker import worker_main

_SIGNAL_WORDS = {
    signal.SIGKILL: "killed; the system may have run out of memory",
    signal.SIGSEGV: "segmentation fault inside llama.cpp",
    signal.SIGABRT: "aborted by llama.cpp",
    signal.SIGBUS: "bus error; the model file may have changed on disk",
    signal.SIGILL: "illegal instruction; llama.cpp was built for another CPU",
    signal.SIGTERM: "terminated",
}


@contextlib.contextmanager
def _process_stdio() -> Iterator[None]:
    """Start processes with the real stdio: a TUI replaces sys.stderr with an object whose
    fileno() is not a real file, and multiprocessing hands that number to the child."""
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.__stdout__ or sys.stdout
    sys.stderr = sys.__stderr__ or sys.stderr
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class WorkerDied(Exception):
    """The worker process ended without being asked to."""


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"ended by signal {-exitcode}"
        words = _SIGNAL_WORDS.get(sig, "")
        return f"ended by {sig.name}" + (f" ({words})" if words else "")
    return f"exited with code {exitcode}"


LOG_LIMIT = 5 * 2**20  # a worker log this big is moved aside (one old copy kept) at a start


def rotate_log(log_path: str | None) -> None:
    """Keep the worker log bounded: over LOG_LIMIT it becomes `NAME.1` (replacing the old)."""
    if not log_path:
        return
    with contextlib.suppress(OSError):
        if os.path.getsize(log_path) > LOG_LIMIT:
            os.replace(log_path, log_path + ".1")


def load_failure_reason(log_path: str | None, since: int) -> str:
    """The last error line llama.cpp wrote to the worker log after byte `since`, if any."""
    if not log_path:
        return ""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(since)
            tail = fh.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines()
             if ("error" in ln.lower() or "failed" in ln.lower()) and ln.strip()]
    return lines[-1][:300] if lines else ""


def log_size(log_path: str | None) -> int:
    try:
        return os.path.getsize(log_path) if log_path else 0
    except OSError:
        return 0


class WorkerProcess:
    """One llama.cpp worker. Messages arrive on an asyncio queue; `None` there means it died."""

    def __init__(self, log_path: str | None) -> None:
        rotate_log(log_path)
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker_main, args=(child, log_path, os.getpid()), daemon=True,
            name="tramontane-worker"
        )
        with _process_stdio():
            self.proc.start()
        child.close()
        self.queue: asyncio.Queue[Reply | None] = asyncio.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dead = False
        self.attach()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def attach(self) -> None:
        """Read the pipe from the running event loop (re-attach when the loop changed)."""
        loop = asyncio.get_running_loop()
        if loop is self.loop or self.dead:
            return
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        self.loop = loop
        self.queue = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                self.queue.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            self._mark_dead()

    def _mark_dead(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        self.queue.put_nowait(None)

    def send(self, msg: Command) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError) as exc:
            self._mark_dead()
            raise WorkerDied(self.exit_words()) from exc

    async def recv(self) -> Reply:
        msg = await self.queue.get()
        if msg is None:
            self.queue.put_nowait(None)
            await asyncio.to_thread(self.proc.join, 2.0)
            raise WorkerDied(self.exit_words())
        return msg

    def exit_words(self) -> str:
        return describe_exit(self.proc.exitcode)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(2.0)
        self._mark_dead()
        self.conn.close()

    async def stop(self) -> None:
        """Ask the worker to exit so its memory goes back to the OS; kill it if it lingers."""
        if not self.dead:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(Exit())
            await asyncio.to_thread(self.proc.join, 1.0)
        self.kill()
