"""GGUF reading (header only, fast) and, later, tensor streaming."""

from converters.gguf.info import GGUFInfo, TensorInfo

__all__ = ["GGUFInfo", "TensorInfo"]
