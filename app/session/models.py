"""Model management as a user sees it: what is here, what fits, what to use, pull, remove.

One `ModelManager` serves the CLI's `models` commands and the models screen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from app.errors import ModelNotFoundError, TramontaneError
from app.models import fit as fitmod
from app.models import other_stores
from app.models.catalog import Arch, CatalogModel, Quant, load_catalog
from app.models.download import PullProgress, pull
from app.models.gguf_file import arch_of, read_header
from app.models.hardware import Hardware, probe
from app.models.local import LocalModel, find_local
from app.session.context import AppContext, stored_name

DEFAULT_FIT_CONTEXT = 8192


@dataclass
class ModelRow:
    """One line of the models table."""

    name: str
    quant: str
    size: int
    verdict: fitmod.FitVerdict | None
    installed: bool
    source: str
    backends: list[str] = field(default_factory=lambda: ["llama.cpp"])
    catalog_id: str = ""
    path: Path | None = None
    owner: str = ""  # for files on disk: tramontane, package, ollama, huggingface

    @property
    def ref_name(self) -> str:
        """The name `find`, `remove` and `use` take for this row."""
        return str(self.path) if self.source == "path" and self.path else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "catalog_id": self.catalog_id, "quant": self.quant,
                "size": self.size, "installed": self.installed, "source": self.source,
                "backends": self.backends, "path": str(self.path) if self.path else None,
                "fit": self.verdict.to_dict() if self.verdict else None}


@dataclass
class Recommendation:
    purpose: str
    model: CatalogModel
    quant: Quant
    context: int
    verdict: fitmod.FitVerdict

    def words(self) -> str:
        return (f"{self.purpose}: {self.model.id} {self.quant.name}, context "
                f"{self.context:,} tokens ({self.verdict.words()})")


class ModelManager:
    def __init__(self, ctx: AppContext, hardware: Hardware | None = None,
                 endpoint: str | None = None) -> None:
        self.ctx = ctx
        self._hardware = hardware
        self.endpoint = endpoint  # Hugging Face endpoint; None = huggingface_hub's default

    @property
    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = probe()
        return self._hardware

    @cached_property
    def catalog(self) -> dict[str, CatalogModel]:
        return load_catalog(self.ctx.paths.user_catalog)

    @property
    def models_dir(self) -> Path:
        return self.ctx.paths.models_dir

    def local(self) -> list[LocalModel]:
        return find_local(self.models_dir, self.ctx.paths.user_catalog)

    def catalog_model(self, name: str) -> CatalogModel:
        lowered = name.lower()
        for entry in self.catalog.values():
            if lowered in map(str.lower, entry.names()):
                return entry
        raise ModelNotFoundError(f"'{name}' is not in the catalog. `tramontane models list` "
                                 "shows the catalog and the models on disk.")

    # -- fit ---------------------------------------------------------------------------------

    def fit_file(self, path: Path, context: int | None = None, gpu_layers: int | None = None,
                 ) -> fitmod.FitVerdict:
        head = read_header(path)
        arch = arch_of(head)
        ctx = context or min(DEFAULT_FIT_CONTEXT, int(head.arch("context_length", 4096)))
        return fitmod.verdict(arch, head.tensor_bytes, ctx, self.hardware, gpu_layers)

    def fit_catalog(self, model: CatalogModel, quant: Quant, context: int | None = None,
                    gpu_layers: int | None = None) -> fitmod.FitVerdict:
        arch = self._arch(model)
        ctx = context or min(DEFAULT_FIT_CONTEXT, model.context_length)
        return fitmod.verdict(arch, quant.size, ctx, self.hardware, gpu_layers)

    def _arch(self, model: CatalogModel) -> Arch:
        if model.arch is None:
            raise TramontaneError(f"{model.id} has no [model.arch] figures in the catalog, so its "
                                  "memory cannot be estimated before download.")
        return model.arch

    def fit(self, name: str | None, quant: str | None = None, context: int | None = None,
            gpu_layers: int | None = None) -> list[ModelRow]:
        """One model (catalog id or .gguf path), or every catalog model and quant."""
        if name and (name.endswith(".gguf") or Path(name).is_file()):
            path = Path(name).expanduser()
            v = self.fit_file(path, context, gpu_layers)
            return [ModelRow(path.name, "", path.stat().st_size, v, True, "path", path=path)]
        models = [self.catalog_model(name)] if name else list(self.catalog.values())
        installed = {(m.catalog.id, m.quant) for m in self.local() if m.catalog}
        rows = []
        for model in models:
            quants = [model.quant(quant)] if quant else model.quants
            for q in quants:
                v = self.fit_catalog(model, q, context, gpu_layers)
                rows.append(ModelRow(model.id, q.name, q.size, v, (model.id, q.name) in installed,
                                     "catalog", catalog_id=model.id))
        return rows

    def rows(self) -> list[ModelRow]:
        """The models table: everything on disk, then catalog quants not downloaded."""
        rows = []
        on_disk = set()
        for m in self.local():
            try:
                v: fitmod.FitVerdict | None = self.fit_file(m.path)
            except TramontaneError:
                v = None
            if m.catalog:
                on_disk.add((m.catalog.id, m.quant))
            rows.append(ModelRow(m.name, m.quant, m.size, v, True, m.source, m.backends,
                                 m.catalog.id if m.catalog else "", m.path, m.owner))
        for model in self.catalog.values():
            for q in model.quants:
                if (model.id, q.name) not in on_disk and not model.starter:
                    rows.append(ModelRow(model.id, q.name, q.size, self.fit_catalog(model, q),
                                         False, "catalog", catalog_id=model.id))
        return rows

    def recommend(self) -> list[Recommendation]:
        """For chat and for code: the best model and quant that fit, and the largest context."""
        picks = []
        for purpose, wanted in (("chat", "chat"), ("code", "fim")):
            best: tuple[float, CatalogModel, Quant] | None = None
            for model in self.catalog.values():
                if wanted not in model.capabilities or model.arch is None or not model.chat_tuned:
                    continue
                if purpose == "chat" and model.purpose != "chat":
                    continue
                for q in model.quants:
                    ctx = min(DEFAULT_FIT_CONTEXT, model.context_length)
                    if not self.fit_catalog(model, q, ctx).fits:
                        continue
                    score = model.params_b * q.quality
                    if best is None or score > best[0]:
                        best = (score, model, q)
            if best is not None:
                _, model, q = best
                arch = self._arch(model)
                ctx = fitmod.largest_context(arch, q.size, self.hardware, model.context_length)
                picks.append(Recommendation(purpose, model, q, ctx,
                                            fitmod.verdict(arch, q.size, ctx, self.hardware)))
        return picks

    # -- actions -----------------------------------------------------------------------------

    def pull(self, name: str, quant: str | None = None,
             report: Callable[[PullProgress], None] = lambda p: None,
             cancel: threading.Event | None = None, endpoint: str | None = None) -> Path:
        model = self.catalog_model(name)
        return pull(model, model.quant(quant), self.models_dir, report, cancel,
                    endpoint or self.endpoint)

    def find(self, name: str) -> LocalModel:
        return self.ctx.resolve_model(name)

    def remove(self, name: str, confirm_owner: str | None = None) -> LocalModel:
        """Delete a model file we own; another tool's only when its owner is named."""
        model = self.find(name)
        if model.owner == "package":
            raise TramontaneError(f"{model.name} comes from a Python package; remove it with pip "
                                  "(it is the built-in starter model).")
        if model.owner not in ("tramontane",) and confirm_owner != model.owner:
            raise TramontaneError(
                f"{model.name} belongs to {model.owner}, not Tramontane. To delete it anyway, "
                f"confirm the owner: `tramontane models rm {name} --owner {model.owner}`.")
        if model.source == "path":
            raise TramontaneError(f"{model.path} is not in a models folder Tramontane manages.")
        if model.owner == "ollama":
            other_stores.delete_ollama(other_stores.FoundFile(model.name, model.path, "ollama",
                                                              model.detail))
        elif model.owner == "huggingface":
            other_stores.delete_huggingface(other_stores.FoundFile(model.name, model.path,
                                                                   "huggingface", model.detail))
        else:
            model.path.unlink()
        return model

    def use(self, name: str, purpose: str) -> LocalModel:
        """Make `name` the default chat or code model (saved in config.toml)."""
        model = self.find(name)
        value = stored_name(model)
        self.ctx.cfg.set("code" if purpose == "code" else "chat", "model", value)
        return model
