"""GPU memory needed to serve a model: weights plus KV cache plus a fixed overhead.

An estimate from the model's real dimensions; vLLM itself profiles at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel

from converters.gguf.info import GGUFInfo

GIB = 1024**3

# Bytes per quantized weight, scales and zero points included.
#   w4a16: 4-bit values + one fp16 scale per group (plus an int zero point when asymmetric);
#   nvfp4: 4-bit values + one fp8 scale per 16 values (+ a tiny global scale).
_FP16_SCALE_BITS = 16


def weight_bytes_per_param(scheme: str, group_size: int = 128) -> float:
    if scheme == "bf16":
        return 2.0
    if scheme in ("fp8-dynamic", "w8a8-int8"):
        return 1.0 + 4 / 4096  # per-channel fp32 scales are negligible
    if scheme in ("gptq-w4a16", "awq-w4a16"):
        return (4 + _FP16_SCALE_BITS / group_size) / 8
    if scheme == "awq-w4a16-asym":
        return (4 + (_FP16_SCALE_BITS + 4) / group_size) / 8
    if scheme in ("nvfp4", "nvfp4a16"):
        return (4 + 8 / 16) / 8
    raise ValueError(f"unknown scheme {scheme}")


# CUDA context, activations and CUDA graphs: vLLM's usual headroom, roughly constant.
OVERHEAD_GIB = 1.5
# vLLM's default --gpu-memory-utilization.
GPU_MEMORY_UTILIZATION = 0.9


class MemoryEstimate(BaseModel):
    scheme: str
    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    total_gib: float
    fits: bool | None  # None: no memory size known


def unquantized_params(info: GGUFInfo) -> int:
    """Parameters that stay 16-bit under every scheme: embeddings, lm_head, norms."""
    hidden = info.embedding_length or 0
    vocab = info.vocab_size or info.token_count or 0
    embed = hidden * vocab
    lm_head = 0 if info.tied_embeddings else embed
    norms = hidden * (2 * (info.block_count or 0) + 1)
    return min(info.parameter_count, embed + lm_head + norms)


def kv_bytes_per_token(info: GGUFInfo, kv_dtype_bytes: int = 2) -> int:
    """K and V for every layer, at the model's KV-head count and head size."""
    layers = info.block_count or 0
    kv_heads = info.head_count_kv or info.head_count or 0
    key_dim = info.key_length or info.head_dim or 0
    value_dim = info.value_length or key_dim
    return layers * kv_heads * (key_dim + value_dim) * kv_dtype_bytes


def estimate(
    info: GGUFInfo,
    scheme: str,
    max_model_len: int,
    concurrency: int,
    vram_gib: float | None,
    group_size: int = 128,
) -> MemoryEstimate:
    keep = unquantized_params(info)
    quantized = info.parameter_count - keep
    weight_bytes = keep * 2 + quantized * weight_bytes_per_param(scheme, group_size)
    kv_bytes = kv_bytes_per_token(info) * max_model_len * concurrency
    weights = weight_bytes / GIB
    kv = kv_bytes / GIB
    total = weights + kv + OVERHEAD_GIB
    fits = None if vram_gib is None else total <= vram_gib * GPU_MEMORY_UTILIZATION
    return MemoryEstimate(
        scheme=scheme,
        weights_gib=round(weights, 3),
        kv_cache_gib=round(kv, 3),
        overhead_gib=OVERHEAD_GIB,
        total_gib=round(total, 3),
        fits=fits,
    )
