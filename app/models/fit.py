"""Will it fit? Memory a model needs (weights, KV cache, compute buffers, fixed overhead),
split between GPU layers and the CPU, and the verdict for this machine.

The sizes follow llama.cpp's own allocations (checked against its log of buffer sizes):
- weights: the tensor bytes of the file (from the GGUF header, or the catalog's file size);
- KV cache: context x layers x 2 x kv_heads x head_dim x bytes per element (f16: 2, q8_0:
  34/32). llama-cpp-python allocates sliding-window layers at full size (swa_full); a backend
  that keeps only the window (Ollama, llama-server) pass `swa_full=False`;
- compute buffers: with a prompt of P tokens, the attention scores of one micro-batch
  (chunk x P x (heads + 1) floats, the worker's 128-token chunks) and its activations; the
  logits of one token;
- fixed: the worker process with Python, numpy and llama.cpp loaded, and the vocabulary
  llama.cpp keeps in memory (about 226 bytes a token).
- repacked weights: on a CPU with AVX2 or NEON, llama.cpp copies Q4_0, Q4_K and IQ4_NL layer
  weights into an interleaved layout at load, while the mapped file stays resident: those
  bytes count twice for the layers on the CPU (597 MiB more for the Qwen 1.5B starter).
The two fixed constants were measured on the starter models (see bench/fit_accuracy.py).

A mixture of experts (Mixtral) keeps every expert in memory, but a token reads only the experts
its router picks. Where VRAM holds attention and the shared weights but not every expert, the
verdict "moe" keeps the experts of some layers in RAM (llama.cpp's `--n-cpu-moe N`, or
`-ot exps=CPU` for all of them): each token then reads only `used/count` of those experts
from RAM, which beats moving whole layers off the GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.models.catalog import Arch
from app.models.hardware import Hardware

MiB = 2**20
GiB = 2**30
PROCESS_BYTES = 42 * MiB  # Python + numpy + llama_cpp imported, no model
RUNTIME_BYTES = 45 * MiB  # llama.cpp's threads, code pages, graph and scheduler state
VOCAB_BYTES_PER_TOKEN = 226
N_UBATCH = 512
# The llama.cpp worker evaluates a prompt in chunks of this many tokens (engine/llama/tokens.py
# PROMPT_CHUNK, so that a cancel is answered within one chunk): llama.cpp reserves compute
# buffers for a micro-batch of N_UBATCH, but only a chunk's share of them is ever touched. With
# a full 8k context this is 130 MB of attention scores less for SmolLM2 (measured with
# bench/fit_accuracy.py --full: the estimate was 22% over, now within 7%).
PROMPT_CHUNK_TOKENS = 128
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
HEADROOM = 0.90  # leave a tenth of RAM / VRAM for the system and other programs
GPU_RESERVE = 300 * MiB  # CUDA / Metal context


@dataclass(frozen=True)
class Estimate:
    """Bytes a model needs, and where they go."""

    weights: int
    kv_cache: int
    compute: int
    overhead: int
    gpu_layers: int
    layers: int
    gpu_bytes: int
    cpu_bytes: int
    context: int
    cpu_expert_layers: int = 0  # layers whose experts stay in RAM (a "moe" placement)
    # The mapped file pages a repacked copy replaces: resident (so in `total`) until memory is
    # short, then dropped by the kernel, as nothing reads them again. A verdict leaves them out.
    reclaimable: int = 0
    draft: int = 0  # of the total, a draft model's own (speculative decoding), in the same worker

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total": self.total}


@dataclass(frozen=True)
class FitVerdict:
    """`kind`: "gpu" (all in VRAM), "partial" (N of M layers on the GPU), "cpu", or "no"."""

    kind: str
    estimate: Estimate
    ram_limit: int
    vram_limit: int

    @property
    def fits(self) -> bool:
        return self.kind != "no"

    def words(self) -> str:
        e = self.estimate
        return {
            "gpu": "fits in VRAM",
            "partial": f"fits with {e.gpu_layers} of {e.layers} layers on the GPU",
            "cpu": "fits in RAM",
            "no": "does not fit",
            "moe": f"fits with attention and shared weights of all {e.layers} layers on the GPU "
                   f"and the experts of {e.cpu_expert_layers} layers in RAM "
                   f"(llama.cpp --n-cpu-moe {e.cpu_expert_layers})",
        }[self.kind]

    def why_not(self) -> str:
        """For a model that does not fit: what it needs against what this machine gives."""
        if self.fits:
            return ""
        e = self.estimate
        fixed = e.compute + e.overhead - e.reclaimable
        text = (f"needs {(e.total - e.reclaimable) / GiB:.1f} GiB (weights "
                f"{e.weights / GiB:.1f}, KV cache {e.kv_cache / GiB:.1f}, compute and fixed "
                f"{fixed / GiB:.1f}) but RAM gives {self.ram_limit / GiB:.1f} GiB")
        if self.vram_limit:
            text += f" and VRAM {self.vram_limit / GiB:.1f} GiB"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.kind, "words": self.words(), "why_not": self.why_not(),
                "ram_limit": self.ram_limit, "vram_limit": self.vram_limit,
                **self.estimate.to_dict()}


def kv_bytes_per_token(arch: Arch, cache_type: str = "f16", context: int | None = None,
                       swa_full: bool = True) -> float:
    per_layer = 2 * arch.kv_heads * arch.head_dim * KV_BYTES[cache_type]
    if swa_full or not arch.sliding_window or context is None:
        return per_layer * arch.layers
    window_share = min(1.0, (arch.sliding_window + N_UBATCH) / max(1, context))
    return per_layer * ((arch.layers - arch.swa_layers) + arch.swa_layers * window_share)


def compute_bytes(arch: Arch, prompt_tokens: int) -> int:
    """Compute buffers touched by a prompt of `prompt_tokens` (one chunk at a time)."""
    ub = min(PROMPT_CHUNK_TOKENS, max(1, prompt_tokens))
    scores = ub * prompt_tokens * (arch.heads + 1) * 4
    activations = ub * (arch.embedding * 6 + arch.feed_forward * 3) * 4
    logits = arch.vocab * 4
    return int(scores + activations + logits)


# The share of a catalog quant's bytes that is repacked (from its tensor types), for a file
# whose header is not at hand: Q4_K_M keeps attn_v and half of ffn_down at Q6_K.
REPACK_SHARE = {"Q4_0": 0.93, "Q4_K_S": 0.93, "Q4_K_M": 0.56, "IQ4_NL": 0.93, "IQ4_XS": 0.0}


def expert_bytes(arch: Arch, weights: int, parameters: float) -> int:
    """Bytes of the expert weights (3 feed-forward matrices per layer and expert) at the file's
    bytes per weight, for a catalog entry; a GGUF header counts them exactly."""
    if not arch.experts or parameters <= 0:
        return 0
    share = arch.experts * arch.layers * 3 * arch.embedding * arch.feed_forward / parameters
    return int(weights * min(1.0, share))


def repacked(hw: Hardware, repack_bytes: int) -> int:
    """The repack copy this CPU makes (AVX2 on x86, NEON on Arm); 0 elsewhere."""
    return repack_bytes if {"avx2", "neon", "asimd"} & set(hw.features) else 0


def estimate(arch: Arch, weights: int, context: int, gpu_layers: int = 0,
             cache_type: str = "f16", prompt_tokens: int | None = None,
             swa_full: bool = True, repack: int = 0, experts: int = 0,
             cpu_expert_layers: int = 0) -> Estimate:
    """What a model needs at `context`, with `gpu_layers` of its layers offloaded, and with all
    layers offloaded, the experts (`experts` bytes in all) of `cpu_expert_layers` kept in RAM.

    `prompt_tokens` is how much of the context a prompt fills; a verdict assumes all of it.
    """
    gpu_layers = max(0, min(gpu_layers, arch.layers))
    kv = int(kv_bytes_per_token(arch, cache_type, context, swa_full) * context)
    compute = compute_bytes(arch, prompt_tokens if prompt_tokens is not None else context)
    overhead = PROCESS_BYTES + RUNTIME_BYTES + arch.vocab * VOCAB_BYTES_PER_TOKEN
    share = gpu_layers / arch.layers if arch.layers else 0.0
    # embeddings and the output layer are about 2 x vocab x embedding of the weights
    io_weights = min(weights // 3, 2 * arch.vocab * arch.embedding * weights // max(1, weights))
    layer_weights = weights - io_weights
    gpu = 0
    if gpu_layers:
        gpu = int(layer_weights * share + kv * share + compute + GPU_RESERVE)
        if gpu_layers == arch.layers:
            gpu += io_weights
    cpu_expert_layers = max(0, min(cpu_expert_layers, arch.layers)) if gpu_layers else 0
    in_ram = experts * cpu_expert_layers // arch.layers if arch.layers else 0
    gpu -= in_ram
    # the CPU layers' repacked copy, and the RAM experts'
    copy = int(repack * (1 - share)) + (int(repack * in_ram / weights) if weights else 0)
    overhead += copy
    cpu = weights + kv + compute + overhead - (gpu - GPU_RESERVE if gpu else 0)
    return Estimate(weights, kv, compute, overhead, gpu_layers, arch.layers, gpu, cpu, context,
                    cpu_expert_layers, copy)


def verdict(arch: Arch, weights: int, context: int, hw: Hardware, gpu_layers: int | None = None,
            cache_type: str = "f16", swa_full: bool = True, repack: int = 0,
            experts: int = 0) -> FitVerdict:
    """The best placement on this machine: all on the GPU; for a mixture of experts (`experts`:
    its expert bytes), all but some layers' experts; some layers; or the CPU alone."""
    ram_limit = int(hw.ram_total * HEADROOM)
    gpu = hw.gpu
    vram_limit = int(gpu.free * HEADROOM) if gpu else 0
    if gpu is not None and gpu.unified:
        ram_limit = vram_limit  # Apple: one pool
    candidates = [gpu_layers] if gpu_layers is not None else (
        list(range(arch.layers, -1, -1)) if gpu else [0])
    for layers in candidates:
        est = estimate(arch, weights, context, layers, cache_type, swa_full=swa_full,
                       repack=repacked(hw, repack))
        if layers and (gpu is None or est.gpu_bytes > vram_limit):
            if layers == arch.layers and experts and gpu is not None and not gpu.unified:
                split = _experts_in_ram(arch, weights, context, hw, cache_type, swa_full,
                                        repack, experts, ram_limit, vram_limit)
                if split is not None:
                    return split
            continue
        if gpu is not None and gpu.unified:
            if est.total - est.reclaimable <= ram_limit:
                return FitVerdict("gpu" if layers == arch.layers else "cpu", est, ram_limit,
                                  vram_limit)
            continue
        if est.cpu_bytes - est.reclaimable <= ram_limit:
            kind = "gpu" if layers == arch.layers else ("partial" if layers else "cpu")
            return FitVerdict(kind, est, ram_limit, vram_limit)
    est = estimate(arch, weights, context, candidates[-1] if candidates else 0, cache_type,
                   swa_full=swa_full, repack=repacked(hw, repack))
    return FitVerdict("no", est, ram_limit, vram_limit)


def with_draft(target: FitVerdict, arch: Arch, weights: int, repack: int = 0,
               hw: Hardware | None = None, prompt_tokens: int | None = None) -> FitVerdict:
    """`target`'s verdict with a draft model loaded beside it in the same worker, at the same
    context: its weights, KV cache and compute buffers count, the process itself once. The
    draft goes to the GPU when the whole target does."""
    t = target.estimate
    on_gpu = target.kind == "gpu"
    d = estimate(arch, weights, t.context, arch.layers if on_gpu else 0,
                 prompt_tokens=prompt_tokens,
                 repack=repacked(hw, repack) if hw is not None and not on_gpu else 0)
    gpu = t.gpu_bytes + (d.gpu_bytes - GPU_RESERVE if on_gpu else 0)
    cpu = t.cpu_bytes + d.cpu_bytes - PROCESS_BYTES
    both = Estimate(t.weights + d.weights, t.kv_cache + d.kv_cache, t.compute + d.compute,
                    t.overhead + d.overhead - PROCESS_BYTES, t.gpu_layers, t.layers, gpu, cpu,
                    t.context, t.cpu_expert_layers, t.reclaimable + d.reclaimable,
                    draft=d.total - PROCESS_BYTES)
    fits = target.fits and cpu - both.reclaimable <= target.ram_limit and \
        (not on_gpu or gpu <= target.vram_limit)
    return FitVerdict(target.kind if fits else "no", both, target.ram_limit, target.vram_limit)


def _experts_in_ram(arch: Arch, weights: int, context: int, hw: Hardware, cache_type: str,
                    swa_full: bool, repack: int, experts: int, ram_limit: int,
                    vram_limit: int) -> FitVerdict | None:
    """The fewest layers whose experts must stay in RAM for the rest to fit in VRAM."""
    for n in range(1, arch.layers + 1):
        est = estimate(arch, weights, context, arch.layers, cache_type, swa_full=swa_full,
                       repack=repacked(hw, repack), experts=experts, cpu_expert_layers=n)
        if est.gpu_bytes <= vram_limit:
            fits = est.cpu_bytes - est.reclaimable <= ram_limit
            return FitVerdict("moe", est, ram_limit, vram_limit) if fits else None
    return None


def largest_context(arch: Arch, weights: int, hw: Hardware, max_context: int,
                    cache_type: str = "f16", repack: int = 0) -> int:
    """The largest context of the plan from 2k (each doubling, then the model's own) that
    still fits; 0 when none does."""
    steps = context_plan(arch, weights, hw, max_context, cache_type, repack, start=2048)
    return max((s.context for s in steps if s.kind != "no" and s.context >= 2048), default=0)


@dataclass(frozen=True)
class ContextStep:
    """One context length of a plan: the KV cache it takes and whether all of it fits."""

    context: int
    kv_cache: int
    total: int
    kind: str  # the verdict at this context

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def context_plan(arch: Arch, weights: int, hw: Hardware, max_context: int,
                 cache_type: str = "f16", repack: int = 0, experts: int = 0,
                 start: int = 4096) -> list[ContextStep]:
    """Each doubling of the context from `start` up to the model's trained context (and that
    context itself): the KV cache is KV bytes per token x tokens, so each doubling adds as
    much KV as everything before it."""
    steps = []
    ctx = min(start, max_context)
    while True:
        v = verdict(arch, weights, ctx, hw, cache_type=cache_type, repack=repack,
                    experts=experts)
        steps.append(ContextStep(ctx, v.estimate.kv_cache, v.estimate.total - v.estimate.reclaimable,
                                 v.kind))
        if ctx >= max_context:
            return steps
        ctx = min(ctx * 2, max_context)
