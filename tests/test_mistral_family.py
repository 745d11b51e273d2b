"""Mistral's open family in the catalog: figures worked by hand for each new entry, the
mixture-of-experts placement and speed, context planning, and a tiny MoE GGUF written here.

Hand-worked figures (f16 KV cache: 2 (K and V) x KV heads x head size x 2 bytes x layers):
| model | KV per token | Q4_K_M weights | experts (share of weights) |
| --- | --- | --- | --- |
| Mixtral 8x7B | 2x8x128x2x32 = 128 KiB | 26.44 GB = 24.62 GiB | 8x32x3x4096x14336 = 45.1 B of 46.7 B |
| Mixtral 8x22B | 2x8x128x2x56 = 224 KiB | 85.58 GB = 79.70 GiB | 8x56x3x6144x16384 = 135.3 B of 140.6 B |
| Mistral NeMo 12B | 2x8x128x2x40 = 160 KiB | 7.48 GB = 6.97 GiB | dense |
| Mistral Small 24B | 2x8x128x2x40 = 160 KiB | 14.33 GB = 13.35 GiB | dense |

At 8k tokens a verdict needs weights + KV (8192 x KV per token) + compute + fixed, against 90 %
of RAM (and of VRAM). Compute, for the worker's 128-token chunks: scores 128 x 8192 x 33 heads x
4 B = 0.129 GiB, activations 128 x (6 x 4096 + 3 x 14336) x 4 B = 0.032 GiB, so 0.16 GiB.
Mixtral 8x7B Q4_K_M: 24.62 + 1.00 + 0.16 + 0.09 = 25.87 GiB, so it fits none of 16 or 24 GiB
(limits 14.4, 21.6) and fits 64 GiB. With a 16 GB GPU (limit 13.41 GiB) the layers need
24.62 + 1.00 KV + 0.16 compute + 0.29 CUDA = 26.07 GiB of VRAM; each layer's experts are
23.78 / 32 = 0.743 GiB, so the experts of ceil((26.07 - 13.41) / 0.743) = 18 layers stay in RAM
(13.4 GiB, which a 16 GiB machine holds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.models import fit, speed
from app.models.catalog import load_catalog
from app.models.gguf_file import arch_of, read_header
from app.models.hardware import Gpu, Hardware
from app.session.context import AppContext
from app.session.models import ModelManager
from tests.helpers import RECORDED

GiB = 2**30
KiB = 1024
CATALOG = load_catalog()
NEW = ("mixtral-8x7b-instruct", "mixtral-8x22b-instruct", "mistral-nemo-12b-instruct",
       "mistral-small-24b-instruct")
GPU16 = Gpu("RTX 4080", "nvidia", 16 * 10**9, 16 * 10**9, bandwidth=716e9, flops=48e12)


def machine(ram_gib: int, gpu: bool) -> Hardware:
    return Hardware(ram_gib * GiB, ram_gib * GiB, "cpu", 8, 16, ["avx2"], [GPU16] if gpu else [])


def _verdict(mid: str, hw: Hardware, quant: str = "Q4_K_M", ctx: int = 8192) -> fit.FitVerdict:
    model = CATALOG[mid]
    q = model.quant(quant)
    assert model.arch is not None
    return fit.verdict(model.arch, q.size, ctx, hw,
                       repack=int(q.size * fit.REPACK_SHARE.get(q.name, 0.0)),
                       experts=fit.expert_bytes(model.arch, q.size, model.params_b * 1e9))


@pytest.mark.parametrize(("mid", "kv", "weights", "layers", "experts", "used", "context", "fmt"), [
    ("mixtral-8x7b-instruct", 128 * KiB, 26_440_000_000, 32, 8, 2, 32768, "mistral-v1"),
    ("mixtral-8x22b-instruct", 224 * KiB, 85_580_000_000, 56, 8, 2, 65536, "mistral-v3"),
    ("mistral-nemo-12b-instruct", 160 * KiB, 7_480_000_000, 40, 0, 0, 131072,
     "mistral-v3-tekken"),
    ("mistral-small-24b-instruct", 160 * KiB, 14_330_000_000, 40, 0, 0, 32768,
     "mistral-v7-tekken"),
])
def test_entries_by_hand(mid: str, kv: int, weights: int, layers: int, experts: int, used: int,
                         context: int, fmt: str) -> None:
    model = CATALOG[mid]
    assert model.arch is not None
    assert fit.kv_bytes_per_token(model.arch) == kv
    assert model.quant("Q4_K_M").size == weights
    assert (model.arch.layers, model.arch.experts, model.arch.experts_used) == (layers, experts,
                                                                                used)
    assert model.context_length == context and model.chat_format == fmt
    assert [q.name for q in model.quants][0] == "Q2_K" and model.quants[-1].name == "Q8_0"
    sizes = [q.size for q in model.quants]
    assert sizes == sorted(sizes)  # each quant a step up


@pytest.mark.parametrize(("mid", "expected"), [
    # 16 GiB, 16 GiB + GPU, 24 GiB, 24 GiB + GPU, 64 GiB, 64 GiB + GPU (Q4_K_M, 8k tokens)
    ("mixtral-8x7b-instruct", ["no", "moe", "no", "moe", "cpu", "moe"]),
    ("mixtral-8x22b-instruct", ["no", "no", "no", "no", "no", "no"]),  # 82 GiB in all
    ("mistral-nemo-12b-instruct", ["cpu", "gpu", "cpu", "gpu", "cpu", "gpu"]),  # 9.0 GiB
    # 15.5 GiB: over 16 GiB's 14.4 GiB; on the GPU 37 of 40 layers (13.4 GiB)
    ("mistral-small-24b-instruct", ["no", "partial", "cpu", "partial", "cpu", "partial"]),
])
def test_verdicts_on_six_machines(mid: str, expected: list[str]) -> None:
    kinds = [_verdict(mid, machine(ram, gpu)).kind for ram in (16, 24, 64)
             for gpu in (False, True)]
    assert kinds == expected


def test_mixtral_experts_split_by_hand() -> None:
    v = _verdict("mixtral-8x7b-instruct", machine(16, True))
    e = v.estimate
    assert v.kind == "moe" and e.gpu_layers == 32 and e.cpu_expert_layers == 18
    assert e.gpu_bytes <= 0.9 * 16 * 10**9
    assert e.cpu_bytes - e.reclaimable == pytest.approx(13.47 * GiB, rel=0.01)
    assert "experts of 18 layers in RAM" in v.words() and "--n-cpu-moe 18" in v.words()
    total = _verdict("mixtral-8x7b-instruct", machine(24, False))
    assert total.estimate.total - total.estimate.reclaimable == pytest.approx(25.87 * GiB,
                                                                             rel=0.01)
    assert "21.6 GiB" in total.why_not()


def test_speed_counts_only_the_active_experts() -> None:
    model = CATALOG["mixtral-8x7b-instruct"]
    q = model.quant("Q3_K_M")
    assert model.arch is not None
    shape = speed.shape_of(model.arch, q.size, model.params_b * 1e9)
    experts = q.size * (8 * 32 * 3 * 4096 * 14336) / 46.7e9
    embedding = q.size * 32000 * 4096 / 46.7e9  # untied: a token reads one row of it
    # a token reads the shared weights and 2 of 8 experts
    assert shape.bytes_per_token == pytest.approx(q.size - 0.75 * experts - embedding, rel=0.01)
    assert shape.read_parameters / 1e9 == pytest.approx(46.7 - 0.75 * 45.1, rel=0.01)  # ~12.9
    assert shape.moe_words().startswith("47 B in memory, ~13 B read per token")
    hw = machine(24, False)
    fast = speed.predict(shape, hw, RECORDED)
    dense = speed.predict(speed.shape_of(model.arch.__class__(**{
        **model.arch.__dict__, "experts": 0, "experts_used": 0}), q.size, 46.7e9), hw, RECORDED)
    assert fast.decode_tps > 3 * dense.decode_tps  # ~4x fewer bytes a token


def test_experts_in_ram_are_faster_than_layers_off_the_gpu() -> None:
    model = CATALOG["mixtral-8x7b-instruct"]
    q = model.quant("Q4_K_M")
    assert model.arch is not None
    shape = speed.shape_of(model.arch, q.size, model.params_b * 1e9)
    hw = machine(64, True)
    split = _verdict("mixtral-8x7b-instruct", hw)
    moe = speed.predict(shape, hw, RECORDED, 32, cpu_expert_layers=split.estimate.cpu_expert_layers)
    layers = fit.verdict(model.arch, q.size, 8192, hw)  # no expert bytes: layers off the GPU
    assert layers.kind == "partial"
    by_layers = speed.predict(shape, hw, RECORDED, layers.estimate.gpu_layers)
    assert moe.device == "gpu+cpu" and moe.decode_tps > by_layers.decode_tps


def test_context_plan_for_nemo() -> None:
    model = CATALOG["mistral-nemo-12b-instruct"]
    assert model.arch is not None
    q = model.quant("Q4_K_M")
    plan = fit.context_plan(model.arch, q.size, machine(24, False), model.context_length)
    assert [s.context for s in plan] == [4096, 8192, 16384, 32768, 65536, 131072]
    assert [s.kv_cache for s in plan] == [n * 160 * KiB for n in
                                          (4096, 8192, 16384, 32768, 65536, 131072)]
    # 128k tokens of KV: 20 GiB on top of 7 GiB of weights does not fit 24 GiB; 32k (5 GiB) does
    kinds = {s.context: s.kind for s in plan}
    assert kinds[32768] == "cpu" and kinds[131072] == "no"


def test_models_fit_json_for_mixtral(home: Path) -> None:
    """The done-when: a quant that fits, its speed from the active bytes, why Q4_K_M does not."""
    manager = ModelManager(AppContext(), hardware=machine(24, False), speed=RECORDED)
    rows = [r.to_dict() for r in manager.fit("mixtral-8x7b-instruct")]
    chosen = [r for r in rows if r["choice"]]
    assert [r["quant"] for r in chosen] == ["Q3_K_M"]
    assert chosen[0]["speed"]["decode_tps"] > 0 and chosen[0]["moe"].startswith("47 B")
    assert chosen[0]["context_plan"][0]["context"] == 4096
    q4 = next(r for r in rows if r["quant"] == "Q4_K_M")
    assert q4["fit"]["verdict"] == "no" and "RAM gives 21.6 GiB" in q4["fit"]["why_not"]
    json.dumps(rows)


def test_mixtral_8x22b_quants_are_pulled_as_their_parts() -> None:
    """Every Mixtral 8x22B quant is published in parts: a pull fetches each (the pull itself,
    interrupted and resumed, is in test_hub_search.py)."""
    from app.models.gguf_file import split_parts

    model = CATALOG["mixtral-8x22b-instruct"]
    for quant in model.quants:
        parts = split_parts(Path(quant.file))
        assert len(parts) > 1 and parts[0].name == quant.file


def test_tiny_moe_gguf_header(tmp_path: Path) -> None:
    """A mixture-of-experts GGUF written with the gguf writer: the header path finds the expert
    counts and bytes, and the verdict and speed use them."""
    import gguf

    path = tmp_path / "tiny-moe.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    emb, ff, vocab, experts = 64, 128, 256, 4
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(emb)
    w.add_feed_forward_length(ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_expert_count(experts)
    w.add_expert_used_count(2)
    w.add_token_list([f"t{i}".encode() for i in range(vocab)])
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab, emb), dtype=np.float32))
    for b in range(2):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{b}.{name}.weight", rng.standard_normal((emb, emb),
                                                                      dtype=np.float32))
        w.add_tensor(f"blk.{b}.ffn_gate_inp.weight",
                     rng.standard_normal((experts, emb), dtype=np.float32))
        for name in ("ffn_gate_exps", "ffn_up_exps"):
            w.add_tensor(f"blk.{b}.{name}.weight",
                         rng.standard_normal((experts, ff, emb), dtype=np.float32))
        w.add_tensor(f"blk.{b}.ffn_down_exps.weight",
                     rng.standard_normal((experts, emb, ff), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    head = read_header(path)
    arch = arch_of(head)
    assert (arch.experts, arch.experts_used, arch.layers, arch.vocab) == (4, 2, 2, vocab)
    assert head.expert_bytes == 2 * 3 * experts * ff * emb * 4  # f32 expert tensors
    shape = speed.shape_of_header(head)
    assert shape.active_share == 0.5
    assert shape.bytes_per_token == pytest.approx(head.tensor_bytes - head.expert_bytes / 2
                                                  - shape.lookup_bytes)
    assert "2 of 4 experts" in shape.moe_words()
