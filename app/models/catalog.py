"""The model catalog: the shipped models.toml, with the user's own models.toml merged over it
by id. A bad entry is reported with the file, the entry and the field.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ConfigError

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "name": str, "family": str, "purpose": str, "params_b": (int, float),
    "license": str, "capabilities": list, "chat_format": str, "fim_format": str,
    "chat_tuned": bool, "context_length": int, "starter": str, "aliases": list, "files": list,
    "arch": dict, "quant": list,
}
_ARCH_FIELDS = ("layers", "heads", "kv_heads", "head_dim", "embedding", "feed_forward", "vocab",
                "sliding_window", "swa_layers", "experts", "experts_used")
_QUANT_FIELDS: dict[str, type] = {"name": str, "file": str, "size": int, "sha256": str,
                                  "hf_repo": str, "ollama": str}
_REQUIRED = ("id", "name", "family", "capabilities")
CHAT_FORMATS = {"auto", "plain", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
                "mistral-v7-tekken"}

# How much of the full-precision quality a quant keeps, roughly (llama.cpp perplexity tables):
# the recommendation weighs parameters by it.
QUANT_QUALITY = {
    "Q2_K": 0.60, "Q3_K_S": 0.70, "Q3_K_M": 0.75, "Q3_K_L": 0.78, "Q4_0": 0.84, "Q4_1": 0.86,
    "Q4_K_S": 0.88, "Q4_K_M": 0.90, "Q5_0": 0.92, "Q5_K_S": 0.94, "Q5_K_M": 0.95, "Q6_K": 0.98,
    "Q8_0": 1.0, "F16": 1.0, "BF16": 1.0,
}


@dataclass(frozen=True)
class Arch:
    """The figures a memory estimate needs."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    embedding: int
    feed_forward: int
    vocab: int
    sliding_window: int = 0
    swa_layers: int = 0
    experts: int = 0  # mixture of experts: experts per layer (0 = a dense model)
    experts_used: int = 0  # experts each token goes through


@dataclass(frozen=True)
class Quant:
    name: str
    file: str
    size: int
    sha256: str = ""
    hf_repo: str = ""
    ollama: str = ""

    @property
    def quality(self) -> float:
        return QUANT_QUALITY.get(self.name.upper(), 0.8)


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    family: str
    capabilities: list[str]
    purpose: str = "chat"
    params_b: float = 0.0
    license: str = ""
    chat_format: str = "auto"
    fim_format: str = ""
    chat_tuned: bool = True
    context_length: int = 4096
    starter: str = ""
    aliases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    arch: Arch | None = None
    quants: list[Quant] = field(default_factory=list)

    def names(self) -> list[str]:
        return [self.id, *self.aliases]

    def quant(self, name: str | None) -> Quant:
        if not self.quants:
            raise ConfigError(f"{self.id} lists no quant in the catalog.")
        if name is None:
            default = [q for q in self.quants if q.name.upper() == "Q4_K_M"]
            return default[0] if default else self.quants[0]
        for q in self.quants:
            if q.name.upper() == name.upper():
                return q
        raise ConfigError(f"{self.id} has no quant {name}; it has "
                          f"{', '.join(q.name for q in self.quants)}.")


def shipped_catalog_path() -> Path:
    """models.toml at the repository root, or where a wheel install puts it."""
    here = Path(__file__).resolve().parents[2] / "models.toml"
    if here.is_file():
        return here
    return Path(sys.prefix) / "share" / "tramontane" / "models.toml"


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}. Fix the file or remove it.") from exc
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: `model` must be an array of tables ([[model]]).")
    return entries


def _validate(path: Path, index: int, entry: dict[str, Any], partial: bool) -> None:
    label = f"{path}: model #{index + 1} ({entry.get('id', 'no id')})"
    for key, value in entry.items():
        expected = _FIELDS.get(key)
        if expected is None:
            raise ConfigError(f"{label}: unknown field `{key}`.")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{label}: field `{key}` has the wrong type ({value!r}).")
    for key in ("id",) if partial else _REQUIRED:
        if key not in entry:
            raise ConfigError(f"{label}: field `{key}` is missing.")
    fmt = entry.get("chat_format")
    if fmt is not None and fmt not in CHAT_FORMATS:
        raise ConfigError(f"{label}: field `chat_format` must be one of {sorted(CHAT_FORMATS)}.")
    arch = entry.get("arch", {})
    for key, value in arch.items():
        if key not in _ARCH_FIELDS:
            raise ConfigError(f"{label}: unknown field `arch.{key}`.")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{label}: field `arch.{key}` must be a whole number ≥ 0.")
    if arch and not partial:
        missing = [k for k in _ARCH_FIELDS[:7] if k not in arch]
        if missing:
            raise ConfigError(f"{label}: field `arch.{missing[0]}` is missing.")
    for qi, quant in enumerate(entry.get("quant", [])):
        for key, value in quant.items():
            if key not in _QUANT_FIELDS:
                raise ConfigError(f"{label}: quant #{qi + 1}: unknown field `{key}`.")
            if not isinstance(value, _QUANT_FIELDS[key]) or isinstance(value, bool):
                raise ConfigError(f"{label}: quant #{qi + 1}: field `{key}` has the wrong type.")
        for key in ("name", "file", "size"):
            if key not in quant:
                raise ConfigError(f"{label}: quant #{qi + 1}: field `{key}` is missing.")


def _build(values: dict[str, Any]) -> CatalogModel:
    values = dict(values)
    arch = values.pop("arch", None)
    quants = values.pop("quant", [])
    return CatalogModel(**values, arch=Arch(**arch) if arch else None,
                        quants=[Quant(**q) for q in quants])


def load_catalog(user_file: Path | None = None) -> dict[str, CatalogModel]:
    """Shipped entries, then the user's entries added or merged over them by id."""
    merged: dict[str, dict[str, Any]] = {}
    shipped = shipped_catalog_path()
    for i, entry in enumerate(_read(shipped)):
        _validate(shipped, i, entry, partial=False)
        merged[entry["id"]] = dict(entry)
    if user_file is not None and user_file.is_file():
        for i, entry in enumerate(_read(user_file)):
            _validate(user_file, i, entry, partial=entry.get("id") in merged)
            merged.setdefault(entry["id"], {}).update(entry)
    return {mid: _build(values) for mid, values in merged.items()}
