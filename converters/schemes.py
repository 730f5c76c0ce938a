"""The target scheme names, used everywhere: plan, convert, quantization, reports."""

from __future__ import annotations

from typing import Literal, get_args

Scheme = Literal[
    "bf16",
    "fp8-dynamic",
    "w8a8-int8",
    "awq-w4a16",
    "awq-w4a16-asym",
    "gptq-w4a16",
    "nvfp4",
    "nvfp4a16",
]
SCHEMES: tuple[str, ...] = get_args(Scheme)
W4A16_SCHEMES: frozenset[str] = frozenset({"gptq-w4a16", "awq-w4a16", "awq-w4a16-asym"})
