"""GGUF tensor names -> Hugging Face names, and what each architecture needs undone.

llama.cpp's converter renames every tensor (`model.layers.3.self_attn.q_proj.weight` ->
`blk.3.attn_q.weight`) and, for some architectures, changes values on the way:
it permutes llama's q/k rows for its rope kernel and adds 1 to gemma's RMSNorm weights.
Each `ArchSpec` records the reverse renaming and which of those changes to undo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from converters.errors import GGUFError


class UnsupportedArchitectureError(GGUFError):
    """The GGUF's architecture has no rebuild recipe here."""


# GGUF tensors outside the blocks.
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

# Block tensors shared by every decoder here (suffix after `blk.N.`, without .weight/.bias).
_ATTENTION = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
}
_GATED_MLP = {
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_QK_NORM = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    **_ATTENTION,
    **_GATED_MLP,
}
# Gemma 2/3 have four norms per block; llama.cpp calls the pre-MLP one ffn_norm.
_GEMMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    **_ATTENTION,
    **_GATED_MLP,
}
# Phi-3 keeps q/k/v and gate/up fused in HF too; llama.cpp calls the fused gate_up ffn_up.
_PHI3_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_qkv": "self_attn.qkv_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_up": "mlp.gate_up_proj",
    "ffn_down": "mlp.down_proj",
}


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """How to turn one GGUF architecture back into its HF model."""

    gguf_arch: str
    model_type: str
    hf_class: str
    block_names: dict[str, str]
    # llama.cpp permutes HF's q/k rows (rotate-half -> interleaved pairs) for llama only.
    permute_qk: bool = False
    # llama.cpp stores gemma's RMSNorm weight w as w + 1 (gemma computes x * (1 + w)).
    norm_offset: float = 0.0
    # Tensors that are not weights in HF (rope factors): read into config.json instead.
    non_weights: frozenset[str] = field(default_factory=frozenset)
    # Tensors of other towers left out of the text model (Ollama's gemma3 has its vision
    # encoder "v.*" and projector "mm.*" in the same GGUF).
    ignored_prefixes: tuple[str, ...] = ()


ARCH_SPECS: dict[str, ArchSpec] = {
    spec.gguf_arch: spec
    for spec in (
        # Mistral GGUFs are written as arch llama too; LlamaForCausalLM runs them unchanged.
        ArchSpec(
            "llama",
            "llama",
            "LlamaForCausalLM",
            _LLAMA_BLOCK,
            permute_qk=True,
            non_weights=frozenset({"rope_freqs.weight"}),
        ),
        ArchSpec("qwen2", "qwen2", "Qwen2ForCausalLM", _LLAMA_BLOCK),
        ArchSpec("qwen3", "qwen3", "Qwen3ForCausalLM", {**_LLAMA_BLOCK, **_QK_NORM}),
        ArchSpec("gemma2", "gemma2", "Gemma2ForCausalLM", _GEMMA_BLOCK, norm_offset=1.0),
        # The GGUF holds gemma3's text model only: rebuilt as the text-only Gemma3ForCausalLM.
        ArchSpec(
            "gemma3",
            "gemma3_text",
            "Gemma3ForCausalLM",
            {**_GEMMA_BLOCK, **_QK_NORM},
            norm_offset=1.0,
            ignored_prefixes=("v.", "mm."),
        ),
        ArchSpec(
            "phi3",
            "phi3",
            "Phi3ForCausalLM",
            _PHI3_BLOCK,
            non_weights=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"}),
        ),
    )
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(ARCH_SPECS)

_BLOCK_RE = re.compile(r"blk\.(\d+)\.(.+)\.(weight|bias)")
_GLOBAL_RE = re.compile(r"([a-z_]+)\.(weight|bias)")


def arch_spec(architecture: str) -> ArchSpec:
    """The rebuild recipe for a GGUF `general.architecture`, or UnsupportedArchitectureError."""
    spec = ARCH_SPECS.get(architecture)
    if spec is None:
        raise UnsupportedArchitectureError(
            f"architecture {architecture} cannot be rebuilt from GGUF "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})",
            hint="map it to its HF original with --map NAME=org/repo",
        )
    return spec


def hf_tensor_name(spec: ArchSpec, gguf_name: str) -> str | None:
    """HF name of a GGUF tensor; None for tensors that are not text-model weights
    (`spec.non_weights`, which go into config.json, and `spec.ignored_prefixes`).

    A tensor with no known HF name is an error: dropping it would leave a broken model.
    """
    if gguf_name in spec.non_weights or gguf_name.startswith(spec.ignored_prefixes):
        return None
    block = _BLOCK_RE.fullmatch(gguf_name)
    if block is not None:
        index, part, kind = block.groups()
        hf_part = spec.block_names.get(part)
        if hf_part is not None:
            return f"model.layers.{index}.{hf_part}.{kind}"
    else:
        plain = _GLOBAL_RE.fullmatch(gguf_name)
        if plain is not None and plain.group(1) in _GLOBAL_NAMES:
            return f"{_GLOBAL_NAMES[plain.group(1)]}.{plain.group(2)}"
    raise GGUFError(
        f"tensor {gguf_name} of a {spec.gguf_arch} GGUF has no Hugging Face name",
        hint="the GGUF holds tensors this rebuild does not know: map it to its HF original "
        "with --map NAME=org/repo",
    )


def is_permuted_qk(spec: ArchSpec, gguf_name: str) -> bool:
    """True for the q/k projections (weight or bias) llama.cpp permuted."""
    return spec.permute_qk and gguf_name.endswith(
        (".attn_q.weight", ".attn_q.bias", ".attn_k.weight", ".attn_k.bias")
    )


def has_norm_offset(spec: ArchSpec, gguf_name: str) -> bool:
    """True for the RMSNorm weights llama.cpp shifted by `spec.norm_offset`."""
    return spec.norm_offset != 0.0 and gguf_name.endswith("norm.weight")
