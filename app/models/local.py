"""Models on disk, found with no network, and turning a name the user typed into a model."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelNotFoundError
from app.models import starters
from app.models.catalog import CatalogModel, load_catalog
from app.models.gguf_file import read_header

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class LocalModel:
    """One GGUF on disk and where it came from."""

    name: str
    path: Path
    source: str  # "starter package", "models folder", "path"
    catalog: CatalogModel | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    @property
    def chat_tuned(self) -> bool:
        return self.catalog.chat_tuned if self.catalog else True


def _match_catalog(path: Path, catalog: dict[str, CatalogModel]) -> CatalogModel | None:
    for entry in catalog.values():
        if any(fnmatch.fnmatch(path.name.lower(), pat.lower()) for pat in entry.files):
            return entry
    return None


def find_local(models_dir: Path, user_catalog: Path | None = None) -> list[LocalModel]:
    """Every model usable now: the starter packages and the GGUF files in the models folder."""
    catalog = load_catalog(user_catalog)
    found: list[LocalModel] = []
    smol = starters.smollm2_path()
    if smol:
        found.append(LocalModel("smollm2-135m-instruct", smol, "starter package",
                                catalog.get("smollm2-135m-instruct")))
    gemma = starters.gemma_path(models_dir)
    if gemma:
        found.append(LocalModel("gemma3-270m", gemma, "starter package", catalog.get("gemma3-270m")))
    seen = {m.path.resolve() for m in found}
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.gguf")):
            if path.resolve() in seen:
                continue
            entry = _match_catalog(path, catalog)
            found.append(LocalModel(path.stem, path, "models folder", entry))
    return found


def resolve(name: str, models_dir: Path, user_catalog: Path | None = None) -> LocalModel:
    """A model by catalog id, alias, file name in the models folder, or path to a .gguf."""
    name = name.strip() or DEFAULT_CHAT_MODEL
    as_path = Path(name).expanduser()
    if name.endswith(".gguf") or as_path.is_file():
        if not as_path.is_file():
            raise ModelNotFoundError(f"No model file at {as_path}.")
        read_header(as_path)
        catalog = load_catalog(user_catalog)
        entry = _match_catalog(as_path, catalog)
        return LocalModel(as_path.stem, as_path, "path", entry)
    models = find_local(models_dir, user_catalog)
    lowered = name.lower()
    for model in models:
        names = model.catalog.names() if model.catalog else []
        if lowered in (model.name.lower(), model.path.name.lower(), *map(str.lower, names)):
            read_header(model.path)
            return model
    known = ", ".join(m.name for m in models) or "none"
    raise ModelNotFoundError(
        f"Unknown model '{name}'. Models on this machine: {known}. "
        "Give a catalog id, a name from `tramontane models list`, or a path to a .gguf file."
    )
