"""Test helpers shared by several modules (fixtures live in conftest.py): the real command,
waiting on a condition instead of sleeping, the app around a backend, recorded machine figures."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.models import speed
from app.models.hardware import cpu

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from app.engine.backend import Backend
    from app.ui.tui.app import TramontaneApp
    from app.ui.tui.message_view import MessageView

BIN = Path(sys.executable).parent

# Figures calibrated on a 2-core AMD EPYC VM (the CI machine's kind) by `tramontane doctor`.
RECORDED = speed.MachineSpeed(
    bandwidth=37.0e9, efficiency=0.86, layer_s=197e-6, prompt_flops=300e9,
    head_s=13e-6, calibrated_with="smollm2-135m-instruct + qwen2.5-coder-1.5b-instruct",
    measured_at=1.8e9,
)


def write_machine_speed(data_dir: Path, figures: speed.MachineSpeed = RECORDED) -> None:
    """Cache `figures` as this machine's, so predictions use them without measuring."""
    from dataclasses import replace

    speed.save(data_dir, replace(figures, cpu=cpu()[0]))


# A file with an off-by-one in mean(), for the edit tests (CLI, code pane, terminal).
BUGGY_MEAN = '''import math


def mean(values):
    """The arithmetic mean of a non-empty list."""
    total = 0
    for i in range(len(values) - 1):
        total += values[i]
    return total / len(values)
'''


def tramontane(*args: str, input: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `tramontane` command."""
    return subprocess.run(
        [str(BIN / "tramontane"), *args], input=input, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll a condition (a file, a row, a process) instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def db_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    uri = f"file:{path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=5) as db:
        return list(db.execute(sql).fetchall())


# -- small HTTP servers standing for others' (a hub, an OpenAI server) ------------------------

def send_json(handler: Any, body: object, status: int = 200) -> None:
    """Answer an http.server request with JSON (`body` already bytes is sent as it is)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def start_sse(handler: Any) -> None:
    """Answer an http.server POST with an event stream (its body read and dropped)."""
    handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()


# -- the app in a pilot ---------------------------------------------------------------------

def make_app(backend: Backend, chat_id: int | None = None) -> TramontaneApp:
    from app.session.front import Tramontane
    from app.ui.tui.app import TramontaneApp

    return TramontaneApp(Tramontane.open(chat_backend=backend), chat_id)


async def settle(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 30.0,
                 what: str = "") -> None:
    """Let the app run until `predicate` holds (workers, streams, screens)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.01)


def views(app: TramontaneApp) -> list[MessageView]:
    from app.ui.tui.message_view import MessageView

    return list(app.query(MessageView))


async def send(pilot: Pilot[None], text: str) -> None:
    from app.ui.tui.app import TramontaneApp
    from app.ui.tui.prompt import PromptBox

    app = pilot.app
    assert isinstance(app, TramontaneApp)
    prompt = app.query_one(PromptBox)
    prompt.focus()
    prompt.insert(text)
    await pilot.press("enter")


def split_gguf(source: Path, folder: Path, stem: str, parts: int = 3) -> list[Path]:
    """`source` rewritten as a model published in parts (`STEM-0000i-of-0000n.gguf`), with the
    gguf package's own writer, as llama.cpp's gguf-split makes them."""
    import math

    import gguf

    reader = gguf.GGUFReader(source)
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    writer = gguf.GGUFWriter(folder / f"{stem}.gguf", arch,
                             split_max_tensors=math.ceil(len(reader.tensors) / parts))
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype,
                               tensor.data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return sorted(folder.glob(f"{stem}-*-of-*.gguf"))


def link_starter(assembled: Path, models: Path) -> Path:
    """An assembled Qwen starter in another models folder, as a hard link (no copy), with
    the note that it was hashed (the same inode: the hash holds)."""
    from app.models import starters

    models.mkdir(parents=True, exist_ok=True)
    linked = models / assembled.name
    if not linked.exists():
        os.link(assembled, linked)
        starter = next(s for s in starters.CHUNKED.values() if s.file == assembled.name)
        starters.remember(linked, starter.expected_sha256())
    return linked
