"""How long a thinking model may think: [params] think_budget_s when set; else the time the
speed model predicts this machine takes to decode half the reply's tokens, so that the answer
gets its turn within the time the whole reply was predicted to take, even on a busy machine."""

from __future__ import annotations

import functools
from pathlib import Path

from app.engine.backend import ModelRef, Params
from app.errors import TramontaneError
from app.models import speed as speedmod
from app.models.gguf_file import read_header
from app.models.hardware import Hardware

THINK_MAX_S = 120.0  # never longer than this, however long the reply may be


def think_seconds(data_dir: Path, hardware: Hardware, model: ModelRef, params: Params) -> float:
    """The budget in seconds; 0 (half the reply's tokens, counted) with no prediction: a model
    on a server, or no calibration of this machine yet."""
    if params.think_budget_s > 0:
        return params.think_budget_s
    tps = _decode_tps(data_dir, hardware, model.path, model.gpu_layers)
    return min(THINK_MAX_S, params.max_tokens / 2 / tps) if tps > 0 else 0.0


def _decode_tps(data_dir: Path, hardware: Hardware, path: Path | None, gpu_layers: int) -> float:
    if path is None:
        return 0.0
    measured = speedmod.load_cached(data_dir, hardware)
    if measured is None:
        return 0.0
    try:
        shape = _shape(path, path.stat().st_mtime_ns)
    except (OSError, ValueError, TramontaneError):
        return 0.0
    return speedmod.predict(shape, hardware, measured, max(0, gpu_layers)).decode_tps


@functools.lru_cache(maxsize=8)
def _shape(path: Path, mtime_ns: int) -> speedmod.ModelShape:
    """A model file's shape, read once per version of the file."""
    return speedmod.shape_of_header(read_header(path))
