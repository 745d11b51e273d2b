"""`tramontane doctor`: what this machine has, what Tramontane finds, and a smoke inference in
a throwaway worker that catches a llama.cpp build that crashes on this CPU.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from contextlib import aclosing
from typing import Any

import httpx
import psutil

from app import __version__
from app.config import is_remote, ollama_host, openai_server, shown_host
from app.engine.backend import Done, Error, Message, Params, Token
from app.engine.llama.backend import LlamaBackend
from app.errors import TramontaneError
from app.models import hardware
from app.session.calibrate import calibrate
from app.session.context import AppContext, model_ref

AMX_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON"
)
REBUILD = (
    "make rebuild-llama   (from a checkout), or: "
    f'CMAKE_ARGS="{AMX_CMAKE_ARGS}" pip install --force-reinstall --no-cache-dir '
    "--no-deps llama-cpp-python"
)
def cpu_features() -> dict[str, Any]:
    name, features = hardware.cpu()
    return {
        "name": name,
        "cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "threads": psutil.cpu_count(),
        "features": features,
        "amx": any(f.startswith("amx") for f in features),
    }


def check_ollama(ctx: AppContext) -> dict[str, Any]:
    try:
        host = ollama_host(ctx.cfg)
    except TramontaneError as exc:
        return {"host": "", "remote": False, "answers": False, "error": str(exc)}
    shown = shown_host(host)
    try:
        resp = httpx.get(f"{host}/api/version", timeout=1.0)
        return {"host": shown, "remote": is_remote(host), "answers": resp.status_code == 200,
                "version": resp.json().get("version", "") if resp.status_code == 200 else ""}
    except (httpx.HTTPError, ValueError) as exc:
        return {"host": shown, "remote": is_remote(host), "answers": False,
                "error": type(exc).__name__}


async def check_openai(ctx: AppContext) -> dict[str, Any]:
    """The OpenAI-compatible server in [openai]: does it answer, what it serves, and how it
    fills in the middle for the code model (asked once, as `complete` would)."""
    try:
        url, _ = openai_server(ctx.cfg)
    except TramontaneError as exc:
        return {"base_url": "", "remote": False, "answers": False, "error": str(exc)}
    from app.engine.openai.backend import OpenAIBackend

    backend = ctx.backend_for("openai")
    assert isinstance(backend, OpenAIBackend)
    found: dict[str, Any] = {"base_url": shown_host(url), "remote": is_remote(url),
                             "answers": False}
    try:
        async with asyncio.timeout(3):
            names = [m.name for m in await backend.models()]
            found |= {"answers": True, "models": names}
            code = str(ctx.cfg.get("openai", "code_model") or ctx.cfg.get("openai", "model")
                       or (names[0] if names else ""))
            if code:
                await backend.load(ctx.server_model(code, "code", backend="openai"))
                found |= {"code_model": code, "fim": await backend.fim_mode()}
    except (TramontaneError, TimeoutError) as exc:
        found["error"] = str(exc) or "no answer within 3 s"
    finally:
        await backend.close()
    return found


async def smoke_inference(ctx: AppContext) -> dict[str, Any]:
    """Load the starter model in a fresh worker and generate a few tokens."""
    try:
        model = ctx.resolve_model("smollm2-135m-instruct")
    except TramontaneError as exc:
        return {"ok": False, "error": str(exc)}
    backend = LlamaBackend(log_path=ctx.paths.log_dir / "worker.log")
    params = Params(temperature=0.0, max_tokens=4, context_length=256, seed=1)
    result: dict[str, Any] = {"ok": False, "model": model.name}
    try:
        await backend.load(model_ref(model), params)
        text = ""
        async with aclosing(backend.chat([Message("user", "Say hello.")], params)) as stream:
            async for event in stream:
                match event:
                    case Token(piece):
                        text += piece
                    case Done(stats):
                        result.update(ok=stats.generated_tokens > 0, text=text,
                                      tokens_per_s=round(stats.decode_tps, 1))
                    case Error(message):
                        result.update(error=message)
        info = await backend.info()
        result.update(llama=info.details)
    except TramontaneError as exc:
        result["error"] = str(exc)
    finally:
        await backend.unload()
    if not result["ok"]:
        result["fix"] = REBUILD
    return result


async def speed_figures(ctx: AppContext, force: bool = False) -> dict[str, Any]:
    """Re-measure this machine's speed figures with the starters (cached for `models`,
    unless `not_saved` says why not)."""
    try:
        figures, measured, why = await calibrate(ctx, force=force)
    except TramontaneError as exc:
        return {"error": str(exc)}
    return figures.to_dict() | {"measured": [m.__dict__ for m in measured], "not_saved": why}


async def run_doctor(ctx: AppContext, measure_speed: bool = True,
                     recalibrate: bool = False) -> dict[str, Any]:
    mem = psutil.virtual_memory()
    try:
        models = [{"name": m.name, "path": str(m.path), "size": m.size, "source": m.source,
                   "chat_tuned": m.chat_tuned} for m in ctx.local_models()]
    except TramontaneError as exc:
        models = [{"error": str(exc)}]
    report = {
        "tramontane": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_features(),
        "ram": {"total": mem.total, "available": mem.available},
        "paths": {"config": str(ctx.paths.config_file), "history": str(ctx.paths.history_db),
                  "models": str(ctx.paths.models_dir), "logs": str(ctx.paths.log_dir)},
        "config_warnings": ctx.cfg.warnings,
        "models": models,
        "ollama": check_ollama(ctx),
        "openai": await check_openai(ctx),
        "plugins": [{"name": i.name, "version": i.version, "status": i.status}
                    for i in ctx.plugins.infos.values() if not i.builtin],
    }
    smoke = await smoke_inference(ctx)
    gpus = ctx.hardware.gpus
    return report | {
        "smoke": smoke,
        "gpu": {"offload_built": bool(smoke.get("llama", {}).get("gpu_offload", False)),
                "gpus": [g.__dict__ for g in gpus]},
        "speed": await speed_figures(ctx, recalibrate) if measure_speed and smoke["ok"]
        else {},
    }
