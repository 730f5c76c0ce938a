"""Model-format work with no CLI in it: GGUF reading, HF fetch and rebuild, quantization.

This package is the lowest layer: it never imports `migrate`, `typer` or `rich`.
"""
