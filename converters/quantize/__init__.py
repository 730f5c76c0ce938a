"""Quantize a bf16 HF checkpoint folder with llm-compressor (compressed-tensors output).

The work runs in the llm-compressor runtime (its own venv): `run.quantize_checkpoint`
starts `job.py` there as a standalone script, by file path, with a JSON spec. Nothing
in this package imports `migrate`, `typer` or `rich`; `job.py` imports none of ours.

Modules: `recipes` (scheme -> recipe as plain data), `calibration` (built-in and user
calibration sets, size defaults), `run` (host side), `job` (runtime side).
"""

from __future__ import annotations

from converters.quantize.recipes import SCHEMES, needs_calibration, recipe_for
from converters.quantize.run import QuantizationError, QuantizeResult, quantize_checkpoint

__all__ = [
    "SCHEMES",
    "QuantizationError",
    "QuantizeResult",
    "needs_calibration",
    "quantize_checkpoint",
    "recipe_for",
]
