"""Which draft model speeds up a llama.cpp model (speculative decoding, engine/llama/draft.py).

A draft model must share the target's vocabulary: the same tokenizer, start and end tokens, and
the same text for every token id, within llama.cpp's slack of 128 trailing tokens (Qwen2.5-Coder
7B pads its vocabulary to 152,064; the 0.5B and 1.5B have 151,936). Both GGUF headers are read
for it, the candidate's from its first chunk when it is a starter not yet assembled.

`[params] speculative = "draft"` or `--draft-model` asks for one. Under "auto", the smallest
installed candidate is loaded only when the speed model, calibrated by `doctor`, predicts that
drafting pays on this machine: k draft steps plus one pass of the big model over k + 1 tokens
must beat k + 1 single passes at the acceptance drafts reach (engine/llama/draft.py prices it).
On a CPU, where a batch costs nearly what its tokens do, it does not, and nothing is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from app.engine.backend import Params
from app.engine.llama.draft import VOCAB_SLACK, DraftModel
from app.errors import TramontaneError
from app.models import speed as speedmod
from app.models import starters
from app.models.gguf_file import VOCAB, GGUFHeader, header_of_bytes, read_header
from app.models.hardware import Hardware
from app.models.local import LocalModel

HEADER_READ = 16 * 2**20  # a starter's first chunk holds its header (Qwen's is 6 MB)
SMALLER = 0.5  # a draft model is at most half the size of the model it drafts for


class DraftModelError(TramontaneError):
    """A draft model that cannot draft for the model (another vocabulary, no file)."""


def header(model: LocalModel) -> GGUFHeader:
    """`model`'s header with its vocabulary, from its file or its first starter chunk."""
    if model.path.is_file():
        return _file_header(model.path, model.path.stat().st_mtime_ns)
    chunks = starters.CHUNKED[model.starter].chunks() if model.starter else None
    if not chunks:
        raise DraftModelError(f"{model.name} has no file on disk.")
    return _chunk_header(tuple(chunks), model.path.name, chunks[0].stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_header(path: Path, mtime_ns: int) -> GGUFHeader:
    return read_header(path, {VOCAB})


@functools.lru_cache(maxsize=8)
def _chunk_header(chunks: tuple[Path, ...], name: str, mtime_ns: int) -> GGUFHeader:
    with chunks[0].open("rb") as fh:
        data = fh.read(HEADER_READ)
    return header_of_bytes(data, name, sum(c.stat().st_size for c in chunks), {VOCAB})


def mismatch(target: GGUFHeader, draft: GGUFHeader) -> str:
    """Why `draft` cannot draft for `target`, or "" when it can."""
    meta_t, meta_d = target.metadata, draft.metadata
    for key, what in (("tokenizer.ggml.model", "tokenizer"),
                      ("tokenizer.ggml.bos_token_id", "start token"),
                      ("tokenizer.ggml.eos_token_id", "end token")):
        if meta_t.get(key) != meta_d.get(key):
            return f"another {what}"
    a, b = target.tokens, draft.tokens
    if not a or not b or abs(len(a) - len(b)) > VOCAB_SLACK:
        return f"vocabularies of {len(a):,} and {len(b):,} tokens"
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y and i >= 5:
            return f"token {i} is {x!r} in one and {y!r} in the other"
    return ""


def pays(target: GGUFHeader, draft: GGUFHeader, measured: speedmod.MachineSpeed | None,
         hw: Hardware, gpu_layers: int) -> bool:
    """Whether the speed model predicts, from this machine's `measured` figures, that drafting
    with `draft` beats plain decoding here (False with no calibration: nothing to predict
    from)."""
    if measured is None:
        return False
    big = speedmod.predict(speedmod.shape_of_header(target), hw, measured, gpu_layers)
    small = speedmod.predict(speedmod.shape_of_header(draft), hw, measured, gpu_layers)
    if not (big.decode_tps > 0 and big.prompt_tps > 0 and small.decode_tps > 0):
        return False
    # a pass over n tokens: one single pass, and the rest at the prompt's rate (measured here:
    # 2 tokens 1.4, 4 tokens 2.2, 16 tokens 4.3 single passes; this gives 1.3, 1.9 and 5.4)
    ratio = big.decode_tps / big.prompt_tps
    model = DraftModel(None, lambda n: 1.0 + (n - 1) * ratio, big.decode_tps / small.decode_tps)
    return model.length(64) > 0


def choose(model: LocalModel, installed: Callable[[], list[LocalModel]], params: Params,
           data_dir: Path, hw: Hardware, gpu_layers: int
           ) -> tuple[LocalModel, GGUFHeader] | None:
    """The draft model for `model` under `params` (its header too, for the fit verdict), or
    None: speculation off or by lookup alone, no candidate, or one that would not pay. The
    `installed` models are listed only when a draft model may be wanted."""
    if params.speculative in ("off", "lookup") or not model.path.is_file():
        return None
    measured = speedmod.load_cached(data_dir, hw)
    if params.speculative == "auto" and not params.draft_model and measured is None:
        return None  # no calibration, no prediction: prompt lookup alone
    try:
        target = header(model)
    except TramontaneError:
        return None
    if params.draft_model:
        models = installed()
        named = [m for m in models if params.draft_model in (m.name, str(m.path))]
        loose = Path(params.draft_model).expanduser()
        if not named and not loose.is_file():
            raise DraftModelError(f"No model named {params.draft_model} to draft with "
                                  "(`tramontane models list` names them).")
        pick = named[0] if named else LocalModel(loose.stem, loose, "path")
        head = header(pick)
        why = mismatch(target, head)
        if why:
            raise DraftModelError(f"{pick.name} cannot draft for {model.name}: {why}.")
        return pick, head
    limit = model.size * SMALLER
    for size, cand in sorted(((_size(m), m) for m in installed()), key=lambda sm: sm[0]):
        if cand.path == model.path or not 0 < size <= limit:
            continue
        try:
            head = header(cand)
        except TramontaneError:
            continue
        if mismatch(target, head):
            continue
        if params.speculative == "draft" or pays(target, head, measured, hw, gpu_layers):
            return cand, head
    if params.speculative == "draft":
        raise DraftModelError(f"No installed model shares {model.name}'s vocabulary to draft "
                              "with; name one with --draft-model.")
    return None


def _size(model: LocalModel) -> int:
    if model.path.is_file() or not model.starter:
        return model.size
    chunks = starters.CHUNKED[model.starter].chunks() or []
    return sum(c.stat().st_size for c in chunks)
