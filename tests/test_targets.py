"""GPU table, memory estimates and scheme choice, on real model dimensions."""

from __future__ import annotations

import pytest

from converters.errors import UsageError
from converters.gguf.info import GGUFInfo
from migrate.targets.choose import choose_group_size, choose_target, hardware_from_spec
from migrate.targets.gpus import KNOWN_GPUS, allowed_schemes, lookup_gpu, parse_nvidia_smi
from migrate.targets.memory import estimate, kv_bytes_per_token

GIB = 1024**3

# Meta-Llama-3.1-8B-Instruct's real dimensions.
LLAMA_8B = GGUFInfo(
    version=3,
    architecture="llama",
    parameter_count=8_030_261_248,
    tensor_count=292,
    context_length=131072,
    embedding_length=4096,
    block_count=32,
    feed_forward_length=14336,
    head_count=32,
    head_count_kv=8,
    vocab_size=128256,
    tied_embeddings=False,
)
# SmolLM2-135M (FIELD-NOTES): hidden 576 is not a multiple of 128.
SMOLLM2 = GGUFInfo(
    version=3,
    architecture="llama",
    parameter_count=134_515_008,
    tensor_count=272,
    context_length=8192,
    embedding_length=576,
    block_count=30,
    feed_forward_length=1536,
    head_count=9,
    head_count_kv=3,
    vocab_size=49152,
    tied_embeddings=True,
)


def test_every_issue_gpu_is_known() -> None:
    for key in (
        "h100",
        "h200",
        "a100",
        "l40s",
        "l4",
        "rtx-4090",
        "rtx-5090",
        "rtx-pro-4500",
        "b200",
    ):
        assert lookup_gpu(key).key == key


def test_gpu_names_as_people_type_them() -> None:
    assert lookup_gpu("NVIDIA L40S").key == "l40s"
    assert lookup_gpu("RTX 4090").key == "rtx-4090"
    with pytest.raises(UsageError, match="unknown GPU 'tpu-v5'"):
        lookup_gpu("tpu-v5")


def test_compute_capability_decides_schemes() -> None:
    h100 = allowed_schemes(KNOWN_GPUS["h100"])
    assert h100["fp8-dynamic"] is None and h100["gptq-w4a16"] is None
    assert h100["nvfp4"] is not None and "10.0" in h100["nvfp4"]
    assert allowed_schemes(KNOWN_GPUS["b200"])["nvfp4"] is None
    assert allowed_schemes(KNOWN_GPUS["a100"])["fp8-dynamic"] is not None  # 8.0 < 8.9
    assert allowed_schemes(KNOWN_GPUS["l4"])["fp8-dynamic"] is None  # Ada, 8.9
    cpu = allowed_schemes(KNOWN_GPUS["cpu"])
    assert cpu["gptq-w4a16"] is None and "Blackwell" in str(cpu["nvfp4a16"])


def test_parse_nvidia_smi_output() -> None:
    spec = parse_nvidia_smi(
        "NVIDIA H100 80GB HBM3, 81559, 9.0\nNVIDIA H100 80GB HBM3, 81559, 9.0\n"
    )
    assert spec is not None
    assert spec.compute_capability == 9.0 and spec.vram_gib == pytest.approx(79.6, abs=0.1)
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("garbage line\n") is None


def test_kv_cache_from_real_dimensions() -> None:
    # 32 layers x 8 KV heads x (128 + 128) x 2 bytes = 128 KiB per token.
    assert kv_bytes_per_token(LLAMA_8B) == 131072
    est = estimate(LLAMA_8B, "bf16", max_model_len=4096, concurrency=8, vram_gib=22)
    assert est.kv_cache_gib == pytest.approx(4.0)
    assert est.weights_gib == pytest.approx(8_030_261_248 * 2 / GIB, rel=1e-3)
    assert est.fits is False  # 20.5 GiB > 0.9 x 22


def test_quantized_weights_keep_embeddings_16_bit() -> None:
    w4 = estimate(LLAMA_8B, "gptq-w4a16", 4096, 1, None)
    fp8 = estimate(LLAMA_8B, "fp8-dynamic", 4096, 1, None)
    bf16 = estimate(LLAMA_8B, "bf16", 4096, 1, None)
    assert w4.weights_gib < fp8.weights_gib < bf16.weights_gib
    # Embedding + lm_head (2 x 128256 x 4096) stay bf16: ~2 GiB of the 4-bit model.
    assert 5.0 < w4.weights_gib < 6.0
    assert w4.fits is None


def test_best_quality_that_fits() -> None:
    l4 = hardware_from_spec(KNOWN_GPUS["l4"], detected=False, vram_gib=None)
    choice = choose_target(LLAMA_8B, l4, max_model_len=4096, concurrency=8)
    assert choice.scheme == "fp8-dynamic"
    assert "fits" in choice.reason
    h100 = hardware_from_spec(KNOWN_GPUS["h100"], detected=False, vram_gib=None)
    assert choose_target(LLAMA_8B, h100, 4096, 8).scheme == "bf16"


def test_nothing_fits_is_explained() -> None:
    t4 = hardware_from_spec(KNOWN_GPUS["t4"], detected=False, vram_gib=None)
    choice = choose_target(LLAMA_8B, t4, max_model_len=131072, concurrency=64)
    assert choice.scheme is None
    assert choice.reason.startswith("nothing fits") and "concurrency" in choice.reason


def test_vram_flag_overrides_table() -> None:
    small = hardware_from_spec(KNOWN_GPUS["h100"], detected=False, vram_gib=10)
    assert choose_target(LLAMA_8B, small, 4096, 1).scheme == "gptq-w4a16"


def test_forced_scheme() -> None:
    h100 = hardware_from_spec(KNOWN_GPUS["h100"], detected=False, vram_gib=None)
    forced = choose_target(LLAMA_8B, h100, 4096, 8, forced_scheme="awq-w4a16")
    assert forced.scheme == "awq-w4a16" and forced.forced and forced.group_size == 128
    refused = choose_target(LLAMA_8B, h100, 4096, 8, forced_scheme="nvfp4")
    # Quantizing still works anywhere; serving is what the hardware refuses.
    assert refused.scheme == "nvfp4" and refused.forced
    assert (
        refused.serve_blocked == "needs compute capability >= 10.0 (NVIDIA Blackwell), h100 has 9.0"
    )
    assert "cannot be served here" in refused.reason
    with pytest.raises(UsageError, match="unknown scheme"):
        choose_target(LLAMA_8B, h100, 4096, 8, forced_scheme="int3")


def test_group_size_divides_every_input_dimension() -> None:
    assert choose_group_size(LLAMA_8B) == (128, None)
    size, note = choose_group_size(SMOLLM2)
    assert size == 64 and note is not None and "576" in note
    cpu = hardware_from_spec(KNOWN_GPUS["cpu"], detected=False, vram_gib=None)
    choice = choose_target(SMOLLM2, cpu, 2048, 1, forced_scheme="gptq-w4a16")
    assert choice.group_size == 64 and choice.group_size_note


def test_no_gpu_still_plans() -> None:
    none = hardware_from_spec(None, detected=False, vram_gib=None)
    choice = choose_target(SMOLLM2, none, 2048, 1)
    assert choice.scheme == "bf16" and "--gpu" in choice.reason


def test_prequantized_repo_is_offered() -> None:
    l4 = hardware_from_spec(KNOWN_GPUS["l4"], detected=False, vram_gib=None)
    choice = choose_target(LLAMA_8B, l4, 4096, 8, prequantized={"fp8-dynamic": "org/model-FP8"})
    assert choice.prequantized_repo == "org/model-FP8"
