"""`models search`: GGUF models on the hub, ranked by what runs well on this machine.

One header is read per repository (range reads, models/hub.py); every quant of it is predicted
from that header and the quant's size, exactly as a file on disk or a catalog entry: the fit
verdict, decode tokens/s, the cold 2k prompt and the largest context that fits. Ranking puts
first what this machine can live with (the recommendation's targets), best quality among those,
and says why a bigger model ranks lower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.engine.prompts import fim
from app.errors import TramontaneError
from app.models import fit as fitmod
from app.models import hub
from app.models import speed as speedmod
from app.models.catalog import QUANT_QUALITY
from app.models.gguf_file import GGUFHeader, arch_of
from app.session.models import (
    CHAT_MIN_TPS,
    CODE_MAX_COLD_S,
    CODE_MAX_SUGGESTION_S,
    DEFAULT_FIT_CONTEXT,
    ModelManager,
    ModelRow,
)


@dataclass
class HubRow:
    repo: str
    file: str
    quant: str
    size: int
    parts: int
    params_b: float
    architecture: str
    fits: bool
    fit_words: str
    needs: int  # bytes at the default context
    decode_tps: float
    cold_2k_s: float
    max_context: int
    fim: bool
    licence: str
    gated: bool
    downloads: int
    why: str = ""  # why it ranks where it does ("" for the best kind)
    score: tuple[float, ...] = field(default=(), repr=False)
    verdict: fitmod.FitVerdict | None = field(default=None, repr=False)
    speed: speedmod.SpeedPrediction | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.file}"

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for internal in ("score", "verdict", "speed"):
            out.pop(internal)
        out["ref"] = self.ref
        return out


@dataclass
class SearchResult:
    rows: list[HubRow]
    seconds: float
    bytes_read: int
    headers_read: int
    note: str = ""  # offline: the answer kept from an earlier search
    unread: list[str] = field(default_factory=list)  # "REPO: why" for headers not read


def search(manager: ModelManager, query: str, purpose: str = "chat", limit: int = 20,
           endpoint: str | None = None) -> SearchResult:
    t0 = time.perf_counter()
    endpoint = endpoint or manager.endpoint
    cache = manager.ctx.paths.data_dir / "hub-headers"
    from concurrent.futures import ThreadPoolExecutor

    repos, note = hub.search(query, endpoint, limit, cache)

    def header(repo: hub.HubRepo) -> hub.RemoteHeader | str:
        try:
            return hub.read_header(_representative(repo.files), cache, endpoint,
                                   set(fim.MARKERS))
        except TramontaneError as exc:  # one repository's file, not the search
            return f"{repo.repo}: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:  # range reads in parallel
        heads = list(pool.map(header, repos))
    rows = [_row(manager, repo, file, got.header, purpose)
            for repo, got in zip(repos, heads, strict=True)
            if isinstance(got, hub.RemoteHeader) for file in repo.files]
    unread = [got for got in heads if isinstance(got, str)]
    read = sum(h.bytes_read for h in heads if isinstance(h, hub.RemoteHeader))
    headers = len(heads) - len(unread)
    rows.sort(key=lambda r: r.score, reverse=True)
    _explain(rows, purpose)
    return SearchResult(rows, time.perf_counter() - t0, read, headers, note, unread)


def as_model_row(row: HubRow) -> ModelRow:
    """A hub file as a line of the models table (pulled by its REPO:FILE name)."""
    return ModelRow(row.ref, row.quant, row.size, row.verdict, False, "hub", speed=row.speed)


def _representative(files: list[hub.HubFile]) -> hub.HubFile:
    """The file whose header stands for the repository's: Q4_K_M, else the smallest."""
    return next((f for f in files if f.quant == "Q4_K_M"), min(files, key=lambda f: f.size))


def _row(manager: ModelManager, repo: hub.HubRepo, file: hub.HubFile, head: GGUFHeader,
         purpose: str) -> HubRow:
    arch = arch_of(head)
    header_bytes = max(0, head.size - head.tensor_bytes)  # of the file the header came from
    weights = max(1, file.size - header_bytes)
    scale = weights / max(1, head.tensor_bytes)
    trained = int(head.arch("context_length", 4096) or 4096)
    ctx = min(DEFAULT_FIT_CONTEXT, trained)
    repack, experts = int(head.repack_bytes * scale), int(head.expert_bytes * scale)
    verdict = fitmod.verdict(arch, weights, ctx, manager.hardware, None, repack=repack,
                             experts=experts)
    # a model in parts: its first part's header, scaled to all of its weights (an estimate)
    parameters = head.parameters * scale
    shape = speedmod.shape_of(arch, weights, parameters, experts or None,
                              head.embedding_bytes, tied=head.output_bytes == 0)
    predicted = speedmod.predict(shape, manager.hardware, manager.speed,
                                 verdict.estimate.gpu_layers,
                                 cpu_expert_layers=verdict.estimate.cpu_expert_layers)
    has_fim = fim.detect("", head.found_tokens, head.architecture).name != "continue"
    largest = fitmod.largest_context(arch, weights, manager.hardware, trained,
                                     repack=repack) if verdict.fits else 0
    row = HubRow(repo.repo, file.file, file.quant, file.size, max(1, len(file.parts)),
                 round(parameters / 1e9, 2), head.architecture, verdict.fits,
                 verdict.words(), verdict.estimate.total, round(predicted.decode_tps, 1),
                 round(predicted.prompt_seconds(2048), 1), largest, has_fim, repo.license,
                 repo.gated, repo.downloads, verdict=verdict, speed=predicted)
    fast = _fast_enough(row, purpose)
    quality = parameters * QUANT_QUALITY.get(file.quant.upper(), 0.8)
    wanted = 1.0 if purpose != "code" or has_fim else 0.0
    row.score = (float(row.fits), float(fast), wanted, quality, float(repo.downloads))
    return row


def _fast_enough(row: HubRow, purpose: str) -> bool:
    if purpose == "code":
        return row.cold_2k_s <= CODE_MAX_COLD_S and 16 / max(row.decode_tps, 1e-6) \
            <= CODE_MAX_SUGGESTION_S
    return row.decode_tps >= CHAT_MIN_TPS


def _explain(rows: list[HubRow], purpose: str) -> None:
    """Why each row that is not of the best kind ranks lower."""
    for row in rows:
        if not row.fits:
            row.why = f"does not fit here: {row.fit_words}"
        elif not _fast_enough(row, purpose):
            target = (f"{CHAT_MIN_TPS:.0f} tok/s for chat" if purpose == "chat" else
                      f"a {CODE_MAX_SUGGESTION_S:.0f} s suggestion and a {CODE_MAX_COLD_S:.0f} s "
                      "cold prompt for code")
            row.why = f"fits, but too slow here ({row.decode_tps:.0f} tok/s; the target is " \
                      f"{target})"
        elif purpose == "code" and not row.fim:
            row.why = "no fill-in-the-middle tokens: completes by continuing the prefix only"
