"""Helpers shared by the benchmarks: a results folder, a table printer, machine facts."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    import psutil

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version()}


def write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys),
             "  ".join("-" * widths[k] for k in keys)]
    lines += ["  ".join(_fmt(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def starter_path(name: str) -> Path:
    """A starter model's file, assembled into the bench's models folder when it is split."""
    from app.session.context import AppContext

    return AppContext().resolve_model(name).path


async def token_rate(events: Any) -> float:
    """Decode tokens/s as a client sees a backend's stream: Token events after the first, over
    the time from the first to the last."""
    from contextlib import aclosing

    from app.engine.backend import Token

    t_first = t_last = 0.0
    n = 0
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, Token):
                n += 1
                t_last = time.perf_counter()
                t_first = t_first or t_last
    return (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0


LLAMA_SERVER_HELP = ("llama.cpp's llama-server, built from the llama-cpp-python sdist's "
                     "vendor/llama.cpp (cmake -B build && cmake --build build --target "
                     "llama-server)")


class LlamaServer:
    """llama.cpp's own server beside us, on a free port, for the duration of a `with`."""

    def __init__(self, binary: str, model: Path, *args: str, threads: int = 2,
                 ctx: int = 4096) -> None:
        self.cmd = [binary, "-m", str(model), "-c", str(ctx), "-t", str(threads),
                    "--host", "127.0.0.1", *args]
        self.url = ""
        self.proc: Any = None

    def __enter__(self) -> LlamaServer:
        import subprocess

        import httpx

        from tests.fixtures.openai_server import free_port

        port = free_port()
        self.proc = subprocess.Popen([*self.cmd, "--port", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {' '.join(self.cmd)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling for the server to come up, not timing anything
        raise RuntimeError("llama-server did not come up")

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def chat(self, body: dict[str, Any]) -> tuple[str, dict[str, Any], float]:
        """One non-streamed chat reply: its text, llama-server's timings, the wall time."""
        import httpx

        t0 = time.perf_counter()
        r = httpx.post(f"{self.url}/v1/chat/completions", json=body, timeout=600).json()
        return (r["choices"][0]["message"]["content"] or "", r.get("timings", {}),
                time.perf_counter() - t0)

    def first_token_s(self, body: dict[str, Any]) -> tuple[float, str]:
        """Streamed: seconds to the first text, and the whole text."""
        import json

        import httpx

        t0 = time.perf_counter()
        first, text = 0.0, ""
        with httpx.stream("POST", f"{self.url}/v1/chat/completions",
                          json=body | {"stream": True}, timeout=600) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        first = first or time.perf_counter() - t0
                        text += piece
        return first, text


def code_session(model: str) -> Any:
    """A completion session on `model` through its own llama.cpp worker (the benches' model,
    whatever config.toml says): `session.backend` is the worker."""
    from app.engine.llama.backend import LlamaBackend
    from app.session.complete import CompletionSession
    from app.session.context import AppContext

    ctx = AppContext()
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "bench.log")
    return CompletionSession.for_context(ctx, backend, model)
