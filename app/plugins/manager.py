"""Finding, loading and calling plugins, so that one that fails or hangs costs only itself.

Plugins come from the `tramontane` entry-point group; the built-in ones are registered the same
way, always. `TRAMONTANE_PLUGINS` (comma-separated names; empty for none) pins which installed
plugins load, and `[plugins] disabled` in config.toml turns one off. Each hook implementation
is called on its own: one that raises is reported once (screen and log) and disabled for the
session; one that runs past its time limit is skipped, and not called again until that call
returns (so a hung plugin holds one thread, not one per keystroke).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata as md
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from app.plugins import builtin
from app.plugins.hookspecs import PROJECT, SlashCommand, Specs

ENV_PIN = "TRAMONTANE_PLUGINS"
log = logging.getLogger("tramontane.plugins")


@dataclass
class PluginInfo:
    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False
    status: str = "loaded"  # or "disabled in config.toml", "not in TRAMONTANE_PLUGINS", "failed: ..."


class PluginHost:
    def __init__(self, disabled: Iterable[str] = (), pinned: set[str] | None = None,
                 log_path: Path | None = None) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(Specs)
        self.disabled = set(disabled)
        self.pinned = pinned
        self.infos: dict[str, PluginInfo] = {}
        self.reports: list[str] = []
        self.on_report: Callable[[str], None] | None = None
        self._stuck: set[str] = set()  # plugins whose last call ran past its limit
        self._background: set[asyncio.Task[Any]] = set()
        if log_path is not None and not any(
                getattr(h, "baseFilename", None) == str(log_path) for h in log.handlers):
            with contextlib.suppress(OSError):  # the log holds prompts' file names: 0600
                os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            handler = logging.FileHandler(log_path, encoding="utf-8", delay=True)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> PluginHost:
        self._register("builtin", builtin, version=_version("tramontane"), is_builtin=True)
        for ep in md.entry_points(group=PROJECT):
            name = ep.name
            dist = ep.dist.name if ep.dist is not None else name
            info = PluginInfo(name, ep.dist.version if ep.dist is not None else "")
            self.infos[name] = info
            if self.pinned is not None and not {name, ep.name, dist} & self.pinned:
                info.status = f"not in {ENV_PIN}"
                continue
            if {name, ep.name, dist} & self.disabled:
                info.status = "disabled in config.toml"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not stop the app
                info.status = f"failed to load: {exc!r}"
                self.report(f"Plugin {name} could not be loaded ({exc!r}); it is off.")
                continue
            self._register(name, plugin, version=info.version)
        return self

    def register(self, plugin: object, name: str, version: str = "") -> None:
        """Add a plugin object directly (scripts and tests)."""
        self._register(name, plugin, version=version)

    def _register(self, name: str, plugin: object, version: str, is_builtin: bool = False) -> None:
        info = self.infos.setdefault(name, PluginInfo(name, version, builtin=is_builtin))
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.status = f"failed to load: {exc}"
            self.report(f"Plugin {name} does not fit Tramontane's hooks ({exc}); it is off.")
            return
        info.status = "loaded"
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    # -- reporting ---------------------------------------------------------------------------

    def report(self, message: str) -> None:
        if message in self.reports:
            return
        self.reports.append(message)
        log.error(message)
        if self.on_report is not None:
            self.on_report(message)

    def fail(self, name: str, where: str, exc: BaseException) -> None:
        """A plugin raised: say so once, log the traceback, and turn it off."""
        log.error("plugin %s raised in %s", name, where, exc_info=exc)
        if self.pm.get_plugin(name) is not None:
            self.pm.set_blocked(name)
        if name in self.infos:
            self.infos[name].status = f"failed: {exc!r}"
        self.report(f"Plugin {name} failed in {where} ({type(exc).__name__}: {exc}); it is off "
                    "until the app restarts.")

    # -- calling -----------------------------------------------------------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook)
        return list(caller.get_hookimpls())  # registration order

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call each implementation here and now (start-up hooks); results that are not None."""
        out = []
        for impl in self._impls(hook):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception as exc:
                self.fail(impl.plugin_name, hook, exc)
                continue
            if result is not None:
                out.append(result)
        return out

    async def acall(self, hook: str, timeout: float, **kwargs: Any) -> list[Any]:
        """Call each implementation in a thread, at most `timeout` seconds; in order, the results
        that came back in time and are not None."""
        calls = [(impl.plugin_name, hook, _bind(impl.function, [kwargs[a] for a in impl.argnames]))
                 for impl in self._impls(hook)]
        results = await asyncio.gather(*(self.guarded(n, w, f, timeout) for n, w, f in calls))
        return [r for r in results if r is not None]

    async def guarded(self, name: str, where: str, fn: Callable[[], Any], timeout: float) -> Any:
        """Run one plugin function in a thread; None when it failed, is busy or is too slow."""
        if name in self._stuck:
            return None
        future = _in_daemon_thread(fn)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._stuck.add(name)
            self.report(f"Plugin {name} is slow in {where} (over {timeout:g} s); the app went on "
                        "without it.")
            future.add_done_callback(lambda f: self._late(name, where, f))
            return None
        except Exception as exc:
            self.fail(name, where, exc)
            return None

    def is_stuck(self, name: str) -> bool:
        """`name`'s last call ran past its limit and has not come back yet."""
        return name in self._stuck

    def _late(self, name: str, where: str, future: asyncio.Future[Any]) -> None:
        """A slow call came back: the plugin may be called again (unless it raised)."""
        self._stuck.discard(name)
        if not future.cancelled() and future.exception() is not None:
            self.fail(name, where, future.exception())  # type: ignore[arg-type]

    def notify(self, hook: str, timeout: float = 10.0, **kwargs: Any) -> None:
        """Call a hook in the background; nothing waits for it."""
        if not self._impls(hook):
            return
        task = asyncio.get_running_loop().create_task(self.acall(hook, timeout, **kwargs))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for background hook calls (before a command-line process exits)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    def slash_commands(self) -> dict[str, SlashCommand]:
        found: dict[str, SlashCommand] = {}
        for impl in self._impls("register_slash_commands"):
            def register(cmd: SlashCommand, plugin: str = impl.plugin_name) -> None:
                found.setdefault(cmd.name.lstrip("/"), SlashCommand(
                    cmd.name.lstrip("/"), cmd.help, cmd.run, cmd.usage, plugin))
            try:
                impl.function(*[{"register": register}[a] for a in impl.argnames])
            except Exception as exc:
                self.fail(impl.plugin_name, "register_slash_commands", exc)
        return found

    def owner_of(self, fn: Callable[..., Any]) -> str | None:
        """The name of the installed plugin whose module defines `fn` (None for our own code)."""
        module = getattr(fn, "__module__", "") or ""
        for name, plugin in self.pm.list_name_plugin():
            if self.infos.get(name, PluginInfo(name, "")).builtin:
                continue
            root = getattr(plugin, "__name__", type(plugin).__module__)
            if module == root or module.startswith(root + "."):
                return name
        return None

    def close(self) -> None:
        """Nothing to release: plugin threads are daemons and never hold the exit."""


def _in_daemon_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run `fn` in a daemon thread: a plugin stuck forever (a FIFO, a hung socket) is left
    behind when the process exits, where a pool's threads would be joined and hang the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the waiting coroutine
            outcome: tuple[bool, Any] = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop closed while the plugin ran
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, daemon=True, name="plugin").start()
    return future


def _bind(fn: Callable[..., Any], args: list[Any]) -> Callable[[], Any]:
    return lambda: fn(*args)


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return ""


def pinned_from_env() -> set[str] | None:
    raw = os.environ.get(ENV_PIN)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The plugins of this process, loaded on first use."""
    global _host
    if _host is None:
        from app.config import load_config, paths

        p = paths()
        writable = not p.ensure()
        cfg = load_config(p)
        disabled = cfg.get("plugins", "disabled") or []
        _host = PluginHost(disabled=[str(d) for d in disabled], pinned=pinned_from_env(),
                           log_path=p.log_dir / "tramontane.log" if writable else None).load()
    return _host


def reset_host() -> None:
    """Forget the loaded plugins (tests, or after changing TRAMONTANE_PLUGINS)."""
    global _host
    if _host is not None:
        _host.close()
    _host = None
