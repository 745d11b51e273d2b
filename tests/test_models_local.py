"""GGUF headers, damaged files, the starter models and name resolution (no model loaded)."""

from pathlib import Path

import pytest

from app.config import paths
from app.errors import ConfigError, CorruptModelError, ModelNotFoundError
from app.models import local, starters
from app.models.catalog import load_catalog
from app.models.gguf_file import read_header


def test_header_of_the_starter_model(smollm2: Path) -> None:
    head = read_header(smollm2)
    assert head.architecture == "llama"
    assert head.arch("block_count") == 30
    assert head.data_end == head.size
    assert "<|im_start|>" in head.chat_template
    assert head.array_lengths["tokenizer.ggml.tokens"] == 49152


def _damage(tiny_gguf: Path, how: str) -> Path:
    data = tiny_gguf.read_bytes()
    if how == "empty":
        tiny_gguf.write_bytes(b"")
    elif how == "magic":
        tiny_gguf.write_bytes(b"PK\x03\x04" + data[4:])
    elif how == "header":
        tiny_gguf.write_bytes(data[:5000])
    elif how == "data":
        tiny_gguf.write_bytes(data[: len(data) // 2])
    elif how == "version":
        tiny_gguf.write_bytes(data[:4] + (99).to_bytes(4, "little") + data[8:])
    elif how == "counts":
        tiny_gguf.write_bytes(data[:8] + (2**60).to_bytes(8, "little") + data[16:])
    return tiny_gguf


@pytest.mark.parametrize(
    ("how", "words"),
    [("empty", "too small"), ("magic", "not a GGUF"), ("header", "truncated"),
     ("data", "truncated"), ("version", "version 99"), ("counts", "damaged")],
)
def test_damaged_files_are_named_plainly(tiny_gguf: Path, how: str, words: str) -> None:
    with pytest.raises(CorruptModelError, match=words):
        read_header(_damage(tiny_gguf, how))


def test_missing_file() -> None:
    with pytest.raises(ModelNotFoundError):
        read_header(Path("/nonexistent/model.gguf"))


def test_resolve_by_id_alias_and_path(smollm2: Path) -> None:
    p = paths()
    assert local.resolve("smollm2-135m-instruct", p.models_dir).path == smollm2
    assert local.resolve("smollm2", p.models_dir).path == smollm2
    by_path = local.resolve(str(smollm2), p.models_dir)
    assert by_path.source == "path" and by_path.path == smollm2


def test_resolve_unknown_lists_what_is_there() -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        local.resolve("llama-9000", paths().models_dir)


def test_gemma_is_assembled_once_and_marked_base(home: Path) -> None:
    models_dir = paths().models_dir
    gemma = starters.GEMMA.path(models_dir)
    assert gemma is not None and gemma.parent == models_dir
    assert read_header(gemma).architecture == "gemma3"
    mtime = gemma.stat().st_mtime_ns
    assert starters.GEMMA.path(models_dir) == gemma
    assert gemma.stat().st_mtime_ns == mtime
    found = {m.name: m for m in local.find_local(models_dir)}
    assert not found["gemma3-270m"].chat_tuned
    assert found["smollm2-135m-instruct"].chat_tuned


def test_user_catalog_bad_field_is_named(home: Path) -> None:
    user = paths().user_catalog
    user.parent.mkdir(parents=True)
    user.write_text('[[model]]\nid = "mine"\nname = "Mine"\nfamily = "x"\ncapabilities = "chat"\n')
    with pytest.raises(ConfigError, match=r"model #1 \(mine\): field `capabilities`"):
        load_catalog(user)


def test_user_catalog_overrides_by_id(home: Path) -> None:
    user = paths().user_catalog
    user.parent.mkdir(parents=True)
    user.write_text('[[model]]\nid = "smollm2-135m-instruct"\nname = "Tiny"\n')
    assert load_catalog(user)["smollm2-135m-instruct"].name == "Tiny"
    assert load_catalog(user)["smollm2-135m-instruct"].family == "smollm2"
