"""How fast a model will run on this machine, predicted before anything is downloaded or loaded.

Decode is bandwidth-bound: each new token reads every weight once (for a mixture of experts,
the shared weights and `used/count` of the expert weights; an untied embedding is one row) and
the KV cache so far. So
    seconds per token = bytes read / (bandwidth x efficiency) + layers x per-layer cost,
where the per-layer cost (graph building, thread sync) is what dominates a 135M model. Prompt
evaluation is compute-bound: 2 FLOPs per weight multiplied (no output layer but for the last
token) plus attention's products, and a fixed cost per layer and head (softmax, masks, copies;
measured here it does not grow with the context up to 2k tokens, and it is why Gemma 3's four
heads read a prompt faster than SmolLM2's nine), so
    seconds per prompt token = FLOPs / the rate llama.cpp reaches here + layers x heads x cost.

`MachineSpeed` holds this machine's figures: the read bandwidth of a threaded sum over large
buffers (a third of a second), and the llama.cpp factors calibrated with the three starter
models by `tramontane doctor` (a least-squares fit of each rate and fixed cost).
They are cached in the data folder; until calibrated, factors calibrated on a 2-core AVX2 VM
are used, and every prediction says it is uncalibrated. A GPU's bandwidth comes from its memory
bus (NVML) and its factors are defaults, not calibrated.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.models.catalog import Arch
from app.models.fit import expert_bytes as estimated_expert_bytes
from app.models.fit import kv_bytes_per_token
from app.models.gguf_file import GGUFHeader, arch_of
from app.models.hardware import Hardware

CACHE_FILE = "machine.json"
# Factors calibrated on a 2-core AVX2 VM with the SmolLM2 and Qwen2.5-Coder starters; a
# calibration on the user's own machine replaces them.
DEFAULT_EFFICIENCY = 0.85
DEFAULT_LAYER_S = 280e-6
DEFAULT_FLOPS_PER_CORE = 175e9
DEFAULT_HEAD_S = 13e-6
TIED_SHARE = 0.12  # a catalog model whose embedding is this share of its weights ties it
CALIBRATION_FILL = 512  # tokens in the context while the calibration decodes
# llama.cpp's sampler walks every vocabulary entry for each decoded token on one core (15 ns
# an entry here): 4 ms a token for Gemma 3's 262k vocabulary, a quarter of its decode time.
SAMPLER_S_PER_VOCAB = 15e-9
GPU_EFFICIENCY = 0.6
GPU_LAYER_S = 15e-6


@dataclass(frozen=True)
class MachineSpeed:
    """This machine's figures for the speed prediction."""

    bandwidth: float  # bytes/s that threads reading large buffers reach in RAM
    efficiency: float = DEFAULT_EFFICIENCY  # the share of it llama.cpp's decode reaches
    layer_s: float = DEFAULT_LAYER_S  # fixed cost per layer per decoded token
    prompt_flops: float = 0.0  # FLOP/s of llama.cpp's prompt evaluation on the CPU
    head_s: float = DEFAULT_HEAD_S  # prompt: fixed cost per layer and head, per token
    calibrated_with: str = ""  # the starters used; "" = default factors
    measured_at: float = 0.0
    cpu: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_calibrated(self) -> bool:
        return bool(self.calibrated_with)


@dataclass(frozen=True)
class ModelShape:
    """What the prediction needs of a model: its weights and how much of them a token reads."""

    weight_bytes: int
    parameters: float  # total weights, in elements
    layers: int
    kv_bytes_per_token: float
    expert_bytes: int = 0
    experts: int = 0
    experts_used: int = 0
    attention_width: int = 0  # heads x head_dim, for attention FLOPs
    heads: int = 0
    lookup_bytes: float = 0.0  # an untied token embedding: one row read per token, not all
    embedding_parameters: float = 0.0  # vocab x embedding
    tied: bool = True  # the output layer is the embedding matrix
    vocab: int = 0

    @property
    def active_share(self) -> float:
        """The part of the expert weights one token reads."""
        return self.experts_used / self.experts if self.experts else 1.0

    @property
    def bytes_per_token(self) -> float:
        """Bytes a decoded token reads: all weights but the unused experts and an untied
        embedding (the output layer reads the whole vocabulary matrix once)."""
        return self.weight_bytes - self.expert_bytes * (1 - self.active_share) - self.lookup_bytes

    @property
    def read_parameters(self) -> float:
        """Weights a token goes through: all but the experts its router did not pick."""
        share = self.expert_bytes / self.weight_bytes if self.weight_bytes else 0.0
        return self.parameters * (1 - share * (1 - self.active_share))

    def moe_words(self) -> str:
        """"47 B in memory, ~13 B read per token: the speed of a 13 B model"; "" if dense."""
        if not self.experts:
            return ""
        total, read = self.parameters / 1e9, self.read_parameters / 1e9
        return (f"{total:.0f} B in memory, ~{read:.0f} B read per token "
                f"({self.experts_used} of {self.experts} experts): the speed of a "
                f"{read:.0f} B model, the memory of a {total:.0f} B one")

    @property
    def active_parameters(self) -> float:
        """Weights a prompt token multiplies by: the output layer runs for the last token
        only, and the embedding is a lookup."""
        share = self.expert_bytes / self.weight_bytes if self.weight_bytes else 0.0
        matmul = self.parameters - self.embedding_parameters * (1 if self.tied else 2)
        return max(matmul, self.parameters * 0.1) * (1 - share * (1 - self.active_share))


@dataclass(frozen=True)
class SpeedPrediction:
    decode_tps: float
    prompt_tps: float
    device: str  # "cpu", "gpu", "gpu+cpu"
    calibrated: bool

    def prompt_seconds(self, tokens: int) -> float:
        return tokens / self.prompt_tps if self.prompt_tps else float("inf")

    def suggestion_seconds(self, tokens: int = 16, new_prompt_tokens: int = 8) -> float:
        """A warm code suggestion: a few new prompt tokens, then `tokens` decoded."""
        return self.prompt_seconds(new_prompt_tokens) + tokens / max(self.decode_tps, 1e-9)

    def words(self, prompt_tokens: int = 2048) -> str:
        note = "" if self.calibrated else " (uncalibrated)"
        return (f"~{_rate(self.decode_tps)} tok/s · {prompt_tokens // 1024}k-token prompt in "
                f"~{_duration(self.prompt_seconds(prompt_tokens))}{note}")

    def to_dict(self) -> dict[str, Any]:
        return {"decode_tps": round(self.decode_tps, 2), "prompt_tps": round(self.prompt_tps, 1),
                "device": self.device, "calibrated": self.calibrated,
                "prompt_2k_s": round(self.prompt_seconds(2048), 2),
                "suggestion_16_s": round(self.suggestion_seconds(), 3)}


def _rate(tps: float) -> str:
    return f"{tps:.1f}" if tps < 10 else f"{tps:.0f}"


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def shape_of(arch: Arch, weight_bytes: int, parameters: float,
             expert_bytes: int | None = None, embedding_bytes: int | None = None,
             tied: bool | None = None) -> ModelShape:
    """A model's shape from its architecture figures. From a GGUF header, the expert and
    embedding bytes and whether the output is tied are known; for a catalog entry they are
    estimated at the file's bytes per weight (experts: 3 feed-forward matrices a layer)."""
    per_weight = weight_bytes / parameters if parameters else 0.0
    embedding_parameters = float(arch.vocab * arch.embedding)
    if expert_bytes is None:
        expert_bytes = estimated_expert_bytes(arch, weight_bytes, parameters)
    if tied is None:
        tied = parameters > 0 and embedding_parameters / parameters >= TIED_SHARE
    if embedding_bytes is None:
        embedding_bytes = int(embedding_parameters * per_weight)
    return ModelShape(weight_bytes=weight_bytes, parameters=parameters, layers=arch.layers,
                      kv_bytes_per_token=kv_bytes_per_token(arch),
                      expert_bytes=min(expert_bytes, weight_bytes), experts=arch.experts,
                      experts_used=arch.experts_used, attention_width=arch.heads * arch.head_dim,
                      heads=arch.heads,
                      lookup_bytes=0.0 if tied else float(embedding_bytes),
                      embedding_parameters=embedding_parameters, tied=tied, vocab=arch.vocab)


def shape_of_header(head: GGUFHeader) -> ModelShape:
    """A local file's shape, from its header's tensor table."""
    return shape_of(arch_of(head), head.tensor_bytes, head.parameters, head.expert_bytes,
                    head.embedding_bytes, tied=head.output_bytes == 0)


def flops_per_token(shape: ModelShape, context_fill: int = 1024) -> float:
    """Matrix products (2 per weight) plus attention over `context_fill` earlier tokens."""
    return 2 * shape.active_parameters + 4 * shape.layers * context_fill * shape.attention_width


def heads(shape: ModelShape) -> float:
    """The attention heads a prompt token goes through: layers x heads."""
    return float(shape.layers * shape.heads)


def predict(shape: ModelShape, hw: Hardware, speed: MachineSpeed, gpu_layers: int = 0,
            context_fill: int = 1024, cpu_expert_layers: int = 0) -> SpeedPrediction:
    """Decode and prompt tokens/s with `gpu_layers` of the model's layers on the GPU (and, with
    all of them there, the experts of `cpu_expert_layers` layers in RAM)."""
    per_token = shape.bytes_per_token + shape.kv_bytes_per_token * context_fill
    flops = flops_per_token(shape, context_fill)
    cpu_flops = speed.prompt_flops or DEFAULT_FLOPS_PER_CORE * max(1, hw.cores)
    cpu_prompt_s = flops / cpu_flops + heads(shape) * speed.head_s
    sampler_s = shape.vocab * SAMPLER_S_PER_VOCAB
    cpu_decode_s = per_token / (speed.bandwidth * speed.efficiency) + \
        shape.layers * speed.layer_s + sampler_s
    gpu = hw.gpu
    share = min(1.0, gpu_layers / shape.layers) if gpu is not None and shape.layers else 0.0
    if not (share and gpu is not None and gpu.bandwidth):
        return SpeedPrediction(1 / cpu_decode_s, 1 / cpu_prompt_s, "cpu", speed.is_calibrated)
    gpu_prompt_s = flops / (gpu.flops or cpu_flops * 20)
    if cpu_expert_layers:
        # the picked experts of the RAM layers are read by the CPU; everything else on the GPU
        in_ram = shape.expert_bytes * shape.active_share * cpu_expert_layers / shape.layers
        decode_s = in_ram / (speed.bandwidth * speed.efficiency) + \
            (per_token - in_ram) / (gpu.bandwidth * GPU_EFFICIENCY) + \
            shape.layers * GPU_LAYER_S + sampler_s
        ram_share = in_ram / per_token if per_token else 0.0
        prompt_s = (1 - ram_share) * gpu_prompt_s + ram_share * cpu_prompt_s
        return SpeedPrediction(1 / decode_s, 1 / prompt_s, "gpu+cpu", False)
    gpu_decode_s = per_token / (gpu.bandwidth * GPU_EFFICIENCY) + \
        shape.layers * GPU_LAYER_S + sampler_s
    decode_s = share * gpu_decode_s + (1 - share) * cpu_decode_s
    prompt_s = share * gpu_prompt_s + (1 - share) * cpu_prompt_s
    return SpeedPrediction(1 / decode_s, 1 / prompt_s, "gpu" if share >= 1 else "gpu+cpu", False)


# -- measuring ---------------------------------------------------------------------------------

BANDWIDTH_TRIES = 3


def measure_bandwidth(threads: int, seconds: float = 0.3, block: int = 128 * 2**20) -> float:
    """Bytes/s that `threads` threads reading large buffers reach (a sum streams every byte
    once, as a decoded token streams the weights). Buffers are filled before the clock starts."""
    import numpy as np

    buffers = [np.ones(block // 8, dtype=np.float64) for _ in range(threads)]
    moved = [0] * threads
    spans = [0.0] * threads
    ready = threading.Barrier(threads + 1)

    def read(i: int) -> None:
        ready.wait()
        t0 = time.perf_counter()
        while spans[i] < seconds:
            buffers[i].sum()  # releases the GIL: the threads read in parallel
            moved[i] += block
            spans[i] = time.perf_counter() - t0

    pool = [threading.Thread(target=read, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    for t in pool:
        t.join()
    return sum(moved[i] / spans[i] for i in range(threads) if spans[i] > 0)


def load_cached(data_dir: Path, hw: Hardware) -> MachineSpeed | None:
    """The cached figures, if they were taken on this CPU."""
    try:
        raw = json.loads((data_dir / CACHE_FILE).read_text(encoding="utf-8"))
        found = MachineSpeed(**{k: raw[k] for k in MachineSpeed.__dataclass_fields__ if k in raw})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if found.cpu != hw.cpu_name or not found.bandwidth > 0 or not found.efficiency > 0:
        return None
    return found


def save(data_dir: Path, speed: MachineSpeed) -> None:
    """Write the figures (atomically); a read-only data folder just means no cache."""
    from app.atomic import atomic_write

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(data_dir / CACHE_FILE, json.dumps(speed.to_dict(), indent=2))
    except OSError:
        pass


def machine_speed(data_dir: Path, hw: Hardware, remeasure: bool = False,
                  save_it: bool = True) -> MachineSpeed:
    """This machine's figures: cached, or the bandwidth measured now (the best of
    BANDWIDTH_TRIES: a busy moment slows one) with default factors."""
    cached = None if remeasure else load_cached(data_dir, hw)
    if cached is not None:
        return cached
    bandwidth = max(measure_bandwidth(max(1, hw.threads)) for _ in range(BANDWIDTH_TRIES))
    found = MachineSpeed(bandwidth=bandwidth,
                         prompt_flops=DEFAULT_FLOPS_PER_CORE * max(1, hw.cores),
                         measured_at=time.time(), cpu=hw.cpu_name)
    if save_it:
        save(data_dir, found)
    return found


def _fit_two(points: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """Fit s = x / R + n x c to (x, n, s) points by least squares on the relative error (each
    model counts alike, whatever its speed); R and c, or None when they are not both > 0."""
    if len(points) < 2:
        return None
    # rows (x/s, n/s) . (1/R, c) = 1, solved through the 2x2 normal equations
    sxx = sum((x / t) ** 2 for x, _, t in points)
    snn = sum((n / t) ** 2 for _, n, t in points)
    sxn = sum((x / t) * (n / t) for x, n, t in points)
    sx = sum(x / t for x, _, t in points)
    sn = sum(n / t for _, n, t in points)
    det = sxx * snn - sxn * sxn
    if not det:
        return None
    inv_rate, c = (sx * snn - sn * sxn) / det, (sn * sxx - sx * sxn) / det
    if inv_rate <= 0 or c < 0:
        return None
    return 1 / inv_rate, c


def calibrated(speed: MachineSpeed, runs: list[tuple[ModelShape, float, float, int]],
               label: str) -> MachineSpeed:
    """New factors from measured runs: (shape, decode tok/s, prompt tok/s, prompt tokens).
    Seconds per token is linear in bytes and layers (decode), FLOPs and heads (prompt): models
    of different sizes give each rate and fixed cost (least squares over all of them); one
    model gives the rates, with the fixed costs kept."""
    if not runs:
        return speed
    decode = [(shape.bytes_per_token + shape.kv_bytes_per_token * CALIBRATION_FILL,
               float(shape.layers), 1 / dtps - shape.vocab * SAMPLER_S_PER_VOCAB)
              for shape, dtps, _, _ in runs if dtps > 0]
    prompt = [(flops_per_token(shape, fill // 2), heads(shape), 1 / ptps)
              for shape, _, ptps, fill in runs if ptps > 0]
    efficiency, layer_s = speed.efficiency, speed.layer_s
    prompt_flops, head_s = speed.prompt_flops, speed.head_s
    solved = _fit_two(decode)
    if solved is not None:
        efficiency, layer_s = solved[0] / speed.bandwidth, solved[1]
    elif decode:
        b, layers, s = decode[0]
        if s > layers * layer_s:
            efficiency = b / (s - layers * layer_s) / speed.bandwidth
    solved = _fit_two(prompt)
    if solved is not None:
        prompt_flops, head_s = solved
    elif prompt:
        f, n_heads, s = prompt[0]
        if s > n_heads * head_s:
            prompt_flops = f / (s - n_heads * head_s)
    return replace(speed, efficiency=efficiency, layer_s=layer_s, prompt_flops=prompt_flops,
                   head_s=head_s, calibrated_with=label, measured_at=time.time())
