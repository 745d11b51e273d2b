"""Pulling a catalog quant into the models folder with huggingface_hub: a free-space check
before starting, progress, resume of an interrupted download (huggingface_hub keeps the
partial file and asks for the rest with a Range request), and a sha256 check before the file
is registered. A file that fails the check is deleted, never used.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import TramontaneError
from app.models.catalog import CatalogModel, Quant

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
            f"Not enough free space in {folder}: the file needs {needed / 2**30:.2f} GiB and "
            f"{free / 2**30:.2f} GiB are free. Free some space or set another models folder."
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


def pull(model: CatalogModel, quant: Quant, models_dir: Path,
         report: Callable[[PullProgress], None] = lambda p: None,
         cancel: threading.Event | None = None, endpoint: str | None = None) -> Path:
    """Download `quant` of `model` into `models_dir`; blocking (run it in a thread)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if not quant.hf_repo:
        raise DownloadError(f"{model.id} {quant.name} has no download source in the catalog.")
    target = models_dir / quant.file
    if target.is_file() and target.stat().st_size == quant.size:
        return target
    check_space(models_dir, quant.size)
    cancel = cancel or threading.Event()
    try:
        path = Path(hf_hub_download(
            quant.hf_repo, quant.file, local_dir=models_dir, endpoint=endpoint,
            tqdm_class=_progress_class(report, cancel),
        ))
    except DownloadError:
        raise
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise DownloadError(f"Could not download {quant.file}: {exc}. Run the same pull again "
                            "to resume.") from exc
    except Exception as exc:  # httpx errors after huggingface_hub's own retries
        raise DownloadError(f"Could not download {quant.file}: {exc}. Run the same pull again "
                            "to resume.") from exc
    if quant.sha256:
        report(PullProgress(0, quant.size, "verifying"))
        actual = sha256_of(path)
        if actual != quant.sha256:
            path.unlink(missing_ok=True)
            raise DownloadError(
                f"{quant.file} has sha256 {actual}, but the catalog says {quant.sha256}. "
                "The file was deleted; nothing was registered."
            )
    report(PullProgress(quant.size, quant.size, "done"))
    return path
