"""GGUF -> HF safetensors rebuild: values, names, shapes, configs; real files, no mocks.

References are independent of the code under test: gguf-py's dequantize, torch's
float32 -> bfloat16 cast, llama.cpp's own q/k permutation applied to known HF weights,
and transformers' GGUF loader (tensors and config).
"""

from __future__ import annotations

import json
import math
import mmap
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from converters.errors import GGUFError, MigrateError
from converters.gguf.header import read_header
from converters.gguf.types import GGML_BLOCK_SIZES
from converters.hf_rebuild import (
    SUPPORTED_ARCHITECTURES,
    UnsupportedArchitectureError,
    write_weights_and_config,
)
from converters.hf_rebuild.config import build_generation_config
from converters.hf_rebuild.names import ARCH_SPECS, hf_tensor_name
from converters.hf_rebuild.safetensors_writer import INDEX_FILE, TensorEntry, plan_shards
from converters.hf_rebuild.tensors import dequantize, f32_to_bf16_bits

Q = gguf.GGMLQuantizationType
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, LAYERS = 64, 4, 2, 16, 96, 40, 2
MATRIX_TYPES = [Q.F32, Q.F16, Q.Q8_0, Q.Q4_0, Q.Q4_1]


# --- references, written from llama.cpp's and transformers' code, not ours ---------------


def llamacpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute (n_head already the kv count for k)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def transformers_unpermute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' LlamaTensorProcessor._reverse_permute_weights."""
    dim = weights.shape[0] // n_head // 2
    reshaped = weights.reshape(n_head, dim, 2, *weights.shape[1:])
    return reshaped.swapaxes(2, 1).reshape(weights.shape)


def gguf_reference(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF dequantized by gguf-py, in HF (reversed) shape.

    Tensor bytes are located by our header reader (cross-checked against gguf-py in
    test_gguf_header.py): GGUFReader would spend seconds on SmolLM2's tokenizer arrays.
    """
    header = read_header(path)
    result = {}
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for tensor in header.tensors:
            start = header.data_offset + tensor.offset
            raw = np.frombuffer(buf[start : start + tensor.n_bytes], dtype=np.uint8)
            rows = tensor.n_elements // tensor.shape[0]
            values = gguf.quants.dequantize(raw.reshape(rows, -1), Q[tensor.ggml_type])
            result[tensor.name] = np.asarray(values, dtype=np.float32).reshape(
                tuple(reversed(tensor.shape))
            )
    return result


# --- synthetic GGUFs --------------------------------------------------------------------------


def _hf_block(arch: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One decoder block's HF tensors (suffix -> array), shaped as the HF model has them."""

    def matrix(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0, 0.5, (rows, cols)).astype(np.float32)

    def norm(size: int = HIDDEN) -> np.ndarray:
        return rng.normal(0, 0.3, size).astype(np.float32)

    q_rows, kv_rows = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    if arch == "phi3":
        return {
            "input_layernorm.weight": norm(),
            "self_attn.qkv_proj.weight": matrix(q_rows + 2 * kv_rows, HIDDEN),
            "self_attn.o_proj.weight": matrix(HIDDEN, q_rows),
            "post_attention_layernorm.weight": norm(),
            "mlp.gate_up_proj.weight": matrix(2 * FFN, HIDDEN),
            "mlp.down_proj.weight": matrix(HIDDEN, FFN),
        }
    block = {
        "input_layernorm.weight": norm(),
        "self_attn.q_proj.weight": matrix(q_rows, HIDDEN),
        "self_attn.k_proj.weight": matrix(kv_rows, HIDDEN),
        "self_attn.v_proj.weight": matrix(kv_rows, HIDDEN),
        "self_attn.o_proj.weight": matrix(HIDDEN, q_rows),
        "mlp.gate_proj.weight": matrix(FFN, HIDDEN),
        "mlp.up_proj.weight": matrix(FFN, HIDDEN),
        "mlp.down_proj.weight": matrix(HIDDEN, FFN),
    }
    if arch.startswith("gemma"):
        block["post_attention_layernorm.weight"] = norm()
        block["pre_feedforward_layernorm.weight"] = norm()
        block["post_feedforward_layernorm.weight"] = norm()
    else:
        block["post_attention_layernorm.weight"] = norm()
    if arch in ("qwen3", "gemma3"):
        block["self_attn.q_norm.weight"] = norm(HEAD_DIM)
        block["self_attn.k_norm.weight"] = norm(HEAD_DIM)
    if arch == "qwen2":
        block["self_attn.q_proj.bias"] = norm(q_rows)
        block["self_attn.k_proj.bias"] = norm(kv_rows)
        block["self_attn.v_proj.bias"] = norm(kv_rows)
    return block


# HF block suffix -> GGUF block suffix, written out here rather than taken from the code.
_GGUF_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_block_name(arch: str, suffix: str) -> str:
    module, kind = suffix.rsplit(".", 1)
    if arch.startswith("gemma"):
        gemma = {
            "post_attention_layernorm": "post_attention_norm",
            "pre_feedforward_layernorm": "ffn_norm",
            "post_feedforward_layernorm": "post_ffw_norm",
        }
        if module in gemma:
            return f"{gemma[module]}.{kind}"
    elif module == "post_attention_layernorm":
        return f"ffn_norm.{kind}"
    return f"{_GGUF_BLOCK[module]}.{kind}"


def write_synthetic(
    path: Path,
    arch: str,
    *,
    seed: int = 0,
    tied: bool = False,
    extra: Callable[[gguf.GGUFWriter], None] | None = None,
    matrix_types: list[Q] = MATRIX_TYPES,
    no_rope_base: bool = False,
) -> dict[str, tuple[str, np.ndarray]]:
    """A tiny `arch` GGUF made as llama.cpp would from random HF weights.

    Returns HF name -> (GGUF name, the HF original in float32).
    """
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    if not no_rope_base:
        writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(HEAD_DIM)
    if arch in ("qwen3", "gemma2", "gemma3"):
        writer.add_key_length(HEAD_DIM)
        writer.add_value_length(HEAD_DIM)
    if arch.startswith("gemma"):
        writer.add_sliding_window(128)
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(50.0)
        writer.add_final_logit_softcapping(30.0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if extra:
        extra(writer)

    originals: dict[str, tuple[str, np.ndarray]] = {}
    embed = rng.normal(0, 0.5, (VOCAB, HIDDEN)).astype(np.float32)
    originals["model.embed_tokens.weight"] = ("token_embd.weight", embed)
    for layer in range(LAYERS):
        for suffix, values in _hf_block(arch, rng).items():
            gguf_name = f"blk.{layer}.{_gguf_block_name(arch, suffix)}"
            originals[f"model.layers.{layer}.{suffix}"] = (gguf_name, values)
    originals["model.norm.weight"] = (
        "output_norm.weight",
        rng.normal(0, 0.3, HIDDEN).astype(np.float32),
    )
    if not tied and not arch.startswith("gemma"):
        lm_head = rng.normal(0, 0.5, (VOCAB, HIDDEN)).astype(np.float32)
        originals["lm_head.weight"] = ("output.weight", lm_head)

    matrices = 0
    for gguf_name, values in originals.values():
        stored = values
        # What llama.cpp's converter does to the values before quantizing.
        if arch == "llama" and ".attn_q." in gguf_name:
            stored = llamacpp_permute(values, HEADS)
        elif arch == "llama" and ".attn_k." in gguf_name:
            stored = llamacpp_permute(values, KV_HEADS)
        if arch.startswith("gemma") and gguf_name.endswith("norm.weight"):
            stored = values + np.float32(1)
        if stored.ndim == 1:
            writer.add_tensor(gguf_name, stored)
            continue
        qtype = matrix_types[matrices % len(matrix_types)]
        matrices += 1
        if qtype == Q.F32:
            writer.add_tensor(gguf_name, stored)
        elif qtype == Q.F16:
            writer.add_tensor(gguf_name, stored.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return originals


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's tensors: by the safetensors library where it is installed.

    Without it (the toolkit does not depend on it), a minimal reader of the format
    keeps the round-trip tests running; bfloat16 comes back as uint16 bits either way.
    """
    try:
        from safetensors import safe_open
    except ImportError:
        return _read_safetensors_by_hand(path)
    tensors = {}
    with safe_open(str(path), "pt" if _has_bf16(path) else "np") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            value = handle.get_tensor(name)
            if not isinstance(value, np.ndarray):  # torch, for bfloat16
                value = value.view(_torch().int16).numpy().view(np.uint16)
            tensors[name] = value
    return tensors


def _torch() -> Any:
    return pytest.importorskip("torch")


def _has_bf16(path: Path) -> bool:
    with open(path, "rb") as file:
        header = json.loads(file.read(struct.unpack("<Q", file.read(8))[0]))
    return any(v.get("dtype") == "BF16" for k, v in header.items() if k != "__metadata__")


def _read_safetensors_by_hand(path: Path) -> dict[str, np.ndarray]:
    dtypes = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
    data = path.read_bytes()
    size = struct.unpack_from("<Q", data)[0]
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    start = 8 + size
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = np.frombuffer(data[start + begin : start + end], dtype=dtypes[entry["dtype"]])
        tensors[name] = raw.reshape(entry["shape"])
    return tensors


def load_numpy(out_dir: Path) -> dict[str, np.ndarray]:
    index = out_dir / INDEX_FILE
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    tensors: dict[str, np.ndarray] = {}
    for name in files:
        tensors.update(read_safetensors(out_dir / name))
    return tensors


def _rebuild(tmp_path: Path, gguf_path: Path, **kwargs: Any) -> tuple[Path, Any]:
    out_dir = tmp_path / "out"
    out_dir.mkdir(parents=True)
    return out_dir, write_weights_and_config(gguf_path, out_dir, **kwargs)


# --- dequantization kernels ----------------------------------------------------------------------


def _random_blocks(qtype: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes with finite float16 scales where each type keeps them."""
    size = GGML_BLOCK_SIZES[qtype][1]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    scale_fields = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2], "Q6_K": [208]}
    for start in scale_fields[qtype]:
        scales = rng.normal(0, 0.05, (n_blocks, 1)).astype(np.float16)
        raw[:, start : start + 2] = scales.view(np.uint8)
    return raw.reshape(-1)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"])
def test_fast_kernels_are_bit_identical_to_gguf(qtype: str) -> None:
    raw = _random_blocks(qtype, 3000, np.random.default_rng(1))
    block, _ = GGML_BLOCK_SIZES[qtype]
    expected = gguf.quants.dequantize(raw.reshape(10, -1), Q[qtype]).reshape(-1)
    got = dequantize(raw, qtype, 3000 * block)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_float_types_and_gguf_fallback_are_exact() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0, 1, 256).astype(np.float32)
    assert np.array_equal(dequantize(values.view(np.uint8), "F32", 256), values)
    half = values.astype(np.float16)
    assert np.array_equal(dequantize(half.view(np.uint8), "F16", 256), half.astype(np.float32))
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    expected = (bf16.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(dequantize(bf16.view(np.uint8), "BF16", 256), expected)
    q5 = gguf.quants.quantize(values.reshape(1, -1), Q.Q5_1).reshape(-1)  # no fast path: gguf-py
    assert np.array_equal(
        dequantize(q5, "Q5_1", 256), gguf.quants.dequantize(q5.reshape(1, -1), Q.Q5_1).reshape(-1)
    )


def test_bf16_rounding_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    finite = rng.integers(0, 2**32, 1 << 16, dtype=np.uint64).astype(np.uint32).view(np.float32)
    finite = finite[np.isfinite(finite)]
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, 1.0 + 2**-8], np.float32
    )
    values = np.concatenate([finite, specials, rng.normal(0, 1, 1000).astype(np.float32)])
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(f32_to_bf16_bits(values), expected)
    assert f32_to_bf16_bits(np.array([np.nan], np.float32))[0] == 0x7FC0


# --- the real model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_expected(smollm2_gguf: Path) -> dict[str, np.ndarray]:
    """SmolLM2's tensors as gguf-py dequantizes them, un-permuted the transformers way, by HF name."""
    spec = ARCH_SPECS["llama"]
    expected = {}
    for gguf_name, values in gguf_reference(smollm2_gguf).items():
        if ".attn_q." in gguf_name:
            values = transformers_unpermute(values, 9)
        elif ".attn_k." in gguf_name:
            values = transformers_unpermute(values, 3)
        expected[hf_tensor_name(spec, gguf_name) or gguf_name] = np.array(values)  # writable
    return expected


def test_smollm2_every_tensor_matches_gguf_dequantize_bf16(
    smollm2_gguf: Path, smollm2_expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """(1) All 272 tensors: gguf-py's dequantize, un-permuted, cast by torch; bit for bit."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    out_dir, result = _rebuild(tmp_path, smollm2_gguf, dtype="bfloat16", workers=2)
    assert result.tensor_count == 272
    ours = load_file(str(out_dir / "model.safetensors"))
    assert set(ours) == set(smollm2_expected) and "lm_head.weight" not in ours  # tied
    for name, values in smollm2_expected.items():
        expected = torch.from_numpy(values).to(torch.bfloat16)
        got = ours[name]
        assert got.dtype == torch.bfloat16 and got.shape == expected.shape, name
        assert torch.equal(got.view(torch.int16), expected.view(torch.int16)), name
    assert result.bytes_written == sum(t.numel() * 2 for t in ours.values())


def test_smollm2_float32_equals_gguf_dequantize_without_torch(
    smollm2_gguf: Path, smollm2_expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """(1) again in float32, where no cast is involved: runs where torch is not installed."""
    out_dir, _ = _rebuild(tmp_path, smollm2_gguf, dtype="float32")
    ours = load_numpy(out_dir)
    assert set(ours) == set(smollm2_expected)
    for name, values in smollm2_expected.items():
        assert ours[name].dtype == np.float32 and np.array_equal(ours[name], values), name


def test_smollm2_config(smollm2_gguf: Path, tmp_path: Path) -> None:
    out_dir, _ = _rebuild(tmp_path, smollm2_gguf, dtype="bfloat16")
    config = json.loads((out_dir / "config.json").read_text())
    raw_eps = _raw_float32(smollm2_gguf, "llama.attention.layer_norm_rms_epsilon")
    assert config["rms_norm_eps"] == raw_eps == 9.999999747378752e-06
    assert config == config | {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "rope_scaling": None,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    }
    generation = json.loads((out_dir / "generation_config.json").read_text())
    assert generation["bos_token_id"] == 1 and generation["eos_token_id"] == 2
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        assert stat.S_IMODE((out_dir / name).stat().st_mode) == 0o644


def _raw_float32(path: Path, key: str) -> float:
    """A float32 metadata value read straight from the file's bytes."""
    needle = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", 6)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        at = buf.find(needle)
        assert at > 0
        return float(struct.unpack_from("<f", buf, at + len(needle))[0])


def test_single_worker_and_threads_write_identical_files(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []
    one, _ = _rebuild(tmp_path / "a", smollm2_gguf, workers=1, dtype="float16")
    two, result = _rebuild(
        tmp_path / "b",
        smollm2_gguf,
        workers=2,
        dtype="float16",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert (one / "model.safetensors").read_bytes() == (two / "model.safetensors").read_bytes()
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (result.bytes_written, result.bytes_written)


# --- synthetic architectures -------------------------------------------------------------------


@pytest.mark.parametrize("arch", SUPPORTED_ARCHITECTURES)
def test_synthetic_round_trip(arch: str, tmp_path: Path) -> None:
    """(2) Names, shapes and values for every supported architecture, F32/F16/Q8_0/Q4_0/Q4_1."""
    path = tmp_path / f"{arch}.gguf"
    extra = None
    if arch == "phi3":

        def extra(writer: gguf.GGUFWriter) -> None:
            long = np.linspace(1.0, 4.0, HEAD_DIM // 2, dtype=np.float32)
            writer.add_tensor("rope_factors_long.weight", long)
            writer.add_tensor("rope_factors_short.weight", np.ones(HEAD_DIM // 2, np.float32))
            writer.add_rope_scaling_orig_ctx_len(256)

    originals = write_synthetic(path, arch, extra=extra)
    out_dir, result = _rebuild(tmp_path, path, dtype="float32")
    ours = load_numpy(out_dir)
    assert set(ours) == set(originals)
    assert result.tensor_count == len(originals)
    reference = gguf_reference(path)
    for hf_name, (gguf_name, original) in originals.items():
        got = ours[hf_name]
        assert got.shape == original.shape, hf_name
        expected = reference[gguf_name]
        if arch == "llama" and ".attn_q." in gguf_name:
            expected = transformers_unpermute(expected, HEADS)
        elif arch == "llama" and ".attn_k." in gguf_name:
            expected = transformers_unpermute(expected, KV_HEADS)
        if arch.startswith("gemma") and gguf_name.endswith("norm.weight"):
            expected = expected - np.float32(1)
            assert np.allclose(got, original, atol=1e-6), hf_name  # +1 -1 in float32
        assert np.array_equal(got, expected), hf_name
        if (
            reference[gguf_name].dtype == np.float32
            and gguf_name.endswith("weight")
            and (not arch.startswith("gemma") or not gguf_name.endswith("norm.weight"))
        ):
            stored_f32 = _stored_type(path, gguf_name) == "F32"
            if stored_f32:  # exact storage: the un-permutation must give the original back
                assert np.array_equal(got, original), hf_name
    config = json.loads((out_dir / "config.json").read_text())
    spec = ARCH_SPECS[arch]
    assert config["architectures"] == [spec.hf_class] and config["model_type"] == spec.model_type
    assert config["head_dim"] == HEAD_DIM and config["num_key_value_heads"] == KV_HEADS
    assert config["vocab_size"] == VOCAB
    assert config["tie_word_embeddings"] is arch.startswith("gemma")


def _stored_type(path: Path, gguf_name: str) -> str:
    return next(t.ggml_type for t in read_header(path).tensors if t.name == gguf_name)


def test_synthetic_permutation_is_exact_on_f32(tmp_path: Path) -> None:
    """llama.cpp's permute of known weights, stored as F32, comes back as the HF original."""
    path = tmp_path / "llama.gguf"
    originals = write_synthetic(path, "llama", seed=5, matrix_types=[Q.F32])
    out_dir, _ = _rebuild(tmp_path, path, dtype="float32")
    ours = load_numpy(out_dir)
    for name, (_, original) in originals.items():
        assert np.array_equal(ours[name], original), name


def test_synthetic_configs(tmp_path: Path) -> None:
    configs = {}
    for arch in ("qwen2", "gemma2", "gemma3"):
        path = tmp_path / f"{arch}.gguf"
        write_synthetic(path, arch)
        out_dir, _ = _rebuild(tmp_path / arch, path)
        configs[arch] = json.loads((out_dir / "config.json").read_text())
    assert configs["gemma2"]["attn_logit_softcapping"] == 50.0
    assert configs["gemma2"]["final_logit_softcapping"] == 30.0
    assert configs["gemma2"]["sliding_window"] == 128
    assert configs["gemma2"]["query_pre_attn_scalar"] == HEAD_DIM
    assert configs["gemma2"]["hidden_activation"] == "gelu_pytorch_tanh"
    assert configs["gemma3"]["rope_local_base_freq"] == 10000.0
    assert configs["gemma3"]["sliding_window_pattern"] == 6
    assert configs["gemma3"]["final_logit_softcapping"] is None
    assert configs["qwen2"]["use_sliding_window"] is False


def test_rope_scaling_from_keys_and_tensors(tmp_path: Path) -> None:
    def yarn(writer: gguf.GGUFWriter) -> None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(4.0)
        writer.add_rope_scaling_orig_ctx_len(32768)

    def linear(writer: gguf.GGUFWriter) -> None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(8.0)

    def llama3(writer: gguf.GGUFWriter) -> None:
        # convert_hf_to_gguf.py's rope_freqs for factor 8, low 1, high 4, original 8192.
        freqs = 1.0 / (10000.0 ** (np.arange(0, HEAD_DIM, 2, dtype=np.float32) / HEAD_DIM))
        factors = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < 8192 / 4:
                factors.append(1.0)
            elif wavelen > 8192 / 1:
                factors.append(8.0)
            else:
                smooth = (8192 / wavelen - 1) / (4 - 1)
                factors.append(1 / ((1 - smooth) / 8 + smooth))
        writer.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))

    expected = {
        "qwen2": (
            yarn,
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
        ),
        "gemma3": (linear, {"rope_type": "linear", "factor": 8.0}),
    }
    for arch, (extra, scaling) in expected.items():
        path = tmp_path / f"{arch}.gguf"
        write_synthetic(path, arch, extra=extra)
        out_dir, _ = _rebuild(tmp_path / arch, path)
        assert json.loads((out_dir / "config.json").read_text())["rope_scaling"] == scaling
    path = tmp_path / "llama3.gguf"
    write_synthetic(path, "llama", extra=llama3)
    out_dir, _ = _rebuild(tmp_path / "llama3", path, dtype="float32")
    assert "rope_freqs.weight" not in load_numpy_keys(out_dir)
    scaling = json.loads((out_dir / "config.json").read_text())["rope_scaling"]
    assert scaling["rope_type"] == "llama3" and scaling["factor"] == 8.0


def load_numpy_keys(out_dir: Path) -> set[str]:
    return set(load_numpy(out_dir))


def test_phi3_longrope(tmp_path: Path) -> None:
    long = np.linspace(1.0, 4.0, HEAD_DIM // 2, dtype=np.float32)

    def extra(writer: gguf.GGUFWriter) -> None:
        writer.add_tensor("rope_factors_long.weight", long)
        writer.add_tensor("rope_factors_short.weight", np.ones(HEAD_DIM // 2, np.float32))
        writer.add_rope_scaling_orig_ctx_len(256)

    path = tmp_path / "phi3.gguf"
    write_synthetic(path, "phi3", extra=extra)
    out_dir, _ = _rebuild(tmp_path, path)
    config = json.loads((out_dir / "config.json").read_text())
    assert config["rope_scaling"]["rope_type"] == "longrope"
    assert config["rope_scaling"]["long_factor"] == [float(v) for v in long]
    assert config["original_max_position_embeddings"] == 256


# --- shards, errors, generation config ----------------------------------------------------------


def test_sharded_output_loads_with_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "qwen3.gguf"
    originals = write_synthetic(path, "qwen3")
    out_dir, result = _rebuild(tmp_path, path, dtype="float32", max_shard_bytes=40_000)
    index = json.loads((out_dir / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert set(index["weight_map"]) == set(originals)
    assert index["metadata"]["total_size"] == result.bytes_written
    for shard in shards:
        assert stat.S_IMODE((out_dir / shard).stat().st_mode) == 0o644
        with open(out_dir / shard, "rb") as file:
            header_len = struct.unpack("<Q", file.read(8))[0]
            assert (8 + header_len) % 8 == 0
            assert json.loads(file.read(header_len))["__metadata__"] == {"format": "pt"}
    assert set(load_numpy(out_dir)) == set(originals)
    assert sorted(p.name for p in result.files) == sorted(
        [*shards, INDEX_FILE, "config.json", "generation_config.json"]
    )


def test_plan_puts_an_oversized_tensor_alone() -> None:
    entries = [
        TensorEntry(name, "F32", (n,), 4 * n) for name, n in (("a", 10), ("b", 100), ("c", 5))
    ]
    shards = plan_shards(entries, max_shard_bytes=100)
    assert [[e.name for e in shard.entries] for shard in shards] == [["a"], ["b"], ["c"]]
    assert plan_shards(entries, max_shard_bytes=10_000)[0].filename == "model.safetensors"


def test_unsupported_architecture(tmp_path: Path) -> None:
    """(5) One line saying what is wrong, a hint saying what to do, nothing written."""
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_embedding_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((4, 64), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(UnsupportedArchitectureError) as caught:
        write_weights_and_config(path, out_dir)
    error = caught.value
    assert isinstance(error, GGUFError) and isinstance(error, MigrateError)
    assert error.message == (
        "architecture mamba cannot be rebuilt from GGUF "
        "(supported: llama, qwen2, qwen3, gemma2, gemma3, phi3)"
    )
    assert error.hint == "map it to its HF original with --map NAME=org/repo"
    assert list(out_dir.iterdir()) == []


def test_unknown_tensor_is_an_error(tmp_path: Path) -> None:
    def extra(writer: gguf.GGUFWriter) -> None:
        writer.add_tensor("blk.0.mystery.weight", np.zeros(HIDDEN, np.float32))

    path = tmp_path / "llama.gguf"
    write_synthetic(path, "llama", extra=extra)
    with pytest.raises(GGUFError, match=r"blk\.0\.mystery\.weight .* has no Hugging Face name"):
        _rebuild(tmp_path, path)


def test_unknown_dtype_is_refused(smollm2_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(MigrateError, match="unknown output dtype 'int8'"):
        _rebuild(tmp_path, smollm2_gguf, dtype="int8")


def test_generation_config_merges_caller_defaults(smollm2_gguf: Path) -> None:
    from converters.gguf.header import read_gguf_info

    info = read_gguf_info(smollm2_gguf)
    info.eot_token_id = 7
    generation = build_generation_config(info, {"temperature": 0.2, "top_p": 0.9})
    assert generation == {
        "bos_token_id": 1,
        "eos_token_id": [2, 7],
        "pad_token_id": 2,
        "temperature": 0.2,
        "top_p": 0.9,
    }


# --- against transformers' own GGUF loader (slow: it parses the whole file in Python) --------


@pytest.mark.slow
def test_qk_unpermutation_matches_transformers_gguf_loader(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    """(3) Our float32 rebuild, loaded by transformers, equals transformers' GGUF loader."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    out_dir, _ = _rebuild(tmp_path, smollm2_gguf, dtype="float32")
    ours = transformers.LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    # from_pretrained(gguf_file=...) needs `accelerate` just to place weights; the tensors
    # come from this function, which does the dequantizing and the un-permuting.
    skeleton = transformers.LlamaForCausalLM(ours.config)
    theirs = load_gguf_checkpoint(str(smollm2_gguf), return_tensors=True, model_to_load=skeleton)
    tensors = theirs["tensors"]
    state = ours.state_dict()
    checked = 0
    for name, expected in tensors.items():
        assert torch.equal(state[name], expected.to(torch.float32)), name
        checked += "q_proj" in name or "k_proj" in name
    assert checked == 60
    assert len(tensors) == 272


@pytest.mark.slow
def test_config_matches_transformers_gguf_loader(smollm2_gguf: Path, tmp_path: Path) -> None:
    """(4) Every key both configs have is equal; rms_norm_eps is the GGUF's float32 exactly."""
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoConfig.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name
    )
    out_dir, _ = _rebuild(tmp_path, smollm2_gguf)
    ours_raw = json.loads((out_dir / "config.json").read_text())
    ours = transformers.AutoConfig.from_pretrained(out_dir)
    their_dict, our_dict = theirs.to_dict(), ours.to_dict()
    skip = {
        "_name_or_path",
        "_model_name_or_path",
        "architectures",
        "dtype",
        "transformers_version",
    }
    shared = (set(their_dict) & set(our_dict)) - skip
    assert len(shared) > 20
    mismatched = {key for key in shared if their_dict[key] != our_dict[key]}
    assert mismatched <= {"rms_norm_eps"}, {k: (their_dict[k], our_dict[k]) for k in mismatched}
    assert ours_raw["rms_norm_eps"] == _raw_float32(
        smollm2_gguf, "llama.attention.layer_norm_rms_epsilon"
    )
    raw_shared = (set(ours_raw) & set(their_dict)) - skip - {"rms_norm_eps"}
    assert {k for k in raw_shared if ours_raw[k] != their_dict[k]} == set()
    assert our_dict["rope_parameters"] == their_dict["rope_parameters"]


def test_half_precision_outputs_match_torch_casts(tmp_path: Path) -> None:
    """bfloat16 and float16 outputs are torch's casts of the exact float32 rebuild."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    path = tmp_path / "llama.gguf"
    write_synthetic(path, "llama", seed=7)
    exact_dir, _ = _rebuild(tmp_path / "f32", path, dtype="float32")
    exact = load_file(str(exact_dir / "model.safetensors"))
    for dtype, torch_dtype, bits in (
        ("bfloat16", torch.bfloat16, torch.int16),
        ("float16", torch.float16, torch.int16),
    ):
        out_dir, _ = _rebuild(tmp_path / dtype, path, dtype=dtype)
        ours = load_file(str(out_dir / "model.safetensors"))
        assert set(ours) == set(exact)
        for name, values in exact.items():
            expected = values.to(torch_dtype)
            assert ours[name].dtype == torch_dtype, name
            assert torch.equal(ours[name].view(bits), expected.view(bits)), (dtype, name)


def test_gemma3_from_ollama_keeps_the_text_model(tmp_path: Path) -> None:
    """Ollama's gemma3 GGUF: vision tower in the same file, rope bases under its own keys."""

    def extra(writer: gguf.GGUFWriter) -> None:
        writer.add_tensor("v.blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
        writer.add_tensor("mm.input_projection.weight", np.zeros((32, HIDDEN), np.float32))
        writer.add_float32("gemma3.rope.global.freq_base", 1_000_000.0)
        writer.add_float32("gemma3.rope.local.freq_base", 10_000.0)

    path = tmp_path / "gemma3.gguf"
    originals = write_synthetic(path, "gemma3", extra=extra, no_rope_base=True)
    out_dir, _ = _rebuild(tmp_path, path, dtype="float32")
    assert set(load_numpy(out_dir)) == set(originals)
    config = json.loads((out_dir / "config.json").read_text())
    assert config["rope_theta"] == 1_000_000.0 and config["rope_local_base_freq"] == 10_000.0


def test_writer_streams_pieces_in_any_order_and_checks_completeness(tmp_path: Path) -> None:
    from converters.hf_rebuild.safetensors_writer import ShardedWriter

    values = np.arange(12, dtype=np.float32)
    entries = [TensorEntry("a", "F32", (3, 4), 48), TensorEntry("b", "F32", (2,), 8)]
    with ShardedWriter(tmp_path, plan_shards(entries, 1 << 20)) as writer:
        writer.write("a", 24, values[6:].data)  # the second half first
        writer.write("a", 0, values[:6].data)
        writer.write("b", 0, values[:2].data)
        with pytest.raises(ValueError, match="outside"):
            writer.write("b", 4, values[:2].data)
    loaded = read_safetensors(tmp_path / "model.safetensors")
    assert np.array_equal(loaded["a"], values.reshape(3, 4))
    assert np.array_equal(loaded["b"], values[:2])
    partial = tmp_path / "partial"
    partial.mkdir()
    shards = plan_shards(entries[:1], 1 << 20)
    with (
        pytest.raises(MigrateError, match="wrote 24 of 48"),
        ShardedWriter(partial, shards) as writer,
    ):
        writer.write("a", 0, values[:6].data)
