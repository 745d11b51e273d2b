"""`tramontane models list|fit|info|pull|rm|use`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from typing import Any

from app.errors import TramontaneError
from app.session.front import Tramontane
from app.session.models import ModelManager, ModelRow, PullProgress
from app.session.server_models import ServerModels
from app.sizes import human_size

GiB = 2**30


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="models: what is here, what fits, pull, remove, use")
    msub = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = msub.add_parser("list", help="models on disk and in the catalog, with fit verdicts")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"],
                     help="default: [chat] backend in config.toml")
    fit = msub.add_parser("fit", help="will it fit? (every catalog model and quant by default)")
    fit.add_argument("model", nargs="?", help="catalog id or path to a .gguf")
    fit.add_argument("--quant")
    fit.add_argument("--ctx", type=int, help="context length (default 8192)")
    fit.add_argument("--gpu-layers", type=int)
    fit.add_argument("--json", action="store_true")
    info = msub.add_parser("info", help="details of one model")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")
    info.add_argument("--backend", choices=["llama.cpp", "ollama", "openai"],
                      help="default: [chat] backend in config.toml")
    pull = msub.add_parser("pull", help="download a catalog quant")
    pull.add_argument("model")
    pull.add_argument("--quant")
    pull.add_argument("--json", action="store_true")
    pull.add_argument("--backend", choices=["llama.cpp", "ollama"], default="llama.cpp")
    rm = msub.add_parser("rm", help="delete a downloaded model")
    rm.add_argument("model")
    rm.add_argument("--owner", help="confirm deleting a file another tool owns (ollama, huggingface)")
    rm.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    rm.add_argument("--json", action="store_true")
    rm.add_argument("--backend", choices=["llama.cpp", "ollama"], default="llama.cpp")
    search = msub.add_parser("search", help="GGUF models on the Hugging Face hub, ranked by "
                                            "fit and speed on this machine")
    search.add_argument("query", nargs="+")
    search.add_argument("--for", dest="purpose", choices=["chat", "code"], default="chat")
    search.add_argument("--limit", type=int, default=20, help="repositories to look at")
    search.add_argument("--json", action="store_true")
    use = msub.add_parser("use", help="set the default chat or code model")
    use.add_argument("model")
    use.add_argument("--for", dest="purpose", choices=["chat", "code"], default="chat")
    use.add_argument("--json", action="store_true")
    models.set_defaults(func=run)



def _table(rows: list[ModelRow]) -> None:
    print(f"{'MODEL':<34} {'QUANT':<7} {'SIZE':>10}  {'ON DISK':<8} {'NEEDS':>10}  FIT · SPEED")
    for r in rows:
        needs = human_size(r.verdict.estimate.total) if r.verdict else "?"
        print(f"{r.name[:34]:<34} {r.quant:<7} {human_size(r.size):>10}  "
              f"{'yes' if r.installed else 'no':<8} {needs:>10}  {r.words()}")


def _speed_note(m: ModelManager) -> str:
    s = m.speed
    how = f"calibrated with {s.calibrated_with}" if s.is_calibrated else \
        "default factors; `tramontane doctor` calibrates them"
    return f"Speeds: {s.bandwidth / 1e9:.1f} GB/s memory bandwidth measured here, {how}."


def run(args: argparse.Namespace) -> int:
    if args.action in ("list", "info"):  # the configured backend unless --backend names another
        door = Tramontane.open(getattr(args, "backend", None))
        backend = door.backend_name
    else:
        backend = getattr(args, "backend", None) or "llama.cpp"
        door = Tramontane.open(backend)
    try:
        if backend in ("ollama", "openai"):
            return asyncio.run(_on_server(door.server_models, backend, args))
        return _ACTIONS[args.action](door.models, args)
    finally:
        door.close()


async def _on_server(models: ServerModels, backend: str, args: argparse.Namespace) -> int:
    """The same commands against Ollama or the OpenAI-compatible server in [openai], with
    models named as the server names them."""
    out: Any
    try:
        if args.action == "list":
            out = await models.listed(backend)
            if backend == "ollama":
                out = [{"name": m["name"], "loaded": m["loaded"]} for m in out]
                text = "\n".join(f"{m['name']:<40} {m['loaded']}" for m in out) or \
                    "No models pulled."
            else:
                out = [{"name": m["name"], "source": m["source"]} for m in out]
                text = "\n".join(m["name"] for m in out) or "The server lists no models."
        elif args.action == "info":
            out = await models.info(backend, args.model)
            shown = {k: v for k, v in out.items() if k != "name"} if backend == "ollama" else out
            text = "\n".join(f"{k}: {v}" for k, v in shown.items())
        elif args.action == "pull":
            last = ""
            async for p in models.pull(backend, args.model):
                if not args.json and p.status != last:
                    pct = f" {100 * p.completed // p.total}%" if p.total else ""
                    sys.stderr.write(f"\r{p.status}{pct}   ")
                    last = p.status
            out, text = {"pulled": args.model}, f"\nPulled {args.model} into Ollama."
        elif args.action == "rm":
            await models.remove(backend, args.model)
            out, text = {"removed": args.model}, f"Deleted {args.model} from Ollama."
        else:
            raise TramontaneError(f"`models {args.action}` works on llama.cpp models only.")
    finally:
        await models.close(backend)
    print(json.dumps(out, indent=2, default=str) if args.json else text)
    return 0


def _list(m: ModelManager, args: argparse.Namespace) -> int:
    rows = m.rows()
    if args.json:
        print(json.dumps({"hardware": m.hardware.__dict__ | {"gpus": [g.__dict__ for g in m.hardware.gpus]},
                          "machine_speed": m.speed.to_dict(),
                          "models": [r.to_dict() for r in rows],
                          "recommended": [rec.to_dict() for rec in m.recommend()]},
                         indent=2, default=str))
        return 0
    print(f"This machine: {m.hardware.summary()}")
    print(_speed_note(m))
    _table(rows)
    for rec in m.recommend():
        print(f"Recommended for {rec.words()}")
        for line in rec.passed_over:
            print(f"  passed over: {line}")
    return 0


def _fit(m: ModelManager, args: argparse.Namespace) -> int:
    rows = m.fit(args.model, args.quant, args.ctx, args.gpu_layers)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    print(f"This machine: {m.hardware.summary()}")
    print(_speed_note(m))
    for r in rows:
        assert r.verdict is not None
        e = r.verdict.estimate
        print(f"{r.name} {r.quant} at {e.context:,} tokens: {r.words()} — needs "
              f"{human_size(e.total - e.reclaimable)} (weights {human_size(e.weights)}, "
              f"KV cache {human_size(e.kv_cache)}, compute {human_size(e.compute)}, "
              f"fixed {human_size(e.overhead - e.reclaimable)})"
              + (f"; {human_size(e.gpu_bytes)} on the GPU" if e.gpu_layers else ""))
    if args.model and rows and rows[0].source == "catalog":
        _fit_summary(rows)
    return 0


def _fit_summary(rows: list[ModelRow]) -> None:
    """For one catalog model: what a mixture of experts means, the quant to take, why the
    usual Q4_K_M does not fit, and what each doubling of the context costs."""
    if rows[0].moe:
        print(f"Mixture of experts: {rows[0].moe}.")
    chosen = next((r for r in rows if r.choice), None)
    if chosen is None:
        print("No quant fits this machine.")
    else:
        speed = f" at {chosen.speed.words()}" if chosen.speed else ""
        print(f"Best that fits: {chosen.quant}{speed}.")
    usual = next((r for r in rows if r.quant.upper() == "Q4_K_M"), None)
    if usual is not None and usual.verdict is not None and not usual.verdict.fits:
        print(f"Q4_K_M does not fit: it {usual.verdict.why_not()}.")
    if chosen is not None and chosen.context_plan:
        print(f"Context for {chosen.quant} (each doubling adds as much KV cache as all before it):")
        for step in chosen.context_plan:
            fits = "fits" if step.kind != "no" else "does not fit"
            print(f"  {step.context:>7,} tokens: KV cache {human_size(step.kv_cache):>9}, "
                  f"total {human_size(step.total):>9} — {fits}")


def _info(m: ModelManager, args: argparse.Namespace) -> int:
    data: dict[str, Any]
    try:
        local = m.find(args.model)
    except Exception:
        local = None
    if local is not None:
        data = m.file_info(local)
    else:
        model = m.catalog_model(args.model)
        data = {"name": model.id, "display": model.name, "family": model.family,
                "params_b": model.params_b, "license": model.license,
                "capabilities": model.capabilities, "context_length": model.context_length,
                "arch": model.arch.__dict__ if model.arch else None,
                "quants": [q.__dict__ | {"fit": m.fit_catalog(model, q).words()}
                           for q in model.quants]}
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for key, value in data.items():
            if key == "quants":
                print("quants:")
                for q in value:
                    print(f"  {q['name']:<7} {human_size(q['size']):>10}  {q['fit']:<40} {q['hf_repo']}")
            elif key == "fit":
                print(f"fit: {value['words']} (needs {human_size(value['total'])})")
            else:
                print(f"{key}: {value}")
    return 0


def _pull(m: ModelManager, args: argparse.Namespace) -> int:
    last = [-1]

    def report(p: PullProgress) -> None:
        pct = int(100 * p.done / p.total) if p.total else 0
        if pct != last[0] and not args.json:
            last[0] = pct
            sys.stderr.write(f"\r{p.status} {pct:3d}% of {human_size(p.total)}")
            sys.stderr.flush()

    cancel = threading.Event()
    try:
        path = m.pull(args.model, args.quant, report, cancel)
    except KeyboardInterrupt:
        cancel.set()
        print("\nStopped; run the same command again to resume.", file=sys.stderr)
        return 130
    if not args.json:
        sys.stderr.write("\n")
    print(json.dumps({"path": str(path)}) if args.json else f"Downloaded {path}")
    return 0


def _rm(m: ModelManager, args: argparse.Namespace) -> int:
    target = m.remove(args.model, args.owner, dry_run=True)
    if not args.yes:
        if not sys.stdin.isatty():
            raise TramontaneError(f"Deleting {target.path} ({human_size(target.size)}) needs a "
                                  "yes: run it again with --yes.")
        answer = input(f"Delete {target.path} ({human_size(target.size)})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing was deleted.", file=sys.stderr)
            return 1
    removed = m.remove(str(target.path) if target.source == "path" else args.model, args.owner)
    print(json.dumps({"removed": str(removed.path)}) if args.json else f"Deleted {removed.path}")
    return 0


def _search(m: ModelManager, args: argparse.Namespace) -> int:
    from app.session.hub_search import search

    found = search(m, " ".join(args.query), args.purpose, args.limit)
    for why in found.unread:  # a repository left out: its header could not be read
        print(f"tramontane: left out {why}", file=sys.stderr)
    if found.unread and not found.rows:
        return 1
    if args.json:
        print(json.dumps({"rows": [r.to_dict() for r in found.rows],
                          "seconds": round(found.seconds, 2), "bytes_read": found.bytes_read,
                          "left_out": found.unread}, indent=2))
        return 0
    if found.note:
        print(f"tramontane: {found.note}", file=sys.stderr)
    print(f"This machine: {m.hardware.summary()}")
    print(f"{'SIZE':>9}  {'FITS':<4} {'TOK/S':>6} {'2K PROMPT':>9} {'MAX CTX':>8}  "
          f"{'LICENCE':<12} MODEL (pull it as shown)")
    for r in found.rows:
        licence = r.licence + (" gated" if r.gated else "")
        print(f"{human_size(r.size):>9}  {('yes' if r.fits else 'no'):<4} {r.decode_tps:>6.1f} "
              f"{r.cold_2k_s:>8.1f}s {r.max_context:>8,}  {licence:<12} {r.ref}")
        if r.why:
            print(f"{'':>11}{r.why}")
    if not found.rows:
        print("No GGUF model on the hub matches.", file=sys.stderr)
    read = (f"{found.bytes_read / 2**20:.1f} MiB of {found.headers_read} headers read"
            if found.bytes_read else "the headers kept from an earlier search"
            if found.headers_read else "no header read")
    print(f"{len(found.rows)} files from the hub in {found.seconds:.1f} s ({read}).",
          file=sys.stderr)
    return 0


def _use(m: ModelManager, args: argparse.Namespace) -> int:
    model = m.use(args.model, args.purpose)
    if args.json:
        print(json.dumps({args.purpose: model.name}))
    else:
        print(f"{model.name} is now the default {args.purpose} model.")
    return 0


_ACTIONS = {"list": _list, "fit": _fit, "info": _info, "pull": _pull, "rm": _rm, "use": _use,
            "search": _search}
