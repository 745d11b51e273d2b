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
