"""GGUF models on the Hugging Face hub, before any download: the repositories a search finds
(`huggingface_hub`'s HfApi), their GGUF files with the sizes and sha256 the hub publishes, and
each file's header read with HTTP range requests (the metadata and tensor table, never the
weights), so fit and speed are predicted exactly as for a file on disk.

Headers read are kept in the data folder (`hub-headers/`, by the file's sha256): a second
search, or one without a network, reads nothing again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import TramontaneError
from app.models import header_ranges
from app.models.catalog import CatalogModel, Quant
from app.models.gguf_file import GGUFHeader, HeaderIncomplete, header_of_bytes

FIRST_READ = 1 << 20  # bytes of a file's start read first; doubled while the header goes on
MAX_READ = 32 << 20  # a header past this is not a model header
QUANT = re.compile(r"(I?Q\d[_A-Z0-9]*|F16|BF16|F32)", re.IGNORECASE)
PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


class HubError(TramontaneError):
    """The hub could not be asked (offline, a bad answer): one line for the user."""


@dataclass
class HubFile:
    repo: str
    file: str
    size: int  # every part, for a split model
    sha256: str
    parts: list[tuple[str, int, str]] = field(default_factory=list)  # split: (file, size, sha)

    @property
    def quant(self) -> str:
        found = QUANT.findall(Path(self.file).stem.upper())
        return found[-1] if found else "?"

    def as_quant(self) -> Quant:
        return Quant(self.quant, self.file, self.size, self.sha256, self.repo)


@dataclass
class HubRepo:
    repo: str
    downloads: int = 0
    likes: int = 0
    license: str = ""
    gated: bool = False
    files: list[HubFile] = field(default_factory=list)


def _api(endpoint: str | None) -> object:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # its retry notes
    return HfApi(endpoint=endpoint)


def reachable(endpoint: str | None) -> str:
    """'' when one connection to the hub opens (5 s at most), else why not. Offline,
    huggingface_hub retries for 23 s before it gives up; this answers at once. Behind a proxy
    the answer is left to the request itself."""
    import os
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy", "ALL_PROXY", "all_proxy")):
        return ""
    url = urlsplit(endpoint or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=5).close()
    except OSError as exc:
        return f"{url.hostname} cannot be reached ({exc.strerror or exc})"
    return ""


def search(query: str, endpoint: str | None = None, limit: int = 20,
           cache: Path | None = None) -> tuple[list[HubRepo], str]:
    """Repositories with GGUF files matching `query`, most downloaded first, with their files;
    and '' or, offline, a line saying the answer is the one kept from an earlier search (in
    `cache`). Offline with nothing kept: `HubError`, one line."""
    import hashlib
    import json
    import time

    kept = cache / f"search-{hashlib.sha256(f'{query}|{limit}'.encode()).hexdigest()[:16]}" \
        f".json" if cache is not None else None
    try:
        found = _search(query, endpoint, limit)
    except HubError:
        if kept is None or not kept.is_file():
            raise
        data = json.loads(kept.read_text(encoding="utf-8"))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(data["at"]))
        repos = [HubRepo(r["repo"], r["downloads"], r["likes"], r["license"], r["gated"],
                         [HubFile(**f) for f in r["files"]]) for r in data["repos"]]
        return repos, f"The hub cannot be reached: these are its answers of {when}."
    if kept is not None:
        from dataclasses import asdict

        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps({"at": time.time(), "repos": [asdict(r) for r in found]}),
                        encoding="utf-8")
    return found, ""


def _search(query: str, endpoint: str | None, limit: int) -> list[HubRepo]:
    from concurrent.futures import ThreadPoolExecutor

    why = reachable(endpoint)
    if why:
        raise HubError(f"Could not search the Hugging Face hub: {why}.")
    api = _api(endpoint)
    try:
        found = list(api.list_models(search=query, filter="gguf", sort="downloads",  # type: ignore[attr-defined]
                                     limit=limit))
        with ThreadPoolExecutor(max_workers=8) as pool:  # the hub answers in parallel
            repos = list(pool.map(lambda m: repo_files(m.id, endpoint, api), found))
    except HubError:
        raise
    except Exception as exc:  # offline, HTTP errors: one line
        raise HubError(f"Could not search the Hugging Face hub: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") \
            from None
    return [r for r in repos if r.files]


def repo_files(repo: str, endpoint: str | None = None, api: object | None = None) -> HubRepo:
    """A repository's GGUF files (split parts grouped into one model), licence and gating."""
    info = (api or _api(endpoint)).model_info(repo, files_metadata=True)  # type: ignore[attr-defined]
    tags = list(getattr(info, "tags", None) or [])
    licence = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), "")
    out = HubRepo(repo, int(getattr(info, "downloads", 0) or 0),
                  int(getattr(info, "likes", 0) or 0), licence,
                  bool(getattr(info, "gated", False)))
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for sib in getattr(info, "siblings", None) or []:
        name = sib.rfilename
        if not name.endswith(".gguf") or "mmproj" in name.lower():
            continue
        lfs = getattr(sib, "lfs", None)
        sha = (getattr(lfs, "sha256", "") if lfs is not None else "") or ""
        size = int(getattr(sib, "size", 0) or (getattr(lfs, "size", 0) if lfs else 0) or 0)
        key = PART.sub(".gguf", name)
        groups.setdefault(key, []).append((name, size, sha))
    for _, parts in sorted(groups.items()):
        parts.sort()
        first = parts[0]
        out.files.append(HubFile(repo, first[0], sum(p[1] for p in parts), first[2],
                                 parts if len(parts) > 1 else []))
    return out


@dataclass
class RemoteHeader:
    header: GGUFHeader
    bytes_read: int  # over the network this time (0: from the cache)


def read_header(file: HubFile, cache: Path, endpoint: str | None = None,
                want: set[str] | None = None) -> RemoteHeader:
    """The header of a hub file (its first part, for a split model), from range reads of its
    two ends (header_ranges.py), or of its whole start where those do not check out; kept in
    `cache` by sha256. `want`: vocabulary strings to look for (FIM tokens)."""
    import httpx
    from huggingface_hub import hf_hub_url

    want = want or set()
    first_size = file.parts[0][1] if file.parts else file.size
    cached = cache / f"{file.sha256 or re.sub(r'[^A-Za-z0-9]', '_', file.repo + file.file)}.json"
    kept = _from_cache(cached, file.file, want)
    if kept is not None:
        return RemoteHeader(kept, 0)
    url = hf_hub_url(file.repo, file.file, endpoint=endpoint)
    fetched = 0  # bytes over the network, whichever way the header was read
    try:
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            def fetch(begin: int, end: int) -> bytes:
                nonlocal url, fetched
                data = bytearray()
                with client.stream("GET", url, headers={"Range": f"bytes={begin}-{end - 1}"}) \
                        as answer:
                    answer.raise_for_status()
                    if answer.status_code != 206 and begin:  # the whole file, from its start
                        raise HubError(f"{file.repo}/{file.file}: the server does not answer "
                                       "range requests, so its header cannot be read alone.")
                    url = str(answer.url)  # the hub redirects to its CDN: ask there next time
                    for chunk in answer.iter_bytes():
                        data += chunk
                        if len(data) >= end - begin:
                            break
                fetched += min(len(data), end - begin)
                return bytes(data[:end - begin])

            ranged = header_ranges.read(fetch, first_size, file.file, want)
            header = ranged[0] if ranged is not None else \
                _whole_start(fetch, file, first_size, want)
    except httpx.HTTPError as exc:
        raise HubError(f"Could not read {file.repo}/{file.file}: {exc}.") from None
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(_as_json(header, want)), encoding="utf-8")
    return RemoteHeader(header, fetched)


def _whole_start(fetch: header_ranges.Fetch, file: HubFile, size: int,
                 want: set[str]) -> GGUFHeader:
    """The header read from the start, each read as long as all before, until it ends."""
    data, upto = b"", FIRST_READ
    while True:
        data += fetch(len(data), min(upto, size))
        try:
            return header_of_bytes(data, file.file, size, want)
        except HeaderIncomplete:
            if upto >= MAX_READ or len(data) >= size:
                raise HubError(f"{file.repo}/{file.file} has a header over "
                               f"{MAX_READ >> 20} MB; it is not a model this reads.") from None
            upto *= 2


_NUMBERS = ("size", "version", "tensor_count", "data_end", "tensor_bytes", "parameters",
            "embedding_bytes", "output_bytes", "expert_bytes", "repack_bytes")


def _as_json(head: GGUFHeader, want: set[str]) -> dict[str, object]:
    return {"metadata": head.metadata, "array_lengths": head.array_lengths,
            "found_tokens": sorted(head.found_tokens), "wanted": sorted(want)} | \
        {name: getattr(head, name) for name in _NUMBERS}


def _from_cache(cached: Path, name: str, want: set[str]) -> GGUFHeader | None:
    """A header kept by an earlier search, if it looked for every token wanted now."""
    try:
        kept = json.loads(cached.read_text(encoding="utf-8"))
        if not want <= set(kept["wanted"]):
            return None
        head = GGUFHeader(Path(name), int(kept["size"]), int(kept["version"]))
        for number in _NUMBERS:
            setattr(head, number, int(kept[number]))
        head.metadata, head.array_lengths = dict(kept["metadata"]), dict(kept["array_lengths"])
        head.found_tokens = set(kept["found_tokens"])
        return head
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none kept, or damaged: read it again


def hub_file(ref: str, endpoint: str | None) -> tuple[CatalogModel, Quant]:
    """REPO:FILE or REPO:QUANT on the hub, as a pull knows it (its sha256 from the hub)."""
    repo, _, wanted = ref.partition(":")
    offline = reachable(endpoint)
    if offline:
        raise TramontaneError(f"Cannot pull {repo}: {offline}. `tramontane models list` "
                              "shows what is on this machine.")
    try:
        files = repo_files(repo, endpoint).files
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Name or service not known" in why or "resolution" in why or "onnect" in why:
            raise TramontaneError(f"The hub cannot be reached to pull {repo} (no network: "
                                  f"{why}). `tramontane models list` shows what is on this "
                                  "machine.") from None
        raise TramontaneError(f"Could not ask the hub about {repo}: {why}.") from None
    found = next((f for f in files if wanted in (f.file, f.quant)), None)
    if found is None:
        names = ", ".join(f.file for f in files) or "none"
        raise TramontaneError(f"{repo} has no GGUF file {wanted!r} (its GGUF files: {names}).")
    return CatalogModel(repo, repo, "", []), found.as_quant()
