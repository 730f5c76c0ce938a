"""config.json and generation_config.json for a model rebuilt from GGUF.

Values come from the GGUF's `<arch>.*` keys (through GGUFInfo) and from the tensor
shapes, which are authoritative where the two could disagree (vocab size, head size).
`rms_norm_eps` is written exactly as the GGUF stores it (a float32, e.g.
9.999999747378752e-06 rather than the original 1e-05): that is the value llama.cpp ran.
Rope keys use the classic `rope_theta` / `rope_scaling` form, which transformers 4.x
and 5.x and vLLM all read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from converters.errors import GGUFError
from converters.gguf.info import GGUFInfo
from converters.hf_rebuild.names import ArchSpec

DEFAULT_ROPE_THETA = 10_000.0
# llama.cpp hard-codes these for gemma3 when the GGUF does not say.
GEMMA3_SWA_PATTERN = 6
GEMMA3_LOCAL_ROPE_THETA = 10_000.0
GEMMA3_GLOBAL_ROPE_THETA = 1_000_000.0
# Layer counts llama.cpp treats as the 27B models, whose query scale is 1/sqrt(hidden/heads).
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def build_config(
    info: GGUFInfo,
    spec: ArchSpec,
    shapes: Mapping[str, Sequence[int]],
    *,
    dtype: str,
    rope_tensors: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """config.json for `info`'s model; `shapes` maps GGUF tensor names to HF shapes.

    `rope_tensors` holds the float32 values of the GGUF's rope factor tensors
    (rope_freqs, rope_factors_long/short) when it has them.
    """
    rope_tensors = rope_tensors or {}
    heads = _required(info.head_count, "attention.head_count", info)
    kv_heads = info.head_count_kv or heads
    hidden = _required(info.embedding_length, "embedding_length", info)
    head_dim = _head_dim(info, spec, shapes, heads, kv_heads, hidden)
    embedding = shapes.get("token_embd.weight")
    config: dict[str, Any] = {
        "architectures": [spec.hf_class],
        "model_type": spec.model_type,
        "hidden_size": hidden,
        "intermediate_size": _required(info.feed_forward_length, "feed_forward_length", info),
        "num_hidden_layers": _required(info.block_count, "block_count", info),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": _required(info.context_length, "context_length", info),
        "rms_norm_eps": info.norm_eps if info.norm_eps is not None else 1e-6,
        "rope_theta": _rope_theta(info),
        "rope_scaling": None,
        "vocab_size": embedding[0] if embedding else info.vocab_size,
        "tie_word_embeddings": "output.weight" not in shapes,
        "bos_token_id": info.bos_token_id,
        "eos_token_id": info.eos_token_id,
        "pad_token_id": info.padding_token_id,
        "use_cache": True,
        # transformers 4.x reads torch_dtype, 5.x dtype.
        "torch_dtype": dtype,
        "dtype": dtype,
    }
    rope_dims = info.rope_dimension_count
    if rope_dims and rope_dims < head_dim:
        config["partial_rotary_factor"] = rope_dims / head_dim
    config["rope_scaling"] = _rope_scaling(info, config, rope_tensors)
    _ARCH_EXTRAS[spec.gguf_arch](config, info, shapes)
    return config


def build_generation_config(
    info: GGUFInfo, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """generation_config.json: bos/eos from the GGUF, then the caller's sampling defaults.

    End-of-generation ids are the GGUF's eos plus its end-of-turn/-message tokens, as
    llama.cpp stops on all of them; the caller's values (e.g. eos from stop strings) win.
    """
    stops = [i for i in (info.eos_token_id, info.eot_token_id, info.eom_token_id) if i is not None]
    stops = list(dict.fromkeys(stops))
    generation: dict[str, Any] = {}
    if info.bos_token_id is not None:
        generation["bos_token_id"] = info.bos_token_id
    if stops:
        generation["eos_token_id"] = stops[0] if len(stops) == 1 else stops
    if info.padding_token_id is not None:
        generation["pad_token_id"] = info.padding_token_id
    generation.update(defaults or {})
    return generation


# --- shared pieces -------------------------------------------------------------------------


def _required(value: int | None, key: str, info: GGUFInfo) -> int:
    if value is None:
        raise GGUFError(
            f"GGUF has no {info.architecture}.{key} key: cannot write config.json",
            hint="re-convert the model with a current llama.cpp, or map it to its HF original "
            "with --map NAME=org/repo",
        )
    return value


def _rope_theta(info: GGUFInfo) -> float:
    if info.rope_freq_base:
        return info.rope_freq_base
    if info.architecture == "gemma3":  # Ollama's converter: rope.global.freq_base
        return float(info.arch_keys.get("rope.global.freq_base") or GEMMA3_GLOBAL_ROPE_THETA)
    return DEFAULT_ROPE_THETA


def _head_dim(
    info: GGUFInfo,
    spec: ArchSpec,
    shapes: Mapping[str, Sequence[int]],
    heads: int,
    kv_heads: int,
    hidden: int,
) -> int:
    """Per-head size: attention.key_length, else the q projection's rows per head."""
    if info.key_length:
        return info.key_length
    q = shapes.get("blk.0.attn_q.weight")
    if q:
        return q[0] // heads
    qkv = shapes.get("blk.0.attn_qkv.weight")
    if qkv:
        return qkv[0] // (heads + 2 * kv_heads)
    return hidden // heads


def _rope_scaling(
    info: GGUFInfo, config: dict[str, Any], rope_tensors: Mapping[str, np.ndarray]
) -> dict[str, Any] | None:
    scaling = info.rope_scaling
    kind = str(scaling.get("type", "none")).lower()
    factor = scaling.get("factor")
    original = scaling.get("original_context_length")
    if "rope_factors_long.weight" in rope_tensors:
        # Phi-3 LongRoPE: per-dimension factors, which llama.cpp keeps as tensors.
        if original:
            config["original_max_position_embeddings"] = int(original)
        return {
            "rope_type": "longrope",
            "long_factor": _floats(rope_tensors["rope_factors_long.weight"]),
            "short_factor": _floats(rope_tensors["rope_factors_short.weight"]),
        }
    if "rope_freqs.weight" in rope_tensors:
        # Llama 3.1+: llama.cpp bakes the llama3 scaling into a factor tensor.
        return _llama3_from_factors(rope_tensors["rope_freqs.weight"], info, config)
    if kind in ("none", "") or not factor or float(factor) == 1.0:
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        result: dict[str, Any] = {"rope_type": "yarn", "factor": float(factor)}
        if original:
            result["original_max_position_embeddings"] = int(original)
        for gguf_key, hf_key in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            if gguf_key in scaling:
                result[hf_key] = float(scaling[gguf_key])
        return result
    raise GGUFError(
        f"GGUF rope scaling type {kind!r} has no Hugging Face equivalent here",
        hint="map the model to its HF original with --map NAME=org/repo",
    )


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(values, dtype=np.float32).reshape(-1)]


def _llama3_from_factors(
    factors: np.ndarray, info: GGUFInfo, config: dict[str, Any]
) -> dict[str, Any]:
    """Recover llama3 rope_scaling from the factor tensor llama.cpp computed from it.

    The tensor is a function of (factor, low_freq_factor, high_freq_factor, original
    context); factor is its maximum and the rest are found among the values Meta uses,
    by recomputing the tensor exactly as convert_hf_to_gguf.py does.
    """
    observed = np.asarray(factors, dtype=np.float32).reshape(-1)
    factor = float(observed.max())
    dim = 2 * observed.size
    base = float(config["rope_theta"])
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    for original in (8192, 4096, 2048, 16384, 32768, 65536, 131072):
        for low in (1.0, 0.5, 2.0, 4.0):
            for high in (4.0, 2.0, 8.0, 1.0):
                if high <= low:
                    continue
                expected = _llama3_factors(freqs, factor, low, high, original)
                if np.allclose(expected, observed, rtol=1e-4, atol=0):
                    return {
                        "rope_type": "llama3",
                        "factor": factor,
                        "low_freq_factor": low,
                        "high_freq_factor": high,
                        "original_max_position_embeddings": original,
                    }
    raise GGUFError(
        f"the GGUF's rope_freqs tensor ({observed.size} factors, max {factor:g}) does not match "
        "any llama3 rope scaling",
        hint="map the model to its HF original with --map NAME=org/repo",
    )


def _llama3_factors(
    freqs: np.ndarray, factor: float, low: float, high: float, original: int
) -> np.ndarray:
    low_wavelen = original / low
    high_wavelen = original / high
    result = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            result.append(1.0)
        elif wavelen > low_wavelen:
            result.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            result.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(result, dtype=np.float32)


# --- per-architecture keys ------------------------------------------------------------------


def _llama(config: dict[str, Any], info: GGUFInfo, shapes: Mapping[str, Sequence[int]]) -> None:
    config["hidden_act"] = "silu"
    config["attention_bias"] = "blk.0.attn_q.bias" in shapes
    config["mlp_bias"] = "blk.0.ffn_up.bias" in shapes


def _qwen(config: dict[str, Any], info: GGUFInfo, shapes: Mapping[str, Sequence[int]]) -> None:
    # Qwen2's q/k/v biases are built in (no key); Qwen3 has none unless attention_bias says.
    config["hidden_act"] = "silu"
    config["use_sliding_window"] = False
    config["sliding_window"] = None
    if info.architecture == "qwen3":
        config["attention_bias"] = "blk.0.attn_q.bias" in shapes


def _gemma(config: dict[str, Any], info: GGUFInfo, shapes: Mapping[str, Sequence[int]]) -> None:
    config["hidden_act"] = config["hidden_activation"] = "gelu_pytorch_tanh"
    config["tie_word_embeddings"] = True  # gemma has no lm_head of its own
    config["sliding_window"] = info.sliding_window
    # llama.cpp scales queries by 1/sqrt(hidden/heads) for the 27B models, else 1/sqrt(head_dim).
    big = info.block_count == _GEMMA_27B_LAYERS[info.architecture]
    heads = config["num_attention_heads"]
    config["query_pre_attn_scalar"] = config["hidden_size"] // heads if big else config["head_dim"]
    keys = info.arch_keys
    config["attn_logit_softcapping"] = _float_or_none(keys.get("attn_logit_softcapping"))
    config["final_logit_softcapping"] = _float_or_none(keys.get("final_logit_softcapping"))
    config["attention_bias"] = False
    if info.architecture == "gemma3":
        pattern = keys.get("attention.sliding_window_pattern")
        if isinstance(pattern, list):  # one flag per layer: True where the layer is local
            config["layer_types"] = [
                "sliding_attention" if local else "full_attention" for local in pattern
            ]
        else:
            config["sliding_window_pattern"] = (
                pattern if isinstance(pattern, int) else GEMMA3_SWA_PATTERN
            )
        # llama.cpp may write rope.freq_base_swa; Ollama's converter rope.local.freq_base.
        local = keys.get("rope.freq_base_swa", keys.get("rope.local.freq_base"))
        config["rope_local_base_freq"] = float(local or GEMMA3_LOCAL_ROPE_THETA)


def _phi3(config: dict[str, Any], info: GGUFInfo, shapes: Mapping[str, Sequence[int]]) -> None:
    config["hidden_act"] = "silu"
    config["attention_bias"] = False
    config["sliding_window"] = info.sliding_window
    original = info.rope_scaling.get("original_context_length")
    if original and "original_max_position_embeddings" not in config:
        config["original_max_position_embeddings"] = int(original)


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_ARCH_EXTRAS = {
    "llama": _llama,
    "qwen2": _qwen,
    "qwen3": _qwen,
    "gemma2": _gemma,
    "gemma3": _gemma,
    "phi3": _phi3,
}
