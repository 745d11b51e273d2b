"""Build the one-folder app with PyInstaller, then smoke-test it: `--version`, `doctor --json`
(which runs a short inference in the llama.cpp worker) and one chat reply from the bundled
starter model, each in a fresh TRAMONTANE_HOME. Exit 0 only when all three pass.

    python packaging/pyinstaller/build.py [--dist DIR] [--skip-build]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def build(dist: Path, work: Path) -> Path:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(HERE / "tramontane.spec")]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"built in {time.monotonic() - t0:.0f} s", flush=True)
    return dist / "tramontane" / "tramontane"


def run(exe: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="tramontane-smoke-") as home:
        env = dict(os.environ, TRAMONTANE_HOME=home)
        env.pop("TRAMONTANE_PLUGINS", None)
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def smoke(exe: Path) -> list[str]:
    """The failures, as lines for the user; empty when the build works."""
    failures = []
    version = run(exe, "--version")
    print(f"--version: {version.stdout.strip() or version.stderr.strip()}")
    if version.returncode != 0 or not version.stdout.startswith("tramontane "):
        failures.append(f"--version failed ({version.returncode}): {version.stderr[-500:]}")
    doctor = run(exe, "doctor", "--json")
    try:
        report = json.loads(doctor.stdout)
        print(f"doctor: exit {doctor.returncode}, smoke inference: {report.get('smoke')}")
        if doctor.returncode != 0:
            failures.append(f"doctor exited {doctor.returncode}: {doctor.stderr[-500:]}")
    except json.JSONDecodeError:
        failures.append(f"doctor --json printed no JSON ({doctor.returncode}): "
                        f"{doctor.stdout[-300:]} {doctor.stderr[-500:]}")
    chat = run(exe, "chat", "--max-tokens", "24", "--temperature", "0", "Say hello in French.")
    print(f"chat reply: {chat.stdout.strip()!r}")
    if chat.returncode != 0 or not chat.stdout.strip():
        failures.append(f"chat failed ({chat.returncode}): {chat.stderr[-500:]}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    parser.add_argument("--skip-build", action="store_true", help="smoke-test an existing build")
    args = parser.parse_args()
    exe = args.dist / "tramontane" / "tramontane"
    if not args.skip_build:
        exe = build(args.dist.resolve(), args.work.resolve())
    failures = smoke(exe)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if not failures:
        size = sum(f.stat().st_size for f in exe.parent.rglob("*") if f.is_file())
        print(f"ok: {exe} ({size / 2**20:.0f} MiB in the folder)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
