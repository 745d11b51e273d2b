"""`models list|info|pull|rm` on Ollama and an OpenAI-compatible server: the models as the server
names them, through the backend the user chose."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from app.engine.backend import Progress, ServerBackend
from app.errors import TramontaneError
from app.session.context import AppContext


@dataclass(frozen=True)
class ServerModels:
    _ctx: AppContext = field(repr=False)

    def _server(self, backend: str) -> ServerBackend:
        made = self._ctx.backend_for(backend)
        assert isinstance(made, ServerBackend)
        return made

    async def listed(self, backend: str) -> list[dict[str, str]]:
        """Each model the server has: its name, and for Ollama where it is loaded."""
        server = self._server(backend)
        loaded: dict[str, str] = {}
        if backend == "ollama":
            from app.engine.ollama.backend import OllamaBackend

            assert isinstance(server, OllamaBackend)
            loaded = {m["name"]: m["split"] for m in await server.loaded()}
        return [{"name": m.name, "source": m.source, "loaded": loaded.get(m.name, "")}
                for m in await server.models()]

    async def info(self, backend: str, model: str) -> dict[str, Any]:
        server = self._server(backend)
        if backend == "ollama":
            from app.engine.ollama.backend import OllamaBackend

            assert isinstance(server, OllamaBackend)
            details: dict[str, Any] = (await server.details(model))["model_info"]
            return {"name": model, **details}
        await server.load(self._ctx.server_model(model, backend=backend))
        return {"name": model, **(await server.info()).details}

    async def pull(self, backend: str, model: str) -> AsyncGenerator[Progress, None]:
        """Progress as Ollama pulls `model`."""
        from app.engine.ollama.backend import OllamaBackend

        server = self._server(backend)
        if not isinstance(server, OllamaBackend):
            raise TramontaneError("`models pull` on a server works with Ollama only.")
        async for p in server.pull(model):
            yield p

    async def remove(self, backend: str, model: str) -> None:
        from app.engine.ollama.backend import OllamaBackend

        server = self._server(backend)
        if not isinstance(server, OllamaBackend):
            raise TramontaneError("`models rm` on a server works with Ollama only.")
        await server.delete(model)

    async def close(self, backend: str) -> None:
        """Forget the model and close the connection (the server keeps its models)."""
        server = self._server(backend)
        await server.unload()
        close = getattr(server, "close", None)
        if close is not None:
            await close()
