"""What this machine has: RAM, GPU memory (NVIDIA, AMD, Apple unified), CPU cores and features.

Every probe is optional: a missing tool, driver or file means "no such GPU", never a crash.
The probes take their inputs as arguments so tests can replay recorded outputs.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "neon", "asimd")
GiB = 2**30


@dataclass(frozen=True)
class Gpu:
    name: str
    vendor: str  # nvidia | amd | apple
    total: int
    free: int
    unified: bool = False  # Apple: shares the RAM
    bandwidth: float = 0.0  # bytes/s of its memory bus (NVML); 0 = unknown
    flops: float = 0.0  # FP32 FLOP/s (cores x clock x 2); 0 = unknown


@dataclass(frozen=True)
class Hardware:
    ram_total: int
    ram_available: int
    cpu_name: str
    cores: int
    threads: int
    features: list[str] = field(default_factory=list)
    gpus: list[Gpu] = field(default_factory=list)

    @property
    def gpu(self) -> Gpu | None:
        return max(self.gpus, key=lambda g: g.free, default=None)

    def summary(self) -> str:
        gpu = self.gpu
        text = f"{self.ram_total / GiB:.1f} GiB RAM ({self.ram_available / GiB:.1f} free), " \
               f"{self.threads} CPU threads"
        if gpu:
            text += f", {gpu.name} {gpu.total / GiB:.1f} GiB ({gpu.free / GiB:.1f} free)"
        else:
            text += ", no GPU"
        return text


Run = Callable[[list[str]], str | None]


def run_tool(cmd: list[str]) -> str | None:
    """A tool's output, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def nvidia_pynvml() -> list[Gpu] | None:
    """NVIDIA GPUs through NVML (nvidia-ml-py); None when NVML is not there."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver, no library
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(Gpu(name, "nvidia", int(mem.total), int(mem.free),
                            bandwidth=_nvml_bandwidth(pynvml, handle),
                            flops=_nvml_flops(pynvml, handle)))
        return gpus
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _nvml_bandwidth(pynvml: Any, handle: Any) -> float:
    """Bus width (bits) / 8 x memory clock x 2 (double data rate)."""
    try:
        bus = int(pynvml.nvmlDeviceGetMemoryBusWidth(handle))
        clock_mhz = int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))
    except Exception:  # NVMLError_NotSupported and friends
        return 0.0
    return bus / 8 * clock_mhz * 1e6 * 2


def _nvml_flops(pynvml: Any, handle: Any) -> float:
    try:
        cores = int(pynvml.nvmlDeviceGetNumGpuCores(handle))
        clock_mhz = int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM))
    except Exception:
        return 0.0
    return cores * clock_mhz * 1e6 * 2


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """`nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits`."""
    gpus = []
    for line in output.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(Gpu(parts[0], "nvidia", int(parts[1]) * 2**20, int(parts[2]) * 2**20))
    return gpus


def nvidia(run: Run = run_tool) -> list[Gpu]:
    found = nvidia_pynvml()
    if found:
        return found
    out = run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free",
               "--format=csv,noheader,nounits"])
    return parse_nvidia_smi(out) if out else []


def amd(sysfs: Path = Path("/sys/class/drm")) -> list[Gpu]:
    """AMD GPUs from amdgpu's sysfs files (bytes)."""
    gpus = []
    for total_file in sorted(sysfs.glob("card*/device/mem_info_vram_total")):
        device = total_file.parent
        try:
            total = int(total_file.read_text().strip())
            used = int((device / "mem_info_vram_used").read_text().strip())
        except (OSError, ValueError):
            continue
        name = "AMD GPU"
        product = device / "product_name"
        if product.is_file():
            name = product.read_text().strip() or name
        gpus.append(Gpu(name, "amd", total, max(0, total - used)))
    return gpus


def apple(run: Run = run_tool, system: str | None = None) -> list[Gpu]:
    """Apple silicon: the GPU shares RAM; Metal lets it use about three quarters of it."""
    if (system or platform.system()) != "Darwin":
        return []
    out = run(["sysctl", "-n", "hw.memsize"])
    if not out or not out.strip().isdigit():
        return []
    total = int(out.strip())
    usable = total * 3 // 4
    free = min(usable, psutil.virtual_memory().available)
    return [Gpu("Apple GPU (unified memory)", "apple", usable, free, unified=True)]


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    flags: set[str] = set()
    name = platform.processor() or platform.machine()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key.strip() == "model name":
                name = value.strip()
    return name, [f for f in _FEATURES if f in flags]


def probe() -> Hardware:
    mem = psutil.virtual_memory()
    name, features = cpu()
    return Hardware(
        ram_total=int(mem.total), ram_available=int(mem.available), cpu_name=name,
        cores=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        threads=psutil.cpu_count() or 1, features=features,
        gpus=nvidia() + amd() + apple(),
    )
