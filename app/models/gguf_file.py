"""Read a GGUF file's header (metadata and tensor table) without reading weights, and say
plainly when a file is not a GGUF, is truncated, or is damaged.

gguf's own `GGUFReader` parses every vocabulary string into numpy fields (5 s for SmolLM2,
20 s for Gemma 3 here), so this walks the header with `struct` and skips arrays, using the
gguf package's type tables.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from app.errors import CorruptModelError, ModelNotFoundError
from app.models.catalog import Arch

_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
# Types llama.cpp's CPU backend repacks into interleaved blocks at load (AVX2 / NEON): a second
# copy of those layer weights beside the mapped file, both resident (see fit.py)
_REPACKED = {GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_K, GGMLQuantizationType.IQ4_NL}
_KEEP_ARRAY_ITEMS = 64  # short arrays (layer patterns, languages) are kept; vocabularies not
VOCAB = "\0vocabulary"  # in `want`: keep every token's text (GGUFHeader.tokens)


@dataclass
class GGUFHeader:
    path: Path
    size: int
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensor_count: int = 0
    data_end: int = 0
    tensor_bytes: int = 0
    parameters: int = 0  # weights, counted in elements
    embedding_bytes: int = 0  # token_embd: a row lookup per token, unless it is the output too
    output_bytes: int = 0  # output.weight (0 when tied to the embedding)
    expert_bytes: int = 0  # mixture-of-experts tensors (`*_exps`): only some are read per token
    repack_bytes: int = 0  # layer weights llama.cpp's CPU backend copies into a repacked layout
    found_tokens: set[str] = field(default_factory=set)  # of the `want` strings, those in vocab
    tokens: list[str] = field(default_factory=list)  # every token's text, when VOCAB is wanted

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def chat_template(self) -> str:
        return str(self.metadata.get("tokenizer.chat_template", ""))


class HeaderIncomplete(CorruptModelError):
    """The bytes read so far end inside the header: read more of the file (a range read).
    Raised by the parser, it says how far it got: `header` holds every key read whole,
    `keys_left` were not (the one it stopped in among them), and `stopped_at` is where that
    key starts (-1: it stopped in the tensor table)."""

    header: GGUFHeader | None = None
    keys_left = 0
    stopped_at = -1


class Cursor:
    def __init__(self, buf: Any, path: Path, partial: bool = False) -> None:
        self.buf, self.pos, self.path = buf, 0, path
        self.partial = partial  # the start of a longer file: running out means "read more"

    def _short(self) -> None:
        if self.partial:
            raise HeaderIncomplete(f"{self.path}: the header goes past the {len(self.buf):,} "
                                   "bytes read.")

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            self._short()
            raise CorruptModelError(
                f"{self.path} is truncated inside its header ({len(self.buf)} bytes). "
                "Download or copy it again."
            )
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if n > len(self.buf) - self.pos:
            self._short()
            raise CorruptModelError(f"{self.path} has a damaged header (a string runs past the end).")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        raise CorruptModelError(f"{self.path} has a damaged header (unknown value type {vtype}).")


SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def split_parts(first: Path) -> list[Path]:
    """Every part of a model published in parts (`NAME-00001-of-00003.gguf`), from the first;
    [first] for a model in one file."""
    found = SPLIT_PART.search(first.name)
    if found is None:
        return [first]
    count = int(found.group(2))
    stem = first.name[:found.start()]
    return [first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def read_header(path: Path, want: set[str] | None = None) -> GGUFHeader:
    """Parse the header of `path` (of every part, for a model in parts: one model, its
    tensors summed); raise `CorruptModelError` with a reason a user can act on.

    `want`: strings to look for in the vocabulary (special tokens), reported in found_tokens."""
    path = Path(path)
    parts = split_parts(path)
    if len(parts) > 1 and parts[0] == path:
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise CorruptModelError(f"{path.name} is part 1 of {len(parts)}; missing: "
                                    f"{', '.join(missing)}. Pull it again to fetch every part.")
        head = _read_one(path, want)
        for part in parts[1:]:
            more = _read_one(part, None)
            head.size += more.size
            head.tensor_count += more.tensor_count
            for name in ("tensor_bytes", "parameters", "embedding_bytes", "output_bytes",
                         "expert_bytes", "repack_bytes"):
                setattr(head, name, getattr(head, name) + getattr(more, name))
        return head
    return _read_one(path, want)


def _read_one(path: Path, want: set[str] | None) -> GGUFHeader:
    if not path.is_file():
        raise ModelNotFoundError(f"No model file at {path}.")
    size = path.stat().st_size
    if size < 24:
        raise CorruptModelError(f"{path} is {size} bytes, too small to be a GGUF model.")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise CorruptModelError(
                f"{path} is not a GGUF model (it starts with {bytes(buf[:4])!r}). "
                "Tramontane runs .gguf files made for llama.cpp."
            )
        try:
            return _parse(Cursor(buf, path), path, size, want or set())
        except struct.error as exc:
            raise CorruptModelError(
                f"{path} is truncated inside its header ({size:,} bytes). Download or copy it again."
            ) from exc
        except (ValueError, KeyError, OverflowError) as exc:
            raise CorruptModelError(f"{path} has a damaged header ({exc}).") from exc


def header_of_bytes(data: bytes, name: str, size: int,
                    want: set[str] | None = None) -> GGUFHeader:
    """The header from the first bytes of a file of `size` bytes (a range read of a file on
    the hub): `HeaderIncomplete` when they end inside it."""
    path = Path(name)
    if data[:4] != b"GGUF":
        raise CorruptModelError(f"{name} is not a GGUF model (it starts with {data[:4]!r}).")
    try:
        return _parse(Cursor(data, path, partial=len(data) < size), path, size, want or set())
    except struct.error as exc:
        if len(data) < size:
            raise HeaderIncomplete(f"{name}: the header goes past the {len(data):,} bytes "
                                   "read.") from exc
        raise CorruptModelError(f"{name} has a damaged header ({exc}).") from exc
    except (ValueError, KeyError, OverflowError) as exc:
        raise CorruptModelError(f"{name} has a damaged header ({exc}).") from exc


def _parse(cur: Cursor, path: Path, size: int, want: set[str]) -> GGUFHeader:
    head, n_kv = _start(cur, path, size)
    for done in range(n_kv):
        mark = cur.pos
        try:
            one_kv(cur, head, want)
        except HeaderIncomplete as short:
            short.header, short.keys_left, short.stopped_at = head, n_kv - done, mark
            raise
    data_end = 0
    for _ in range(head.tensor_count):
        data_end = max(data_end, one_tensor(cur, head))
    finish(head, cur.pos, data_end)
    return head


def _start(cur: Cursor, path: Path, size: int) -> tuple[GGUFHeader, int]:
    """The fixed start: the version and the counts; the header to fill, and how many keys."""
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise CorruptModelError(f"{path} is GGUF version {version}; llama.cpp reads 2 and 3.")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise CorruptModelError(f"{path} has a damaged header (impossible counts).")
    return GGUFHeader(path=path, size=size, version=version, tensor_count=n_tensors), n_kv


def one_kv(cur: Cursor, head: GGUFHeader, want: set[str]) -> None:
    """One key and its value into `head` (an array's length as soon as it is known)."""
    key = cur.string()
    vtype = cur.take("<I")
    if vtype != GGUFValueType.ARRAY:
        head.metadata[key] = cur.value(vtype)
        return
    itype, count = cur.take("<I"), cur.take("<Q")
    head.array_lengths[key] = count
    if itype == GGUFValueType.STRING and VOCAB in want and key == "tokenizer.ggml.tokens":
        items = None
        head.tokens = [cur.string() for _ in range(count)]
    elif itype == GGUFValueType.STRING and want and key == "tokenizer.ggml.tokens":
        items = None
        for _ in range(count):
            token = cur.string()
            if token in want:
                head.found_tokens.add(token)
    elif itype == GGUFValueType.STRING:
        items = _strings(cur, count)
    else:
        items = _skip_scalars(cur, itype, count)
    if count <= _KEEP_ARRAY_ITEMS and items is not None:
        head.metadata[key] = items


def one_tensor(cur: Cursor, head: GGUFHeader) -> int:
    """One entry of the tensor table into `head`; where its data ends (from the data start)."""
    path = head.path
    name = cur.string()
    n_dims = cur.take("<I")
    if n_dims > 8:
        raise CorruptModelError(f"{path} has a damaged header (a tensor with {n_dims} dims).")
    dims = [cur.take("<Q") for _ in range(n_dims)]
    ttype, offset = cur.take("<I"), cur.take("<Q")
    nbytes = _tensor_bytes(path, ttype, dims)
    head.tensor_bytes += nbytes
    head.parameters += _elements(dims)
    if name == "token_embd.weight":
        head.embedding_bytes = nbytes
    elif name == "output.weight":
        head.output_bytes = nbytes
    elif "_exps." in name:
        head.expert_bytes += nbytes
    if name.startswith("blk.") and ttype in _REPACKED and n_dims == 2:
        head.repack_bytes += nbytes
    return int(offset + nbytes)


def finish(head: GGUFHeader, table_end: int, data_end: int) -> None:
    """Where the data starts (the table's end, aligned) and ends; a file too short for it
    is truncated."""
    path = head.path
    align = head.metadata.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or not 1 <= align <= 1 << 20 \
            or align & (align - 1):
        raise CorruptModelError(f"{path} has a damaged header (general.alignment = {align!r}, "
                                "not a power of two).")
    data_start = (table_end + align - 1) // align * align
    head.data_end = data_start + data_end
    if head.data_end > head.size:
        raise CorruptModelError(
            f"{path} is truncated: {head.size:,} bytes on disk, {head.data_end:,} expected. "
            "Download or copy it again."
        )


def _strings(cur: Cursor, count: int) -> list[Any] | None:
    if count <= _KEEP_ARRAY_ITEMS:
        return [cur.string() for _ in range(count)]
    buf, pos, unpack = cur.buf, cur.pos, struct.unpack_from
    try:
        for _ in range(count):
            pos += 8 + unpack("<Q", buf, pos)[0]
    except struct.error:
        cur._short()  # the start of a longer file: read more
        raise
    if pos > len(buf):
        cur._short()
        raise CorruptModelError(f"{cur.path} is truncated inside its header.")
    cur.pos = pos
    return None


def _skip_scalars(cur: Cursor, itype: int, count: int) -> list[Any] | None:
    if itype not in _SCALARS:
        raise CorruptModelError(f"{cur.path} has a damaged header (array of type {itype}).")
    width = struct.calcsize(_SCALARS[itype])
    if count <= _KEEP_ARRAY_ITEMS:
        return [cur.value(itype) for _ in range(count)]
    if cur.pos + width * count > len(cur.buf):
        cur._short()
        raise CorruptModelError(f"{cur.path} is truncated inside its header.")
    cur.pos += width * count
    return None


def _tensor_bytes(path: Path, ttype: int, dims: list[int]) -> int:
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError) as exc:
        raise CorruptModelError(f"{path} uses tensor type {ttype}, unknown to this build.") from exc
    return _elements(dims) // block * type_size


def _elements(dims: list[int]) -> int:
    elements = 1
    for d in dims:
        elements *= d
    return elements


def arch_of(head: GGUFHeader) -> Arch:
    """The figures the memory estimate needs, from a GGUF header."""
    def num(key: str, default: int = 0) -> int:
        value = head.arch(key, default)
        if isinstance(value, list):  # per-layer arrays: take the largest
            value = max(value) if value else default
        return int(value or default)

    layers = num("block_count")
    heads = num("attention.head_count", 1)
    embedding = num("embedding_length")
    head_dim = num("attention.key_length") or (embedding // heads if heads else 0)
    window = num("attention.sliding_window")
    family = head.architecture
    swa_layers = 0
    if window:
        swa_layers = layers - layers // 6 if family == "gemma3" else (
            layers // 2 if family == "gemma2" else layers)
    vocab = head.array_lengths.get("tokenizer.ggml.tokens") or num("vocab_size")
    return Arch(layers=layers, heads=heads, kv_heads=num("attention.head_count_kv", heads),
                head_dim=head_dim, embedding=embedding, feed_forward=num("feed_forward_length"),
                vocab=int(vocab), sliding_window=window, swa_layers=swa_layers,
                experts=num("expert_count"), experts_used=num("expert_used_count"))
