"""A GGUF header from range reads of its two ends (models/header_ranges.py): for every
architecture in the catalog, the figures the fit and speed predictions use are the whole file's,
from under 2 MB. The starters are real files; the catalog's larger models (Mistral 7B's
vocabulary with scores, Nemo's 131k BPE vocabulary, Mixtral's experts, Codestral's 56 layers)
are written with the gguf package's writer: their real shapes and vocabulary sizes, random
bytes where the weights start, and the rest of the file left sparse."""

from __future__ import annotations

import random
from pathlib import Path

import gguf
import numpy as np
import pytest

from app.engine.prompts import fim
from app.models import header_ranges, starters
from app.models.gguf_file import GGUFHeader, HeaderIncomplete, arch_of, header_of_bytes, read_header

FIGURES = ("tensor_count", "tensor_bytes", "parameters", "embedding_bytes", "output_bytes",
           "expert_bytes", "repack_bytes", "data_end", "size")
Q4_K, Q6_K = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K


def _ranged(path: Path) -> tuple[GGUFHeader, int] | None:
    with path.open("rb") as fh:
        def fetch(begin: int, end: int) -> bytes:
            fh.seek(begin)
            return fh.read(end - begin)

        return header_ranges.read(fetch, path.stat().st_size, path.name, set(fim.MARKERS))


def _same_as_whole(path: Path) -> int:
    got = _ranged(path)
    assert got is not None, f"{path.name}: the ends were not found"
    part, read = got
    whole = read_header(path, set(fim.MARKERS))
    for figure in FIGURES:
        assert getattr(part, figure) == getattr(whole, figure), figure
    assert part.metadata == whole.metadata
    assert part.found_tokens == whole.found_tokens
    assert arch_of(part) == arch_of(whole)  # so the fit and the speed are predicted the same
    assert read <= 2 << 20
    return read


def test_the_starters_headers_from_their_two_ends(smollm2: Path, qwen_file: Path,
                                                  home: Path) -> None:
    gemma = starters.GEMMA.path(home / "data" / "models")
    assert gemma is not None
    reads = {p.name: _same_as_whole(p) for p in (smollm2, qwen_file, gemma)}
    assert reads[qwen_file.name] < 1 << 20  # of a 6 MB header
    qwen = _ranged(qwen_file)
    assert qwen is not None and {"<|fim_prefix|>", "<|fim_suffix|>"} <= qwen[0].found_tokens


def _matrix(w: gguf.GGUFWriter, name: str, rows: int, cols: int, kind: gguf.GGMLQuantizationType,
            experts: int = 0) -> None:
    block, size = gguf.GGML_QUANT_SIZES[kind]
    shape = (rows, cols // block * size) if not experts else (experts, rows,
                                                                cols // block * size)
    w.add_tensor_info(name, shape, np.dtype(np.uint8), int(np.prod(shape)), kind)


def _synthetic(folder: Path, name: str, *, layers: int, embedding: int, ff: int, heads: int,
               kv_heads: int, vocab: int, spm: bool, experts: int = 0,
               template: str = "{% for m in messages %}{{ m.content }}{% endfor %}") -> Path:
    """A model's header as the catalog describes it; the weights' first 32 MB random and the
    rest sparse."""
    path = folder / f"{name}.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_block_count(layers)
    w.add_context_length(32768)
    w.add_embedding_length(embedding)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
    rng = random.Random(vocab)
    letters = "abcdefghijklmnopqrstuvwxyz_()=.:"
    words = [("▁" if spm else "Ġ") + "".join(rng.choices(letters, k=rng.randint(1, 10)))
             for _ in range(vocab - 3)]
    w.add_tokenizer_model("llama" if spm else "gpt2")
    w.add_token_list(["<unk>", "<s>", "</s>", *words])
    if spm:
        w.add_token_scores([-float(i) for i in range(vocab)])
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    if not spm:
        w.add_token_merges([f"{a} {b}" for a, b in zip(words, words[1:], strict=False)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(template)
    kv = embedding // heads * kv_heads
    _matrix(w, "token_embd.weight", vocab, embedding, Q4_K)
    for i in range(layers):
        w.add_tensor_info(f"blk.{i}.attn_norm.weight", (embedding,), np.dtype(np.float32),
                          embedding * 4)
        for part, rows in (("q", embedding), ("k", kv), ("v", kv), ("output", embedding)):
            _matrix(w, f"blk.{i}.attn_{part}.weight", rows, embedding, Q4_K)
        w.add_tensor_info(f"blk.{i}.ffn_norm.weight", (embedding,), np.dtype(np.float32),
                          embedding * 4)
        for part in ("gate", "up", "down"):
            rows, cols = (embedding, ff) if part == "down" else (ff, embedding)
            if experts:
                _matrix(w, f"blk.{i}.ffn_{part}_exps.weight", rows, cols, Q4_K, experts)
            else:
                _matrix(w, f"blk.{i}.ffn_{part}.weight", rows, cols, Q6_K if part == "down"
                        else Q4_K)
    w.add_tensor_info("output_norm.weight", (embedding,), np.dtype(np.float32), embedding * 4)
    _matrix(w, "output.weight", vocab, embedding, Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = path.read_bytes()
    end = header_of_bytes(header, name, 1 << 62).data_end
    with path.open("r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"\0" * (-len(header) % 32) + random.Random(1).randbytes(32 << 20))
        fh.truncate(end)
    return path


CATALOG_SHAPES = {  # the catalog's architectures beyond the starters (models.toml)
    "mistral-7b": dict(layers=32, embedding=4096, ff=14336, heads=32, kv_heads=8, vocab=32768,
                       spm=True),
    "codestral-22b": dict(layers=56, embedding=6144, ff=16384, heads=48, kv_heads=8,
                          vocab=32768, spm=True),
    "mistral-nemo-12b": dict(layers=40, embedding=5120, ff=14336, heads=32, kv_heads=8,
                             vocab=131072, spm=False),
    "mixtral-8x7b": dict(layers=32, embedding=4096, ff=14336, heads=32, kv_heads=8,
                         vocab=32000, spm=True, experts=8),
}


@pytest.mark.parametrize("name", sorted(CATALOG_SHAPES))
def test_the_catalogs_architectures_from_their_two_ends(tmp_path: Path, name: str) -> None:
    path = _synthetic(tmp_path, name, **CATALOG_SHAPES[name])  # type: ignore[arg-type]
    _same_as_whole(path)


def test_where_the_ends_do_not_check_out_the_header_is_read_whole(tmp_path: Path) -> None:
    """A chat template longer than the window read before the table: the last keys cannot be
    told from the middle with certainty, so nothing is guessed."""
    long = "{# " + "a long template " * 40_000 + "#}"
    path = _synthetic(tmp_path, "long-template", template=long,
                      **CATALOG_SHAPES["mistral-7b"])  # type: ignore[arg-type]
    assert _ranged(path) is None
    assert read_header(path).chat_template == long


def test_what_a_probe_of_the_file_looks_like(qwen_file: Path) -> None:
    whole = read_header(qwen_file)
    with qwen_file.open("rb") as fh:
        data = fh.read(whole.data_end - whole.tensor_bytes + (8 << 20))
    assert header_ranges.kind(data[100_000:104_096]) == "tokens"
    assert header_ranges.kind(data[-(4 << 20):-(4 << 20) + 4096]) == "data"
    assert header_ranges.kind(bytes(4096)) == "zero"


def test_a_read_that_ends_inside_any_array_asks_for_more(qwen_file: Path) -> None:
    """The start of a file cut inside the token strings, the token types (numbers) or the
    merges says "read more", with how far the parse got; never that the file is truncated."""
    size = qwen_file.stat().st_size
    with qwen_file.open("rb") as fh:
        data = fh.read(8 << 20)
    for cut in (1 << 20, 2_400_000, 2_800_000, 4 << 20, 5_800_000):
        with pytest.raises(HeaderIncomplete) as short:
            header_of_bytes(data[:cut], qwen_file.name, size)
        assert short.value.header is not None and short.value.stopped_at > 0
        assert short.value.keys_left >= 1
