"""Packaging: the Linux desktop entry and AppStream metainfo pass Debian's validators, and the
PyInstaller one-folder build runs (built here, in a temp folder, with the same script as
`make package`, which smoke-tests --version, doctor --json and a chat reply)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import __version__

pytestmark = pytest.mark.packaging  # the `make test-quick` lane leaves these out

ROOT = Path(__file__).resolve().parents[1]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "io.github.tramontane.Tramontane"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}); .ci/run installs it")
    return path


def test_desktop_entry_validates() -> None:
    tool = _tool("desktop-file-validate", "desktop-file-utils")
    entry = LINUX / f"{APP_ID}.desktop"
    result = subprocess.run([tool, str(entry)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    text = entry.read_text()
    assert "Terminal=true" in text and "Exec=tramontane" in text


def test_appstream_metainfo_validates() -> None:
    tool = _tool("appstreamcli", "appstream")
    meta = LINUX / f"{APP_ID}.metainfo.xml"
    result = subprocess.run([tool, "validate", "--no-net", str(meta)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = meta.read_text()
    assert f"<launchable type=\"desktop-id\">{APP_ID}.desktop</launchable>" in text
    assert f'<release version="{__version__}"' in text


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package")
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "pyinstaller" / "build.py"),
         "--dist", str(out / "dist"), "--work", str(out / "work")],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "chat reply:" in result.stdout and "smoke inference: {'ok': True" in result.stdout
    return out / "dist" / "tramontane" / "tramontane"


def test_packaged_app_answers_version_and_finds_its_plugins(packaged: Path,
                                                            tmp_path: Path) -> None:
    env = dict(os.environ, TRAMONTANE_HOME=str(tmp_path / "home"))
    env.pop("TRAMONTANE_PLUGINS", None)
    version = subprocess.run([str(packaged), "--version"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"tramontane {__version__}"
    listed = subprocess.run([str(packaged), "plugins", "list"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "tramontane-files 0.1.0: loaded" in listed.stdout
    assert "tramontane-repo-context 0.1.0: loaded" in listed.stdout
