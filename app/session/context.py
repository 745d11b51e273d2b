"""Everything a command or screen needs, built once: paths, settings, history, backend."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import psutil

from app.config import Config, Paths, is_remote, load_config, ollama_host, openai_server, paths
from app.engine.backend import Backend, ModelRef, Params, ServerBackend
from app.engine.llama.backend import LlamaBackend
from app.errors import ModelNotFoundError
from app.models import local
from app.models.hardware import Hardware, probe
from app.models.local import LocalModel
from app.models.local import ready as ready_model
from app.plugins.manager import PluginHost, get_host
from app.session import drafting
from app.session.placement import plan_load

if TYPE_CHECKING:
    from app.engine.ollama.backend import OllamaBackend
    from app.engine.openai.backend import OpenAIBackend
from app.store.history import ChatStore

SERVER_BACKENDS = ("ollama", "openai")  # backends in front of a server's own models


def remote_server(backend: Backend) -> str:
    """'Ollama at HOST' or 'the OpenAI-compatible server at HOST' when `backend` sends the
    user's text to another machine, else ''."""
    if not isinstance(backend, ServerBackend) or not is_remote(backend.host):
        return ""
    kind = "Ollama" if backend.name == "ollama" else "the OpenAI-compatible server"
    return f"{kind} at {backend.host}"


@dataclass(frozen=True)
class AppContext:
    """The wiring behind the front door (`session/front.py`): folders, settings, the history and
    one backend per name, each made when first used. Built once; nothing in it is reassigned."""

    paths: Paths = field(default_factory=paths)
    config: Config | None = None
    choice: str | None = None  # --backend: "llama.cpp", "ollama", "openai"; None = config.toml
    _backends: dict[str, Backend] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = self.paths.ensure()
        if self.config is None:
            object.__setattr__(self, "config", load_config(self.paths))
        self.cfg.warnings.extend(problems)

    @property
    def cfg(self) -> Config:
        assert self.config is not None
        return self.config

    @cached_property
    def store(self) -> ChatStore:
        return ChatStore(self.paths.history_db)

    @property
    def backend_name(self) -> str:
        return self.choice or str(self.cfg.get("chat", "backend") or "llama.cpp")

    @property
    def uses_server(self) -> bool:
        """The backend is a server with its own models (named as it names them)."""
        return self.backend_name in SERVER_BACKENDS

    @property
    def backend(self) -> Backend:
        return self.backend_for(self.backend_name)

    def backend_for(self, name: str) -> Backend:
        """The one backend of that name ("llama.cpp", "ollama", "openai"), made when first
        asked for; "code" is the second llama.cpp worker, for completion and edits."""
        if name not in self._backends:
            if name == "ollama":
                self._backends[name] = self._ollama()
            elif name == "openai":
                self._backends[name] = self._openai()
            else:
                log = "code-worker.log" if name == "code" else "worker.log"
                made = LlamaBackend(log_path=self.paths.log_dir / log)
                other = self._backends.get("llama.cpp" if name == "code" else "code")
                if isinstance(other, LlamaBackend):  # one worker when both load the same
                    made.peer, other.peer = other, made
                self._backends[name] = made
        return self._backends[name]

    def backends(self) -> list[Backend]:
        """Every backend made so far (to unload at exit)."""
        return list(self._backends.values())

    def _ollama(self) -> OllamaBackend:
        """The Ollama backend; the `ollama` package is imported only now, when it is used."""
        from app.engine.ollama.backend import OllamaBackend

        o = self.cfg.section("ollama")
        return OllamaBackend(ollama_host(self.cfg), float(o["connect_timeout"]),
                             float(o["first_token_timeout"]), float(o["read_timeout"]),
                             o["keep_alive"])

    def _openai(self) -> OpenAIBackend:
        """A client of the OpenAI-compatible server in [openai] (key from config or env)."""
        from app.engine.openai.backend import OpenAIBackend

        o = self.cfg.section("openai")
        url, key = openai_server(self.cfg)
        return OpenAIBackend(url, key, float(o["connect_timeout"]),
                             float(o["first_token_timeout"]), float(o["read_timeout"]),
                             str(o["fim"]))

    def server_model(self, name: str | None, purpose: str = "chat",
                     backend: str | None = None) -> ModelRef:
        """A model on the Ollama or OpenAI-compatible server (`backend`, else the chosen one),
        by the name the server uses; its FIM format from the catalog entry the name matches (or
        [openai] fim_format)."""
        from app.models.catalog import load_catalog
        from app.models.local import match_catalog

        section = "ollama" if (backend or self.backend_name) == "ollama" else "openai"
        configured = ""
        if section == "openai":
            key = "code_model" if purpose == "code" else "model"
            configured = str(self.cfg.get("openai", key) or self.cfg.get("openai", "model") or "")
        else:
            configured = str(self.cfg.get("code" if purpose == "code" else "chat", "model") or "")
        tag = name or configured
        if not tag:
            example = "mistral:7b" if section == "ollama" else "the id from /v1/models"
            raise ModelNotFoundError(
                f"Name the {'Ollama' if section == 'ollama' else 'server'}'s model with -m "
                f"({example}); `tramontane models list --backend {section}` lists them.")
        entry = match_catalog(tag, load_catalog(self.paths.user_catalog))
        fim_format = entry.fim_format if entry else ""
        if section == "openai":
            fim_format = str(self.cfg.get("openai", "fim_format") or "") or fim_format
        return ModelRef(tag, fim_format=fim_format, source=section,
                        chat_format=entry.chat_format if entry else "auto")

    def chat_model(self, name: str | None, params: Params | None = None,
                   backend: str | None = None) -> tuple[ModelRef, str, bool]:
        """The model to chat with on `backend` (else the chosen one): (ref, name to save,
        chat-tuned); for llama.cpp the ref carries the placement and any does-not-fit warning
        for `params`."""
        if (backend or self.backend_name) in SERVER_BACKENDS:
            ref = self.server_model(name, backend=backend)
            return ref, ref.name, True
        local = self.resolve_model(name)
        return self.placed(local, params or self.default_params()), stored_name(local), \
            local.chat_tuned

    @cached_property
    def hardware(self) -> Hardware:
        return probe()

    def placed(self, local: LocalModel, params: Params) -> ModelRef:
        """`local` as a backend loads it: GPU layers from the fit verdict (or `params`), and a
        warning with the numbers when it does not fit this machine."""
        hw = self._room_beside(local)
        plan = plan_load(local, params.context_length, hw, params.gpu_layers)
        pick = drafting.choose(local, self.local_models, params, self.paths.data_dir,
                               self.hardware, plan.gpu_layers)
        draft = None
        if pick is not None:
            with_draft = plan.beside(pick[1], hw)
            if with_draft.fits or params.speculative == "draft" or params.draft_model:
                plan, draft = with_draft, ready_model(pick[0], self.paths.models_dir).path
        return replace(model_ref(local), gpu_layers=plan.gpu_layers, draft=draft,
                       fit_warning=plan.warning(local.name))

    def _room_beside(self, local: LocalModel) -> Hardware:
        """This machine less the RAM of another model that a llama.cpp worker of this app
        holds now: chat and code on two different models are planned together (on one model
        they share one worker)."""
        taken = 0
        for backend in self._backends.values():
            if not isinstance(backend, LlamaBackend):
                continue
            ref, context = backend.model, backend.loaded_context
            if ref is None or ref.path is None or ref.path == local.path or not context:
                continue
            other = plan_load(LocalModel(ref.name, ref.path, "path"), context, self.hardware)
            if other.verdict is not None:
                taken += other.verdict.estimate.cpu_bytes - other.verdict.estimate.reclaimable
        if not taken:
            return self.hardware
        return replace(self.hardware, ram_total=max(0, self.hardware.ram_total - taken))

    @property
    def code_backend(self) -> Backend:
        """A second worker for completion, so chat and code can use different models."""
        return self.backend_for("code")

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
