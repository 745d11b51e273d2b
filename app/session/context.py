"""Everything a command or screen needs, built once: paths, settings, history, backend."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import psutil

from app.config import Config, Paths, load_config, ollama_host, paths
from app.engine.backend import Backend, ModelRef, Params
from app.engine.llama.backend import LlamaBackend
from app.errors import ModelNotFoundError
from app.models import local
from app.models.hardware import Hardware, probe
from app.models.local import LocalModel
from app.plugins.manager import PluginHost, get_host
from app.session.placement import plan_load

if TYPE_CHECKING:
    from app.engine.ollama.backend import OllamaBackend
from app.store.history import ChatStore


@dataclass
class AppContext:
    paths: Paths = field(default_factory=paths)
    config: Config | None = None

    def __post_init__(self) -> None:
        problems = self.paths.ensure()
        if self.config is None:
            self.config = load_config(self.paths)
        self.config.warnings.extend(problems)

    @property
    def cfg(self) -> Config:
        assert self.config is not None
        return self.config

    @cached_property
    def store(self) -> ChatStore:
        return ChatStore(self.paths.history_db)

    backend_choice: str | None = None  # "llama.cpp" or "ollama"; None = config.toml

    @property
    def backend_name(self) -> str:
        return self.backend_choice or str(self.cfg.get("chat", "backend") or "llama.cpp")

    @cached_property
    def backend(self) -> Backend:
        if self.backend_name == "ollama":
            return self.ollama()
        return LlamaBackend(
            log_path=self.paths.log_dir / "worker.log", models_dirs=[self.paths.models_dir]
        )

    def ollama(self) -> OllamaBackend:
        """The Ollama backend; the `ollama` package is imported only now, when it is used."""
        from app.engine.ollama.backend import OllamaBackend

        o = self.cfg.section("ollama")
        return OllamaBackend(ollama_host(self.cfg), float(o["connect_timeout"]),
                             float(o["first_token_timeout"]), float(o["read_timeout"]),
                             o["keep_alive"])

    def chat_model(self, name: str | None, params: Params | None = None,
                   ) -> tuple[ModelRef, str, bool]:
        """The model to chat with on the chosen backend: (ref, name to save, chat-tuned); for
        llama.cpp the ref carries the placement and any does-not-fit warning for `params`."""
        if self.backend_name == "ollama":
            tag = name or str(self.cfg.get("chat", "model") or "")
            if not tag:
                raise ModelNotFoundError("Name the Ollama model with -m (e.g. -m mistral:7b); "
                                         "`tramontane models list --backend ollama` lists them.")
            return ModelRef(tag, source="ollama"), tag, True
        local = self.resolve_model(name)
        return self.placed(local, params or self.default_params()), stored_name(local), \
            local.chat_tuned

    @cached_property
    def hardware(self) -> Hardware:
        return probe()

    def placed(self, local: LocalModel, params: Params) -> ModelRef:
        """`local` as a backend loads it: GPU layers from the fit verdict (or `params`), and a
        warning with the numbers when it does not fit this machine."""
        plan = plan_load(local, params.context_length, self.hardware, params.gpu_layers)
        return replace(model_ref(local), gpu_layers=plan.gpu_layers,
                       fit_warning=plan.warning(local.name))

    @cached_property
    def code_backend(self) -> LlamaBackend:
        """A second worker for completion, so chat and code can use different models."""
        return LlamaBackend(
            log_path=self.paths.log_dir / "code-worker.log", models_dirs=[self.paths.models_dir]
        )

    @property
    def plugins(self) -> PluginHost:
        return get_host()

    def default_params(self) -> Params:
        return Params.from_dict(self.cfg.section("params"))

    def default_model_name(self, purpose: str = "chat") -> str:
        """config.toml's model for `purpose`, else the starter this machine runs best: the
        Qwen coder starter for code (and for chat where memory allows), else SmolLM2; code
        without the Qwen starter uses the chat model."""
        chat = str(self.cfg.get("chat", "model") or "")
        if purpose == "code":
            code = str(self.cfg.get("code", "model") or "")
            fallback = local.default_model("code", psutil.virtual_memory().total)
            return code or (fallback if fallback == local.CODE_STARTER or not chat else chat)
        return chat or local.default_model("chat", psutil.virtual_memory().total)

    def resolve_model(self, name: str | None) -> LocalModel:
        return local.resolve(name or self.default_model_name(), self.paths.models_dir,
                             self.paths.user_catalog)

    def local_models(self) -> list[LocalModel]:
        return local.find_local(self.paths.models_dir, self.paths.user_catalog)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def model_ref(model: LocalModel) -> ModelRef:
    """What a backend needs to load a model found on disk."""
    cat = model.catalog
    return ModelRef(
        name=model.name,
        path=model.path,
        chat_format=cat.chat_format if cat else "auto",
        chat_tuned=cat.chat_tuned if cat else True,
        fim_format=cat.fim_format if cat else "",
        source=model.source,
    )


def stored_name(model: LocalModel) -> str:
    """How a chat remembers its model: the catalog name, or the path for a loose file."""
    return str(model.path) if model.source == "path" else model.name
