"""MCP servers named in config.toml (`[mcp.servers.NAME] command = [...]`, stdio), through the
official `mcp` SDK: their tools are offered to the chat beside the folder tools, and a call
runs only after the user allows it, within the tools' time limit (session/chat_tools.py).

Each server runs in a task of its own, which owns the SDK's client from start to close (the
SDK's cancel scopes must be entered and left in one task), so calls can come from any task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from app.engine.tools import Tool
from app.session.chat_tools import Toolbox, ToolFailed

START_TIMEOUT_S = 15.0


class McpServer:
    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.command, self.env = name, command, env or {}
        self.session: Any = None
        self.tools: list[Tool] = []
        self.ready = asyncio.Event()
        self.closing = asyncio.Event()
        self.failed = ""
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._own())
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self.ready.wait()
        except TimeoutError:
            self.failed = f"did not answer within {START_TIMEOUT_S:.0f} s"
            await self.close()
        if self.failed:
            raise ToolFailed(f"The MCP server {self.name} ({' '.join(self.command)}) "
                             f"{self.failed}.")

    async def _own(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=self.command[0], args=self.command[1:],
                                       env={**os.environ, **self.env})
        try:
            with open(os.devnull, "w") as quiet:  # its log is not the user's terminal
                async with stdio_client(params, errlog=quiet) as (read, write), \
                        ClientSession(read, write) as session:
                    await session.initialize()
                    listed = await session.list_tools()
                    self.tools = [Tool(t.name, t.description or "", dict(t.input_schema or {}))
                                  for t in listed.tools]
                    self.session = session
                    self.ready.set()
                    await self.closing.wait()
        except Exception as exc:  # a missing program, a crash, a protocol error: one line
            self.failed = f"could not start: {exc}"
            self.ready.set()

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        if self.session is None:
            raise ToolFailed(f"The MCP server {self.name} is not running.")
        result = await self.session.call_tool(tool, arguments)
        text = "\n".join(getattr(part, "text", "") for part in getattr(result, "content", []))
        if getattr(result, "is_error", False) or getattr(result, "isError", False):
            raise ToolFailed(text or f"{tool} failed on {self.name}.")
        return text

    async def close(self) -> None:
        self.closing.set()
        if self.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(5):
                    await self.task


async def add_servers(box: Toolbox, section: dict[str, Any]) -> list[str]:
    """Start each server in config's [mcp.servers] and offer its tools; what failed, in words."""
    problems = []
    for name, entry in (section.get("servers") or {}).items():
        command = entry.get("command") if isinstance(entry, dict) else None
        if not (isinstance(command, list) and command and all(isinstance(c, str)
                                                              for c in command)):
            problems.append(f"[mcp.servers.{name}] needs command = [\"program\", \"arg\", …].")
            continue
        env = entry.get("env") if isinstance(entry.get("env"), dict) else {}
        server = McpServer(str(name), command, {str(k): str(v) for k, v in env.items()})
        try:
            await server.start()
        except ToolFailed as exc:
            problems.append(str(exc))
            continue
        box.closers.append(server.close)
        for tool in server.tools:
            if tool.name in box.runners:
                problems.append(f"The MCP server {name}'s tool {tool.name} has the name of "
                                "another tool; it is left out.")
                continue

            async def run(args: dict[str, Any], server: McpServer = server,
                          name: str = tool.name) -> str:
                return await server.call(name, args)

            box.add(tool, run, f"mcp:{name}")
    return problems
