"""Rebuild a Hugging Face checkpoint (safetensors, config, tokenizer) from a GGUF file.

`rebuild_from_gguf` writes a whole model directory; `write_weights_and_config` writes
everything but the tokenizer (which `converters.hf_rebuild.tokenizer` rebuilds).
"""

from converters.hf_rebuild.names import SUPPORTED_ARCHITECTURES, UnsupportedArchitectureError
from converters.hf_rebuild.rebuild import RebuildResult, rebuild_from_gguf, write_weights_and_config

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "RebuildResult",
    "UnsupportedArchitectureError",
    "rebuild_from_gguf",
    "write_weights_and_config",
]
