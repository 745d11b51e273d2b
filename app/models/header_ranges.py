"""A GGUF header from a few range reads, not the whole of it: a vocabulary of 150,000 tokens
makes Qwen2.5-Coder's header 6 MB, and a search reads twenty headers.

What the predictions need sits at the header's two ends. The keys before the vocabulary hold
the architecture, layers, heads, context, experts and the vocabulary's size. After the
vocabulary come its last keys (chat template, special token ids) and the tensor table. The
middle is arrays (tokens, merges, scores) that can only be walked, not skipped.

So the start is read (256 KB), and the end of the header is found by bisection. A 4 KB probe
is either header (length-prefixed strings, small integers, moderate floats, text, the tensor
table) or weights. Near the end, the tensor table is the one place from which every tensor
parses and the data they name ends where the file does. The last keys start at the first place
from which keys parse up to the table. The end of the token list is found the same way, for the
special tokens a vocabulary keeps at its end (Qwen's FIM markers).

Whatever does not check out gives None, and the caller reads the header whole.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import numpy as np

from app.errors import CorruptModelError
from app.models.gguf_file import (
    Cursor,
    GGUFHeader,
    HeaderIncomplete,
    finish,
    header_of_bytes,
    one_kv,
    one_tensor,
)

Fetch = Callable[[int, int], bytes]  # the file's bytes [start, end)

HEAD = 256 << 10  # read first: the keys before the vocabulary, and its first tokens
PROBE = 4 << 10
NARROW = 64 << 10  # bisection stops when the end is known within this
LIMIT = 32 << 20  # a header past this is not a model header
TAIL = 64 << 10  # read before the tensor table for the last keys (chat templates are long)
TOKENS = "tokenizer.ggml.tokens"
HEADER_KINDS = {"tokens", "merges", "numbers", "text", "table"}
_PRINTABLE = bytes(range(32, 127)) + b"\t\n\r"
_ENTRY = re.compile(rb"[\x01-\x7f]\x00{7}[A-Za-z0-9_.\-]")
_KEY = re.compile(rb"[\x05-\x7f]\x00{7}[a-z]")
_KEY_NAME = re.compile(rb"[a-z0-9_]+(\.[A-Za-z0-9_\-]+)+")
_NEXT_ARRAY = re.compile(rb"[\x05-\x7f]\x00{7}tokenizer\.ggml\.[a-z_]+")


class _Reads:
    def __init__(self, fetch: Fetch, size: int) -> None:
        self.fetch, self.size, self.bytes = fetch, size, 0

    def get(self, begin: int, end: int) -> bytes:
        begin, end = max(0, begin), min(end, self.size)
        data = self.fetch(begin, end) if end > begin else b""
        self.bytes += len(data)
        return data

    def kind(self, at: int) -> str:
        return kind(self.get(at, at + PROBE))

    def bisect(self, lo: int, hi: int, after: Callable[[str], bool]) -> tuple[int, int]:
        """Narrow [lo, hi) (lo before the boundary, hi after it) to NARROW."""
        while hi - lo > NARROW:
            mid = (lo + hi) // 2
            if after(self.kind(mid)):
                hi = mid
            else:
                lo = mid
        return lo, hi


def read(fetch: Fetch, size: int, name: str, want: set[str]) -> tuple[GGUFHeader, int] | None:
    """The header of a file of `size` bytes and the bytes read for it; None where the
    ends cannot be told apart with certainty (read it whole instead)."""
    reads = _Reads(fetch, size)
    first = reads.get(0, HEAD)
    try:
        return header_of_bytes(first, name, size, want), reads.bytes  # a short header
    except HeaderIncomplete as short:
        head, left, mark = short.header, short.keys_left, short.stopped_at
    if head is None or mark < 0 or TOKENS not in head.array_lengths:
        return None  # stopped in the tensor table, or the vocabulary's size is not known
    key = Cursor(first, head.path, partial=True)
    key.pos = mark
    try:
        stopped = key.string()
    except CorruptModelError:
        return None
    lo, hi = reads.bisect(len(first), min(size, LIMIT), lambda k: k not in HEADER_KINDS)
    tail = _tail(reads, head, lo, hi, left)
    if tail is None:
        return None
    if want and stopped == TOKENS:
        _vocabulary_end(reads, head, len(first), tail, want)
    return head, reads.bytes


def _tail(reads: _Reads, head: GGUFHeader, lo: int, hi: int, left: int) -> int | None:
    """The last keys and the tensor table into `head`; where the last keys start."""
    table_room = head.tensor_count * 160
    for before in (TAIL, 4 * TAIL):
        base = max(HEAD, lo - table_room - before)
        window = reads.get(base, hi + 2 * PROBE)
        table = _table(window, base, head)
        if table is None:
            return None
        keys = _last_keys(window, base, table, head, left)
        if keys is not None:
            return keys
        if base == HEAD:
            return None
    return None


def _table(window: bytes, base: int, head: GGUFHeader) -> int | None:
    """Where the tensor table starts: the first place from which all of it parses and its
    data ends with the file."""
    align = head.metadata.get("general.alignment", 32)
    for found in _ENTRY.finditer(window):
        at = found.start()
        n = window[at]
        if not re.fullmatch(rb"[A-Za-z0-9_.\-]+", window[at + 8:at + 8 + n]):
            continue
        trial = GGUFHeader(path=head.path, size=head.size, version=head.version,
                           tensor_count=head.tensor_count, metadata={"general.alignment": align})
        cur = Cursor(window, head.path, partial=True)
        cur.pos = at
        try:
            data_end = max(one_tensor(cur, trial) for _ in range(head.tensor_count))
            finish(trial, base + cur.pos, data_end)
        except (CorruptModelError, struct.error, ValueError):
            continue
        if isinstance(align, int) and head.size - trial.data_end < align:
            for field in ("tensor_bytes", "parameters", "embedding_bytes", "output_bytes",
                          "expert_bytes", "repack_bytes", "data_end"):
                setattr(head, field, getattr(trial, field))
            return base + at
    return None


def _last_keys(window: bytes, base: int, table: int, head: GGUFHeader,
               left: int) -> int | None:
    """The keys between the last array walked over and the table (`left` keys were not in the
    start, the array it stopped in among them): the first place from which keys parse exactly
    up to the table, far enough into the window that the array before it was cut by it."""
    for found in _KEY.finditer(window, 0, table - base):
        at = found.start()
        if not _KEY_NAME.fullmatch(window[at + 8:at + 8 + window[at]]):
            continue
        trial = GGUFHeader(path=head.path, size=head.size, version=head.version)
        cur, count = Cursor(window, head.path, partial=True), 0
        cur.pos = at
        try:
            while cur.pos < table - base:
                one_kv(cur, trial, set())
                count += 1
        except (CorruptModelError, struct.error, ValueError, UnicodeDecodeError):
            continue
        if cur.pos != table - base or count >= left:
            continue
        if at < PROBE or kind(window[at - PROBE:at]) not in ("merges", "numbers", "tokens"):
            return None  # the last keys may start before the window: read more
        head.metadata.update(trial.metadata)
        head.array_lengths.update(trial.array_lengths)
        return base + at
    return None


def _vocabulary_end(reads: _Reads, head: GGUFHeader, lo: int, hi: int,
                    want: set[str]) -> None:
    """The wanted tokens among the last of the token list (its first part was walked)."""
    lo, hi = reads.bisect(lo, hi, lambda k: k != "tokens")
    window = reads.get(lo - NARROW, hi + PROBE)
    end = _NEXT_ARRAY.search(window)
    if end is None:
        return
    last = window[:end.start()]
    for token in want:
        raw = token.encode()
        if struct.pack("<Q", len(raw)) + raw in last:
            head.found_tokens.add(token)


def kind(buf: bytes) -> str:
    """What 4 KB of a GGUF file look like: tokens or merges (length-prefixed strings), numbers
    (small integers, moderate floats: token types, scores), text, the tensor table, zeros or
    weights (data)."""
    if not buf.strip(b"\0"):
        return "zero"
    chain = _chain(buf)
    if chain:
        return "merges" if sum(b" " in s for s in chain) >= 0.75 * len(chain) else "tokens"
    if buf.count(b".weight") >= 2 or buf.count(b"blk.") >= 3:
        return "table"
    for phase in range(4):
        words = np.frombuffer(buf, "<u4", (len(buf) - phase) // 4, phase)
        if (words < 1024).mean() >= 0.95:
            return "numbers"
        with np.errstate(all="ignore"):
            size = np.abs(words.view("<f4"))
            moderate = (size == 0) | ((size > 1e-6) & (size < 1e7))
        if moderate.mean() >= 0.95:
            return "numbers"
    if len(buf.translate(None, _PRINTABLE)) <= 0.1 * len(buf):
        return "text"
    return "data"


def _chain(buf: bytes) -> list[bytes]:
    """Length-prefixed strings running to the end of `buf` from one of its first places."""
    end = len(buf)
    for phase in range(min(end, 512)):
        strings, pos = [], phase
        while pos + 8 <= end:
            n = int.from_bytes(buf[pos:pos + 8], "little")
            if not 1 <= n <= 1024:
                break
            text = buf[pos + 8:pos + 8 + n]
            if b"\0" in text:
                break
            strings.append(text)
            pos += 8 + n
        if len(strings) >= 16 and pos + 8 > end:
            return strings
    return []
