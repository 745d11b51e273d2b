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


SPLIT_FILE = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


def pull(model: CatalogModel, quant: Quant, models_dir: Path,
         report: Callable[[PullProgress], None] = lambda p: None,
         cancel: threading.Event | None = None, endpoint: str | None = None) -> Path:
    """Download `quant` of `model` into `models_dir`; blocking (run it in a thread)."""
    from huggingface_hub import hf_hub_download

    if not quant.hf_repo:
        raise DownloadError(f"{model.id} {quant.name} has no download source in the catalog.")
    if SPLIT_FILE.search(quant.file):
        raise DownloadError(
            f"{model.id} {quant.name} is published in parts, which Tramontane does not download "
            f"yet: fetch every part of {quant.file.split('-00001-of-')[0]} from {quant.hf_repo} "
            "into the models folder; llama.cpp loads it from the first part.")
    target = models_dir / quant.file
    if not target.is_file():
        check_space(models_dir, quant.size)  # before anything goes over the network
    expected = quant.sha256.lower()
    if not expected:
        try:
            expected = hub_sha256(quant.hf_repo, quant.file, endpoint)
        except Exception as exc:  # offline, hub errors: one line, no retries
            raise _fail(quant.file, exc) from exc
        if not expected:
            raise DownloadError(
                f"Neither the catalog nor the hub gives a sha256 for {quant.file}, so it could "
                "not be verified; nothing was downloaded. Add its sha256 to models.toml.")
    if target.is_file():
        report(PullProgress(0, target.stat().st_size, "verifying"))
        if sha256_of(target) == expected:
            report(PullProgress(quant.size, quant.size, "done"))
            return target
        # a file of the right name whose hash is wrong is replaced by a verified download
    check_space(models_dir, quant.size)
    staging = models_dir / STAGING / quant.file
    cancel = cancel or threading.Event()
    try:
        path = Path(hf_hub_download(
            quant.hf_repo, quant.file, local_dir=staging, endpoint=endpoint,
            tqdm_class=_progress_class(report, cancel),
        ))
    except DownloadError:
        raise
    except Exception as exc:  # HTTP and OS errors, after huggingface_hub's own retries
        raise _fail(quant.file, exc) from exc
    report(PullProgress(0, quant.size, "verifying"))
    actual = sha256_of(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{quant.file} has sha256 {actual}, but {expected} was expected. The file was "
            "deleted; nothing was registered.")
    os.replace(path, target)
    shutil.rmtree(staging, ignore_errors=True)
    report(PullProgress(quant.size, quant.size, "done"))
    return target
