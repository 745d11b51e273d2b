"""GGUF files other tools already downloaded: Ollama's store and the Hugging Face cache.

Both are read without a network and without the tools running. Ollama keeps manifests (JSON)
that point at content-addressed blobs; its model layer is a plain GGUF that llama.cpp loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"


@dataclass(frozen=True)
class FoundFile:
    name: str
    path: Path
    owner: str  # "ollama" or "huggingface"
    detail: str = ""  # Ollama manifest path, or the Hugging Face repo


def ollama_root() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def _ollama_name(manifest: Path, manifests_root: Path) -> str:
    """registry/namespace/model/tag -> `model:tag`, `namespace/model:tag` off the library."""
    parts = manifest.relative_to(manifests_root).parts
    if len(parts) < 4:
        return ":".join(parts[-2:])
    registry, namespace, model, tag = parts[-4:]
    prefix = "" if namespace == "library" else f"{namespace}/"
    if registry != "registry.ollama.ai":
        prefix = f"{registry}/{prefix}"
    return f"{prefix}{model}:{tag}"


def ollama_models(root: Path | None = None) -> list[FoundFile]:
    """Models in an Ollama store, by the names Ollama gives them (`mistral:7b`)."""
    root = root or ollama_root()
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    found = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for layer in data.get("layers", []):
            if layer.get("mediaType") != OLLAMA_MODEL_MEDIA:
                continue
            digest = str(layer.get("digest", "")).replace(":", "-")
            blob = root / "blobs" / digest
            if blob.is_file():
                found.append(FoundFile(_ollama_name(manifest, manifests), blob, "ollama",
                                       str(manifest)))
    return found


def huggingface_models() -> list[FoundFile]:
    """GGUF files in the Hugging Face cache (huggingface_hub's own scanner, offline)."""
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []
    try:
        cache = scan_cache_dir()
    except (CacheNotFound, OSError, ValueError):
        return []
    found = []
    for repo in cache.repos:
        for revision in repo.revisions:
            for f in revision.files:
                if f.file_name.endswith(".gguf"):
                    found.append(FoundFile(f"{repo.repo_id}/{f.file_name}", Path(f.file_path),
                                           "huggingface", repo.repo_id))
    return found


def delete_ollama(found: FoundFile, root: Path | None = None) -> None:
    """Remove the manifest, and the blob if no other manifest still uses it."""
    root = root or ollama_root()
    manifest = Path(found.detail)
    manifest.unlink(missing_ok=True)
    still_used = any(f.path == found.path for f in ollama_models(root))
    if not still_used:
        found.path.unlink(missing_ok=True)


def delete_huggingface(found: FoundFile) -> None:
    """Remove the snapshot link and the blob it points to."""
    link = found.path
    target = link.resolve()
    link.unlink(missing_ok=True)
    if target != link:
        target.unlink(missing_ok=True)
