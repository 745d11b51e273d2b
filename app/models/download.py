"""Pulling a catalog quant into the models folder with huggingface_hub: a free-space check
before starting, progress, resume of an interrupted download (huggingface_hub keeps the
partial file in a staging folder and asks for the rest with a Range request), and a sha256
check before the file gets its final name. The expected sha256 is the catalog's, else the one
the hub publishes for the LFS file (its X-Linked-Etag); with neither, nothing is downloaded.
A file that fails the check is deleted, never used, and a file already at the final name counts
as downloaded only when its hash matches.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import TramontaneError
from app.models.catalog import CatalogModel, Quant
from app.models.gguf_file import split_parts
from app.sizes import human_size

SPACE_MARGIN = 256 * 2**20


class DownloadError(TramontaneError):
    """A pull that could not finish, or whose file was wrong."""


class DownloadCancelled(DownloadError):
    pass


@dataclass
class PullProgress:
    done: int
    total: int
    status: str = "downloading"


def check_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN:
        raise DownloadError(
            f"Not enough free space in {folder}: the file needs {human_size(needed)} and "
            f"{human_size(free)} are free. Free some space or set another models folder."
        )


def sha256_of(path: Path, on_block: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            if on_block:
                on_block(len(block))
    return digest.hexdigest()


def _progress_class(report: Callable[[PullProgress], None], cancel: threading.Event) -> Any:
    from tqdm.auto import tqdm

    class Reporter(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            if cancel.is_set():
                raise DownloadCancelled("The download was cancelled; `models pull` resumes it.")
            self._done += int(n or 0)
            report(PullProgress(self._done, self._total))
            return None

    return Reporter


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
STAGING = ".downloading"  # inside the models folder: partial files, never listed as models


def hub_sha256(repo: str, filename: str, endpoint: str | None = None) -> str:
    """The sha256 the hub publishes for an LFS file ("" when the file is not in LFS)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(repo, filename, endpoint=endpoint), timeout=10)
    etag = (meta.etag or "").lower()
    return etag if _SHA256.match(etag) else ""


def _fail(file: str, exc: Exception) -> DownloadError:
    reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(".")
    return DownloadError(f"Could not download {file}: {reason}. Run the same pull again to "
                         "resume.")


def pull(model: CatalogModel, quant: Quant, models_dir: Path,
         report: Callable[[PullProgress], None] = lambda p: None,
         cancel: threading.Event | None = None, endpoint: str | None = None) -> Path:
    """Download `quant` of `model` into `models_dir` (every part of a model published in
    parts, each verified against the sha256 the hub publishes); blocking (run it in a thread).
    The first part's path is the model's: llama.cpp loads the rest from beside it."""
    if not quant.hf_repo:
        raise DownloadError(f"{model.id} {quant.name} has no download source in the catalog.")
    parts = [p.name for p in split_parts(Path(quant.file))]
    targets = [models_dir / name for name in parts]
    if not all(t.is_file() for t in targets):
        check_space(models_dir, quant.size)  # before anything goes over the network
    for name in parts:
        # a model in one file: the catalog's sha256 if it has one; parts: the hub's, each
        expected = quant.sha256.lower() if len(parts) == 1 else ""
        _pull_file(quant.hf_repo, name, quant.size if len(parts) == 1 else 0, expected,
                   models_dir, report, cancel or threading.Event(), endpoint)
    report(PullProgress(quant.size, quant.size, "done"))
    return targets[0]


def _pull_file(repo: str, file: str, size: int, expected: str, models_dir: Path,
               report: Callable[[PullProgress], None], cancel: threading.Event,
               endpoint: str | None) -> Path:
    """One file from the hub into `models_dir`, through a staging folder (resumable), renamed
    only once its sha256 is the expected one (the hub's when none is given)."""
    from huggingface_hub import hf_hub_download

    target = models_dir / file
    if not expected:
        try:
            expected = hub_sha256(repo, file, endpoint)
        except Exception as exc:  # offline, hub errors: one line, no retries
            raise _fail(file, exc) from exc
        if not expected:
            raise DownloadError(
                f"Neither the catalog nor the hub gives a sha256 for {file}, so it could "
                "not be verified; nothing was downloaded. Add its sha256 to models.toml.")
    if target.is_file():
        report(PullProgress(0, target.stat().st_size, "verifying"))
        if sha256_of(target) == expected:
            return target
        # a file of the right name whose hash is wrong is replaced by a verified download
    if size:
        check_space(models_dir, size)
    staging = models_dir / STAGING / file
    try:
        path = Path(hf_hub_download(repo, file, local_dir=staging, endpoint=endpoint,
                                    tqdm_class=_progress_class(report, cancel)))
    except DownloadError:
        raise
    except Exception as exc:  # HTTP and OS errors, after huggingface_hub's own retries
        raise _fail(file, exc) from exc
    report(PullProgress(0, path.stat().st_size, "verifying"))
    actual = sha256_of(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{file} has sha256 {actual}, but {expected} was expected. The file was "
            "deleted; nothing was registered.")
    os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
