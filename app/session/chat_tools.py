"""The tools a chat may call: read-only tools for the folder the chat was started in (read a
file, list a folder, search the repository, git status/diff/log), and the tools of the MCP
servers named in config.toml (session/mcp.py).

The folder tools go through the same guards as `/file`: no link out of the folder, only regular
UTF-8 files, size limits, and files that usually hold secrets (.env, private keys, credential
stores) are refused unless config.toml's `[tools] allow_secrets` says otherwise. git runs with
the repository's own programs switched off (`app.files.safe_git`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.backend import Event
from app.engine.tools import Tool, ToolCall
from app.files import FileRefused, outside, read_text, safe_git

READ_LIMIT = 64 * 1024  # bytes of a file a call returns
LIST_LIMIT = 400  # entries of a folder
SEARCH_LIMIT = 80  # matching lines
CALL_TIMEOUT_S = 20.0
SECRETS = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".netrc",
           ".npmrc", ".pypirc", ".git-credentials", "credentials*", "*.p12", "*.pfx",
           "secrets.*", "*.keystore", ".htpasswd")
SKIPPED_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
                ".ruff_cache", "dist", "build"}

_STR = {"type": "string"}
FOLDER_TOOLS = [
    Tool("read_file", "Read a text file of the project (relative path); optional line range.",
         {"type": "object", "required": ["path"], "properties": {
             "path": _STR, "start_line": {"type": "integer", "minimum": 1},
             "end_line": {"type": "integer", "minimum": 1}}}),
    Tool("list_folder", "List the files and folders in a folder of the project.",
         {"type": "object", "properties": {"path": _STR}}),
    Tool("search", "Search the project's files for a text (not a regex); lines that match.",
         {"type": "object", "required": ["text"], "properties": {"text": _STR, "path": _STR}}),
    Tool("git", "The project's git status, diff of uncommitted changes, or recent log.",
         {"type": "object", "required": ["what"], "properties": {
             "what": {"type": "string", "enum": ["status", "diff", "log"]}}}),
]


MAX_TOOL_ROUNDS = 4  # calls in a row before the model must answer in text


@dataclass(frozen=True)
class ToolAsked:
    """The model calls a tool: the face shows the call (and `approve` decides)."""

    call: ToolCall


@dataclass(frozen=True)
class ToolDone:
    """A call's result (or its refusal), as sent back to the model."""

    call: ToolCall
    result: str
    ran: bool


ChatEvent = Event | ToolAsked | ToolDone  # what a chat's reply streams to a face


def stored_calls(text: str) -> tuple[ToolCall, ...]:
    """The calls kept with a reply in the history."""
    return tuple(ToolCall(c["name"], c["arguments"], c["id"]) for c in json.loads(text or "[]"))


class ToolFailed(Exception):
    """A call that could not run, in words the model (and the user) can read."""


def secret(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in SECRETS)


@dataclass
class FolderTools:
    """The read-only tools over one folder."""

    root: Path
    allow_secrets: bool = False

    def _inside(self, raw: str | None) -> Path:
        path = (self.root / (raw or ".")).resolve() if not Path(raw or ".").is_absolute() \
            else Path(raw or ".")
        if outside(path, self.root) is not None:
            raise ToolFailed(f"{raw} is outside the project folder {self.root}.")
        if not self.allow_secrets and any(secret(p) for p in path.relative_to(
                self.root.resolve()).parts):
            raise ToolFailed(f"{raw} usually holds secrets; it is not read (config.toml "
                             "[tools] allow_secrets).")
        return path

    def read_file(self, path: str, start_line: int = 1, end_line: int = 0) -> str:
        where = self._inside(path)
        try:
            text = read_text(where, READ_LIMIT, path, self.root, works="read_file works on",
                             what="read_file takes")
        except FileRefused as exc:
            raise ToolFailed(str(exc)) from None
        lines = text.splitlines()
        chosen = lines[start_line - 1:end_line or None]
        return "\n".join(f"{start_line + i}: {line}" for i, line in enumerate(chosen))

    def list_folder(self, path: str = ".") -> str:
        where = self._inside(path)
        if not where.is_dir():
            raise ToolFailed(f"{path} is not a folder.")
        names = sorted(os.listdir(where))
        shown = [n + ("/" if (where / n).is_dir() else "") for n in names
                 if n not in SKIPPED_DIRS and (self.allow_secrets or not secret(n))]
        more = f"\n… and {len(shown) - LIST_LIMIT} more" if len(shown) > LIST_LIMIT else ""
        return "\n".join(shown[:LIST_LIMIT]) + more or "(empty)"

    def search(self, text: str, path: str = ".") -> str:
        where = self._inside(path)
        if not text:
            raise ToolFailed("Give the text to search for.")
        found = safe_git(self.root, "grep", "-n", "-I", "--fixed-strings", "--no-color", "-e",
                         text, "--", str(where.relative_to(self.root.resolve())) or ".")
        if found is not None:
            lines = [x for x in found.decode("utf-8", "replace").splitlines()
                     if not secret(Path(x.split(":", 1)[0]).name) or self.allow_secrets]
        else:
            lines = self._walk_search(where, text)
        more = f"\n… and {len(lines) - SEARCH_LIMIT} more" if len(lines) > SEARCH_LIMIT else ""
        return "\n".join(lines[:SEARCH_LIMIT]) + more or f"No file contains {text!r}."

    def _walk_search(self, where: Path, text: str) -> list[str]:
        out: list[str] = []
        for folder, dirs, files in os.walk(where):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                if secret(name) and not self.allow_secrets:
                    continue
                path = Path(folder) / name
                try:
                    body = read_text(path, READ_LIMIT * 4, name, self.root)
                except FileRefused:
                    continue
                rel = path.relative_to(self.root.resolve())
                out += [f"{rel}:{i}:{line}" for i, line in enumerate(body.splitlines(), 1)
                        if text in line]
                if len(out) > SEARCH_LIMIT:
                    return out
        return out

    def git(self, what: str) -> str:
        args = {"status": ["status", "--short", "--branch"],
                "diff": ["diff", "--no-ext-diff", "--no-textconv", "--stat", "--patch"],
                "log": ["log", "--oneline", "-n", "20"]}.get(what)
        if args is None:
            raise ToolFailed("`what` must be status, diff or log.")
        out = safe_git(self.root, *args)
        if out is None:
            raise ToolFailed(f"{self.root} is not a git repository (or git is missing).")
        text = out.decode("utf-8", "replace")
        return text[:READ_LIMIT] + ("\n… (cut)" if len(text) > READ_LIMIT else "") or \
            "(nothing)"


Runner = Callable[[dict[str, Any]], Awaitable[str]]
_CALLED = re.compile(r"^.*?\(\) ")  # "FolderTools.search() got an unexpected …" -> "got …"


@dataclass
class Toolbox:
    """Every tool a chat may call, and how each runs."""

    tools: list[Tool] = field(default_factory=list)
    runners: dict[str, Runner] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # tool -> "folder" or the MCP server
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # MCP servers

    async def close(self) -> None:
        for close in self.closers:
            await close()
        self.closers.clear()

    @classmethod
    def for_folder(cls, root: Path, allow_secrets: bool = False) -> Toolbox:
        folder = FolderTools(root, allow_secrets)
        box = cls()
        for tool in FOLDER_TOOLS:
            method = getattr(folder, tool.name)

            async def run(args: dict[str, Any], method: Any = method) -> str:
                return str(await asyncio.to_thread(method, **args))

            box.add(tool, run, "folder")
        return box

    def add(self, tool: Tool, runner: Runner, source: str) -> None:
        self.tools.append(tool)
        self.runners[tool.name] = runner
        self.sources[tool.name] = source

    async def run(self, call: ToolCall) -> str:
        """The call's result as text (a failure is a result too: the model reads why)."""
        runner = self.runners.get(call.name)
        if runner is None:
            return f"There is no tool named {call.name!r}."
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await runner(call.arguments)
        except ToolFailed as exc:
            return f"Error: {exc}"
        except TimeoutError:
            return f"Error: {call.name} took over {CALL_TIMEOUT_S:.0f} s and was stopped."
        except TypeError as exc:  # arguments the tool does not take
            said = _CALLED.sub("", str(exc))
            return f"Error: {call.name} {said}."
