"""Models on disk, found with no network, and turning a name the user typed into a model.

Sources: the starter packages, Tramontane's own models folder, Ollama's store and the Hugging
Face cache. Each model says who owns its file and which backends can run it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.errors import ModelNotFoundError
from app.models import other_stores, starters
from app.models.catalog import CatalogModel, load_catalog
from app.models.gguf_file import SPLIT_PART, read_header, split_parts

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"  # the fallback: small machines, fast tests
CODE_STARTER = starters.QWEN_CODER.id
QWEN_CHAT_MIN_RAM = 6 * 2**30  # the Qwen starter chats by default from this much RAM up
_QUANT_IN_NAME = re.compile(r"(?i)(IQ\d_[A-Z]+|Q\d_K_[SML]|Q\d_K|Q\d_\d|F16|BF16|F32)")


@dataclass(frozen=True)
class LocalModel:
    """One GGUF on disk and where it came from."""

    name: str
    path: Path
    source: str  # "starter package", "models folder", "ollama", "huggingface", "path"
    catalog: CatalogModel | None = None
    owner: str = "tramontane"  # whose file it is: tramontane, package, ollama, huggingface
    backends: list[str] = field(default_factory=lambda: ["llama.cpp"])
    detail: str = ""
    starter: str = ""  # a chunked starter's id: assembled on first use (see `ready`)

    @property
    def assembled(self) -> bool:
        return self.path.is_file()

    @property
    def parts(self) -> list[Path]:
        """Its files: one, or every part of a model published in parts."""
        return split_parts(self.path)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.parts if p.exists())

    @property
    def chat_tuned(self) -> bool:
        return self.catalog.chat_tuned if self.catalog else True

    @property
    def quant(self) -> str:
        found = _QUANT_IN_NAME.search(self.path.name) or _QUANT_IN_NAME.search(self.name)
        if found:
            return found.group(1).upper()
        if self.catalog and len(self.catalog.quants) == 1:
            return self.catalog.quants[0].name
        return ""


def match_catalog(name: str, catalog: dict[str, CatalogModel]) -> CatalogModel | None:
    """The catalog entry a file or server name belongs to: by its file patterns, Ollama tags,
    id and aliases, or (for a Hugging Face id a vLLM server lists, "mistralai/Codestral-22B-
    v0.1") the patterns without their .gguf ending."""
    lowered = name.lower()
    base = lowered.rsplit("/", 1)[-1]
    for entry in catalog.values():
        if any(fnmatch.fnmatch(lowered, pat.lower()) for pat in entry.files):
            return entry
        if any(q.ollama and q.ollama.lower() == lowered for q in entry.quants):
            return entry
        if base in (n.lower() for n in entry.names()):
            return entry
        if any(fnmatch.fnmatch(base, pat.lower().removesuffix(".gguf")) for pat in entry.files):
            return entry
    return None


def find_local(models_dir: Path, user_catalog: Path | None = None,
               other_tools: bool = True) -> list[LocalModel]:
    """Every model usable now, with no network."""
    catalog = load_catalog(user_catalog)
    found: list[LocalModel] = []
    smol = starters.smollm2_path()
    if smol:
        found.append(LocalModel("smollm2-135m-instruct", smol, "starter package",
                                catalog.get("smollm2-135m-instruct"), owner="package"))
    for chunked in starters.CHUNKED.values():
        if chunked.installed() or chunked.target(models_dir).is_file():
            found.append(LocalModel(chunked.id, chunked.target(models_dir), "starter package",
                                    catalog.get(chunked.id), starter=chunked.id,
                                    detail="" if chunked.target(models_dir).is_file()
                                    else "assembled on first use"))
    seen = {m.path.resolve() for m in found}
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.gguf")):
            part = SPLIT_PART.search(path.name)
            if part is not None and part.group(1) != "00001":
                continue  # a later part: the first stands for the model
            name = path.name[:part.start()] if part else path.stem
            if path.resolve() not in seen:
                found.append(LocalModel(name, path, "models folder",
                                        match_catalog(path.name, catalog)))
    if other_tools:
        for f in other_stores.ollama_models():
            found.append(LocalModel(f.name, f.path, "ollama", match_catalog(f.name, catalog),
                                    owner="ollama", backends=["llama.cpp", "ollama"],
                                    detail=f.detail))
        for f in other_stores.huggingface_models():
            found.append(LocalModel(f.name, f.path, "huggingface",
                                    match_catalog(f.path.name, catalog), owner="huggingface",
                                    detail=f.detail))
    return found


def default_model(purpose: str, ram_total: int) -> str:
    """The model to use when config.toml names none: the Qwen coder starter for code, and for
    chat where memory allows; SmolLM2 otherwise. TRAMONTANE_DEFAULT_MODEL pins one."""
    pinned = os.environ.get("TRAMONTANE_DEFAULT_MODEL", "").strip()
    if pinned:
        return pinned
    if starters.QWEN_CODER.installed() and (purpose == "code" or ram_total >= QWEN_CHAT_MIN_RAM):
        return CODE_STARTER
    return DEFAULT_CHAT_MODEL


def ready(model: LocalModel, models_dir: Path) -> LocalModel:
    """The model with its file on disk: a chunked starter is assembled now if it is not yet."""
    if model.starter and not model.path.is_file():
        assembled = starters.CHUNKED[model.starter].path(models_dir, assemble=True)
        if assembled is None:
            raise ModelNotFoundError(f"{model.name}'s packages are not installed; run "
                                     "`make install`.")
        return replace(model, path=assembled, detail="")
    return model


def matching(name: str, models: list[LocalModel], stems: bool = False) -> list[LocalModel]:
    """The models `name` means: by their own or file name first (`stems`: or the file name
    without .gguf, as `models rm` counts ambiguity), then by catalog id or alias, each once."""
    lowered = name.lower()
    exact = [m for m in models if lowered in (m.name.lower(), m.path.name.lower())
             or (stems and lowered == m.path.stem.lower())]
    by_catalog = [m for m in models if m not in exact and m.catalog
                  and lowered in map(str.lower, m.catalog.names())]
    return exact + by_catalog


def resolve(name: str, models_dir: Path, user_catalog: Path | None = None) -> LocalModel:
    """A model by catalog id, alias, file name, Ollama name, or path to a .gguf."""
    name = name.strip() or DEFAULT_CHAT_MODEL
    as_path = Path(name).expanduser()
    if name.endswith(".gguf") or as_path.is_file():
        if not as_path.is_file():
            raise ModelNotFoundError(f"No model file at {as_path}.")
        read_header(as_path)
        entry = match_catalog(as_path.name, load_catalog(user_catalog))
        return LocalModel(as_path.stem, as_path, "path", entry)
    models = find_local(models_dir, user_catalog)
    for model in matching(name, models):
        model = ready(model, models_dir)
        read_header(model.path)
        return model
    known = ", ".join(m.name for m in models) or "none"
    raise ModelNotFoundError(
        f"Unknown model '{name}'. Models on this machine: {known}. "
        "Give a catalog id, a name from `tramontane models list`, or a path to a .gguf file."
    )
