"""`tramontane doctor`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app.session.front import Tramontane
from app.sizes import human_size


def doctor(args: argparse.Namespace) -> int:
    door = Tramontane.open()
    try:
        report = asyncio.run(door.doctor(measure_speed=not args.quick,
                                         recalibrate=args.recalibrate))
    finally:
        door.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["smoke"]["ok"] else 1
    _print_doctor(report)
    return 0 if report["smoke"]["ok"] else 1


def tools(args: argparse.Namespace) -> int:
    """`tramontane tools`: every tool a chat started here may call, and where it comes from
    (the MCP servers in config.toml are started to ask them)."""
    door = Tramontane.open()

    try:
        rows, problems = asyncio.run(door.chats.tool_list())
    finally:
        door.close()
    for problem in problems:
        print(f"tramontane: warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<16} {row['source']:<14} {row['description']}")
    return 0


def _print_doctor(r: dict[str, Any]) -> None:
    cpu, ram, smoke, oll = r["cpu"], r["ram"], r["smoke"], r["ollama"]
    print(f"Tramontane {r['tramontane']} · Python {r['python']} · {r['platform']}")
    print(f"CPU        {cpu['name']} · {cpu['threads']} threads · {' '.join(cpu['features'])}")
    print(f"RAM        {human_size(int(ram['total']))} total, "
          f"{human_size(int(ram['available']))} available")
    for warning in r["config_warnings"]:
        print(f"Config     warning: {warning}")
    print(f"History    {r['paths']['history']}")
    print(f"Models     {r['paths']['models']}")
    for m in r["models"]:
        if "error" in m:
            print(f"           error: {m['error']}")
        else:
            note = "" if m["chat_tuned"] else " (base model)"
            size = human_size(int(m["size"]))
            print(f"           {m['name']:<28} {size:>9}  {m['source']}{note}")
    state = f"answers (version {oll.get('version')})" if oll["answers"] else "not answering"
    where = " (a remote server: chats sent there leave this machine)" if oll.get("remote") else ""
    print(f"Ollama     {oll['host']}{where}: {state}")
    oa = r["openai"]
    where = " (a remote server: chats sent there leave this machine)" if oa.get("remote") else ""
    if oa["answers"]:
        fim = f"; FIM for {oa['code_model']}: {oa['fim']}" if oa.get("fim") else ""
        state = f"answers, serving {', '.join(oa.get('models', [])) or 'no models'}{fim}"
    else:
        state = f"not answering ({oa.get('error', '')})"
    print(f"OpenAI API {oa['base_url']}{where}: {state}")
    for i, p in enumerate(r["plugins"]):
        print(f"{'Plugins' if i == 0 else '':<10} {p['name']} {p['version']}: {p['status']}")
    llama = smoke.get("llama", {})
    if llama:
        print(f"llama.cpp  llama-cpp-python {llama.get('llama_cpp_python')} · "
              f"{llama.get('system_info', '').strip()}")
    gpu = r["gpu"]
    offload = "built in" if gpu["offload_built"] else "not built in (CPU only)"
    names = ", ".join(g["name"] for g in gpu["gpus"]) or "none found"
    print(f"GPU        {names} · GPU offload {offload}")
    sp = r.get("speed") or {}
    if "bandwidth" in sp:
        runs = ", ".join(f"{m['model']} {m['decode_tps']:.0f} tok/s" for m in sp["measured"])
        saved = f"not saved: {sp['not_saved']}" if sp.get("not_saved") else \
            "saved for `models list`"
        print(f"Speed      {sp['bandwidth'] / 1e9:.1f} GB/s read bandwidth; measured {runs} "
              f"({saved})")
    elif "error" in sp:
        print(f"Speed      not measured: {sp['error']}")
    if smoke["ok"]:
        print(f"Smoke test ok: {smoke['model']} said {smoke['text']!r} "
              f"({smoke.get('tokens_per_s', 0)} tok/s)")
    else:
        print(f"Smoke test FAILED: {smoke.get('error', 'no tokens came back')}")
        print(f"Rebuild llama.cpp with: {smoke.get('fix', '')}")
