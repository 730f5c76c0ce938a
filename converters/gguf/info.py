"""What a GGUF header says about a model, in a form the plan file can store."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TensorInfo(BaseModel):
    """One tensor's entry in the GGUF tensor-info table (not its data)."""

    name: str
    shape: list[int]  # GGUF order: fastest-varying dimension first
    ggml_type: str  # e.g. "Q4_1", "F32", "Q4_K"
    offset: int  # from the start of the data section
    n_bytes: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class GGUFInfo(BaseModel):
    """Summary of one GGUF file's metadata, read without parsing the tokenizer arrays."""

    version: int
    architecture: str
    file_type: int | None = None  # general.file_type (llama.cpp's LLAMA_FTYPE_*)
    file_type_name: str | None = None  # e.g. "Q4_1", "Q4_K_M" (llama.cpp's naming)
    parameter_count: int  # sum of tensor element counts
    tensor_count: int
    quantization_mix: dict[str, int] = Field(default_factory=dict)  # ggml type -> tensor count
    data_offset: int = 0  # byte offset of the tensor data section
    # True when the file has no separate `output.weight` (lm_head shares the embedding).
    tied_embeddings: bool | None = None

    # Architecture hyper-parameters (from `<arch>.*` keys); None when absent.
    context_length: int | None = None
    embedding_length: int | None = None  # hidden size
    block_count: int | None = None
    feed_forward_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None  # attention.key_length, when the arch sets it
    value_length: int | None = None
    vocab_size: int | None = None
    rope_freq_base: float | None = None
    rope_dimension_count: int | None = None
    rope_scaling: dict[str, Any] = Field(default_factory=dict)  # rope.scaling.* keys
    norm_eps: float | None = None  # attention.layer_norm_rms_epsilon or layer_norm_epsilon
    expert_count: int | None = None
    expert_used_count: int | None = None
    sliding_window: int | None = None
    arch_keys: dict[str, Any] = Field(default_factory=dict)  # every other `<arch>.*` scalar

    # Tokenizer and chat template.
    tokenizer_model: str | None = None  # tokenizer.ggml.model ("gpt2", "llama", ...)
    tokenizer_pre: str | None = None  # tokenizer.ggml.pre
    tokenizer_fingerprint: str | None = None  # "sha256:<hex>" of the token list's raw bytes
    token_count: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    eot_token_id: int | None = None
    eom_token_id: int | None = None
    padding_token_id: int | None = None
    bos_token: str | None = None  # text of the BOS token
    eos_token: str | None = None
    eot_token: str | None = None
    # Control / user-defined tokens (e.g. <|im_end|>): text -> id, for stop-string mapping.
    special_token_ids: dict[str, int] = Field(default_factory=dict)
    add_bos_token: bool | None = None
    add_eos_token: bool | None = None
    chat_template: str | None = None
    chat_templates: dict[str, str] = Field(default_factory=dict)  # tokenizer.chat_template.<name>

    # Identity and defaults.
    identity: dict[str, Any] = Field(default_factory=dict)  # every general.* scalar or short list
    sampling: dict[str, Any] = Field(default_factory=dict)  # general.sampling.* without the prefix

    @property
    def head_dim(self) -> int | None:
        if self.key_length:
            return self.key_length
        if self.embedding_length and self.head_count:
            return self.embedding_length // self.head_count
        return None
