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
    "id": str, "name": str, "family": str, "params_b": (int, float), "license": str,
    "capabilities": list, "chat_format": str, "fim_format": str, "chat_tuned": bool,
    "context_length": int, "starter": str, "aliases": list, "files": list,
}
_REQUIRED = ("id", "name", "family", "capabilities")
CHAT_FORMATS = {"auto", "mistral-v3", "plain"}


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    family: str
    capabilities: list[str]
    params_b: float = 0.0
    license: str = ""
    chat_format: str = "auto"
    fim_format: str = ""
    chat_tuned: bool = True
    context_length: int = 4096
    starter: str = ""
    aliases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [self.id, *self.aliases]


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
    return {mid: CatalogModel(**values) for mid, values in merged.items()}
